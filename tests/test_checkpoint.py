"""Checkpoint digests: a garbled, truncated or incomplete checkpoint is named and skipped for the previous good
one (or stops the restore clearly); the workdir lock refuses a second run and survives no dead process."""
import fcntl
import logging
import os
import signal
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

from pare_jax import checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _state(step):
    return {"w": jnp.arange(20000, dtype=jnp.float32) + step, "b": jnp.full((7,), float(step))}


def _saved(workdir, steps=(2, 4, 6)):
    ckpt = checkpoint.Checkpoints(workdir, max_to_keep=3, save_every=2)
    for step in steps:
        assert ckpt.save(step, _state(step), {"step": step}, force=True)
    return ckpt


def _largest_file(step_dir):
    paths = [os.path.join(r, n) for r, _, names in os.walk(step_dir) for n in names if n != checkpoint.DIGEST_FILE]
    return max(paths, key=os.path.getsize)


def _garble(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as fh:  # 4 KiB (or what there is) overwritten in place: same size, other bytes
        fh.seek(size // 4)
        fh.write(os.urandom(min(4096, size - size // 4)))


def _truncate(path):
    with open(path, "r+b") as fh:
        fh.truncate(os.path.getsize(path) // 2)


DAMAGE = {"garbled": (_garble, "has a corrupt"), "truncated": (_truncate, "has a truncated or extended"),
          "deleted": (os.unlink, "is missing")}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_damaged_newest_checkpoint_falls_back_to_the_previous_good_one(damage, tmp_path, caplog):
    ckpt = _saved(tmp_path)
    damage_fn, phrase = DAMAGE[damage]
    victim = _largest_file(tmp_path / "checkpoints" / "6")
    damage_fn(victim)
    with caplog.at_level(logging.WARNING):
        state, record = ckpt.restore(checkpoint.abstract_like(_state(0)))
    assert record == {"step": 4} and float(state["b"][0]) == 4.0
    np.testing.assert_array_equal(state["w"], _state(4)["w"])
    assert f"{tmp_path.name}/checkpoints/6 {phrase} {os.path.relpath(victim, tmp_path / 'checkpoints' / '6')}" \
        in caplog.text
    # a training run sets the bad one aside, so that its step can be written again
    assert (tmp_path / "checkpoints_corrupt" / "6").is_dir() and ckpt.latest_step() == 4
    assert ckpt.save(6, _state(6), {"step": 6}, force=True)
    assert ckpt.restore(checkpoint.abstract_like(_state(0)))[1] == {"step": 6}
    ckpt.close()


def test_no_intact_checkpoint_stops_with_every_reason_and_read_only_moves_nothing(tmp_path):
    _saved(tmp_path, steps=(2, 4)).close()
    _garble(_largest_file(tmp_path / "checkpoints" / "4"))
    os.unlink(tmp_path / "checkpoints" / "2" / checkpoint.DIGEST_FILE)
    reader = checkpoint.Checkpoints(tmp_path, 1, 1, read_only=True)
    with pytest.raises(checkpoint.CheckpointError, match=r"no intact checkpoint in .*checkpoints: .*checkpoints/4 "
                       r"has a corrupt .*; .*checkpoints/2 has no digest .*move checkpoints/ aside"):
        reader.restore(checkpoint.abstract_like(_state(0)))
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["2", "4"] and not (tmp_path / "checkpoints_corrupt").exists()


def test_checkpoints_from_before_digests_restore_unverified(tmp_path, caplog):
    _saved(tmp_path, steps=(2, 4)).close()
    for step in (2, 4):
        os.unlink(tmp_path / "checkpoints" / str(step) / checkpoint.DIGEST_FILE)
    with caplog.at_level(logging.WARNING):
        _, record = checkpoint.Checkpoints(tmp_path, 1, 1, read_only=True).restore(checkpoint.abstract_like(_state(0)))
    assert record == {"step": 4} and "written without digests; restored unverified" in caplog.text


def test_second_writer_is_refused_with_the_pid_and_a_dead_holder_blocks_nothing(tmp_path):
    first = checkpoint.Checkpoints(tmp_path, 1, 1)
    with pytest.raises(checkpoint.CheckpointError, match=rf"workdir {tmp_path} in use by pid {os.getpid()} "):
        checkpoint.Checkpoints(tmp_path, 1, 1)
    checkpoint.Checkpoints(tmp_path, 1, 1, read_only=True)  # readers take no lock
    first.close()
    # a run SIGKILLed while holding the lock: the kernel drops flock locks of dead processes
    code = ("import fcntl, os, sys; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
            "f.write(str(os.getpid())); f.flush(); os.kill(os.getpid(), 9)")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path / checkpoint.LOCK_FILE)])
    assert result.returncode == -signal.SIGKILL
    again = checkpoint.Checkpoints(tmp_path, 1, 1)
    assert open(tmp_path / checkpoint.LOCK_FILE).read().strip() == str(os.getpid())
    again.close()


def test_run_py_in_a_locked_workdir_exits_at_once(tmp_path):
    holder = open(tmp_path / checkpoint.LOCK_FILE, "a+")
    fcntl.flock(holder, fcntl.LOCK_EX)
    holder.write("4242\n")
    holder.flush()
    result = subprocess.run([sys.executable, "run.py", "--config=configs/synthetic.py:smoke",
                             f"--workdir={tmp_path}", f"--config.data.data_dir={tmp_path / 'data'}"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    holder.close()
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: workdir {tmp_path} in use by pid 4242 (another training run); wait for it to finish, or pass "
        "another --workdir")
    assert sorted(os.listdir(tmp_path)) == [checkpoint.LOCK_FILE]  # no dataset, no checkpoints/
