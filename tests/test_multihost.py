"""Multi-host training for real: two processes on this machine, joined by a jax.distributed coordinator on
127.0.0.1, each with 2 CPU devices (cross-process collectives through gloo, jax's CPU default), train the HMR
smoke config into one workdir: the dataset is built once, one checkpoint series is written, the run resumes,
and the losses equal a single process with 4 devices at the same global batch.

About three runs of the smallest model, the slowest test of the suite: skip with -m "not multihost".
"""
import glob
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = pytest.mark.multihost


def _command(workdir, data_dir, steps):
    return [sys.executable, "run.py", "--config=configs/hmr_r50.py:smoke", f"--workdir={workdir}",
            f"--config.data.data_dir={data_dir}", f"--config.num_steps={steps}", "--config.checkpoint.every=2",
            "--config.batch_size=4", "--config.data.eval=()"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(command, devices, logs):
    """Start one process per entry of `command` (a list of argument lists); wait for all; return their
    (returncode, stdout+stderr). A process still alive after the limit is killed (no stray processes)."""
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
    processes = []
    for i, args in enumerate(command):
        log = open(os.path.join(logs, f"process_{i}.log"), "w+")
        processes.append((subprocess.Popen(args, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT), log))
    results = []
    try:
        for process, log in processes:
            process.wait(timeout=900)
    finally:
        for process, log in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
            log.seek(0)
            results.append((process.returncode, log.read()))
            log.close()
    return results


def _pair(workdir, data_dir, steps, logs):
    address = f"127.0.0.1:{_free_port()}"
    command = [_command(workdir, data_dir, steps) + [f"--config.distributed.coordinator_address={address}",
                                                      "--config.distributed.num_processes=2",
                                                      f"--config.distributed.process_id={i}"] for i in range(2)]
    results = _run(command, devices=2, logs=logs)
    for i, (code, output) in enumerate(results):
        assert code == 0, f"process {i}:\n{output[-4000:]}"
    return results


def _losses(workdir):
    """{step: train/loss} from the run's TensorBoard events (written by process 0 only)."""
    from pare_jax.data.tensorflow_cpu import tf
    from tensorflow.core.util import event_pb2
    losses = {}
    for path in sorted(glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*"))):
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for value in event.summary.value:
                if value.tag == "train/loss":
                    losses[event.step] = float(tf.make_ndarray(value.tensor))
    return losses


def test_two_processes_train_resume_and_match_one_process(tmp_path):
    data_dir, workdir, single = tmp_path / "datasets", tmp_path / "run", tmp_path / "single"
    logs = tmp_path / "logs"
    logs.mkdir()
    first = _pair(workdir, data_dir, 4, logs)  # a fresh data_dir: the dataset is built by process 0 alone
    assert sum("Generating splits" in output for _, output in first) == 1
    resumed = _pair(workdir, data_dir, 6, logs)
    assert all("resuming from" in output and "at step 4" in output for _, output in resumed)
    # one checkpoint series, each checkpoint with its digest; the data positions of both processes
    assert sorted(os.listdir(workdir / "checkpoints")) == ["2", "4", "6"]
    assert all((workdir / "checkpoints" / s / "sha256.json").is_file() for s in ("2", "4", "6"))
    assert sorted(os.listdir(workdir / "data_state")) == ["process_0", "process_1"]
    assert len(glob.glob(str(workdir / "tensorboard" / "events.out.tfevents.*"))) == 2  # process 0, twice
    assert not glob.glob(str(tmp_path / "**" / "*.tmp*"), recursive=True)

    (code, output), = _run([_command(single, data_dir, 6)], devices=4, logs=logs)
    assert code == 0, output[-4000:]
    multi, one = _losses(workdir), _losses(single)
    assert sorted(multi) == sorted(one) == [2, 4, 6]
    # Same examples, augmentations and dropout masks; only the order of the cross-process sums (gloo) differs.
    np.testing.assert_allclose([multi[s] for s in (2, 4, 6)], [one[s] for s in (2, 4, 6)], rtol=1e-4)
