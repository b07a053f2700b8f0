"""Orbax checkpoints of the training state, with automatic resume from the workdir, digests and a workdir lock.

Where a run's state comes from, in this order (the first that exists wins):
  1. the newest intact checkpoint in WORKDIR/checkpoints (a resumed run: params, optimizer, step, data position);
  2. config.init_from: a checkpoint directory of another run or of the converter (python -m pare_jax.convert),
     whose params and batch statistics are loaded into a fresh optimizer at step 0 (e.g. the mixed-data phase
     starting from the COCO-EFT phase, or fine-tuning the authors' weights);
  3. a fresh initialisation from config.seed.
Orbax writes each checkpoint into a temporary directory and renames it when complete, so a run killed while
saving (even by SIGKILL) leaves the previous checkpoint intact; leftover temporary directories are removed.

Orbax does not detect a checkpoint whose bytes were changed afterwards (a bad disk, a partial copy): it restores
them. So every finished checkpoint gets `checkpoints/<step>/sha256.json`, the size and SHA-256 of each of its
files, and a restore checks them first. A checkpoint that fails (changed or truncated file, missing file, no
digest) is reported by name and skipped for the next older one; a training run moves it to
WORKDIR/checkpoints_corrupt/ so that its step can be saved again. With no intact checkpoint left, restoring
stops with CheckpointError. Checkpoints written before digests existed (no checkpoint of the directory has one)
are restored unverified, with a warning.

A training run holds an exclusive lock on WORKDIR/lock (flock: the kernel drops it when the process dies, even
by SIGKILL, so a stale lock never blocks a restart); a second run in the same workdir stops with
"workdir in use by pid N". Read-only users (evaluation, init_from) take no lock.
"""
import fcntl
import hashlib
import itertools
import json
import os
import shutil
import types

import jax
import orbax.checkpoint as ocp
from absl import logging

from pare_jax import files, sharding

DIGEST_FILE = "sha256.json"
_barrier_ids = itertools.count()  # barrier names must be unique; all processes save in the same order
LOCK_FILE = "lock"


class CheckpointError(RuntimeError):
    """No intact checkpoint to resume from, or the workdir is in use; the message names the fix."""


class Checkpoints:
    """Periodic checkpoints of a TrainState plus a small JSON record (e.g. the data position)."""

    def __init__(self, workdir, max_to_keep, save_every, read_only=False):
        self.workdir = os.path.abspath(workdir)
        self.directory = os.path.join(self.workdir, "checkpoints")
        self.read_only = read_only
        self._lock = None if read_only else lock_workdir(self.workdir)  # before Orbax tidies anything up
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, save_interval_steps=save_every,
                                               cleanup_tmp_directories=not read_only, create=not read_only,
                                               read_only=read_only)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "record"))

    def latest_step(self):
        return self.manager.latest_step()

    def should_save(self, step):
        return self.manager.should_save(step)

    def restore(self, abstract_state):
        """Restore the newest intact checkpoint into the structure and shardings of abstract_state (a pytree of
        jax.ShapeDtypeStruct with .sharding). Returns (state, record), or None when there is no checkpoint;
        raises CheckpointError when there are checkpoints but none is intact."""
        steps = sorted(self.manager.all_steps(), reverse=True)
        if not steps:
            return None
        legacy = not any(os.path.isfile(os.path.join(self._step_dir(s), DIGEST_FILE)) for s in steps)
        problems = []
        for step in steps:
            problem = None if legacy else verify(self._step_dir(step))
            if problem is None:
                try:
                    restored = self._restore(step, abstract_state)
                except Exception as exc:  # a checkpoint that passed (or predates) digests yet cannot be read
                    problem = f"cannot be restored ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
            if problem is None:
                if legacy:
                    logging.warning("%s was written without digests; restored unverified", self._name(step))
                if problems:
                    logging.warning("resuming from %s instead", self._name(step))
                return restored.state, restored.record
            problems.append(f"{self._name(step)} {problem}")
            logging.warning("%s %s; trying the next older checkpoint", self._name(step), problem)
            self._set_aside(step)
        raise CheckpointError(f"no intact checkpoint in {self.directory}: {'; '.join(problems)}. Restore the "
                              "files from a backup, or move checkpoints/ aside to start the run afresh")

    def _restore(self, step, abstract_state):
        def restore(abstract):
            return self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract), record=ocp.args.JsonRestore()))
        try:
            return restore(abstract_state)
        except ValueError:
            # A TrainState with fixed loss weighting (no loss_params) from before the field existed.
            from pare_jax.train_step import LegacyTrainState, TrainState
            if not isinstance(abstract_state, TrainState) or abstract_state.loss_params:
                raise
            legacy = LegacyTrainState(abstract_state.step, abstract_state.params, abstract_state.rest,
                                      abstract_state.opt_state)
            restored = restore(legacy)
            old = restored.state
            return types.SimpleNamespace(state=TrainState(old.step, old.params, old.rest, old.opt_state, {}),
                                         record=restored.record)

    def save(self, step, state, record, force=False):
        """Save if `step` is due (every save_every steps) or force, then write its digest. Synchronous: a
        checkpoint without a digest is not trusted, so the digest must follow the files at once."""
        saved = self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)), force=force)
        if saved:
            self.manager.wait_until_finished()
            if jax.process_index() == 0:
                write_digest(self._step_dir(step))
            sharding.barrier(f"digest_{step}_{next(_barrier_ids)}", timeout_s=3600)
        return saved

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()
        if self._lock is not None:
            self._lock.close()  # closing the descriptor releases the flock
            self._lock = None

    def _step_dir(self, step):
        return os.path.join(self.directory, str(step))

    def _name(self, step):
        return os.path.join(os.path.basename(self.workdir), "checkpoints", str(step))

    def _set_aside(self, step):
        """A training run moves a failed checkpoint out of Orbax's directory (kept for inspection), so that the
        resumed run can save that step again."""
        if self.read_only or jax.process_index() != 0:
            return
        target = os.path.join(self.workdir, "checkpoints_corrupt", str(step))
        shutil.rmtree(target, ignore_errors=True)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(self._step_dir(step), target)
        self.manager.reload()


def _file_digests(directory):
    out = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, directory)
            if relative == DIGEST_FILE:
                continue
            sha = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    sha.update(block)
            out[relative] = {"size": os.path.getsize(path), "sha256": sha.hexdigest()}
    return out


def write_digest(directory):
    """Record size and SHA-256 of every file of a finished checkpoint directory (atomically)."""
    files.write_atomic(os.path.join(directory, DIGEST_FILE),
                       json.dumps(_file_digests(directory), indent=1, sort_keys=True).encode())


def verify(directory):
    """None if every file of the checkpoint directory matches its digest, else what is wrong (one phrase)."""
    try:
        with open(os.path.join(directory, DIGEST_FILE)) as fh:
            expected = json.load(fh)
    except FileNotFoundError:
        return "has no digest (the run was killed while saving it, or the digest was deleted)"
    except (OSError, ValueError) as exc:
        return f"has an unreadable digest ({exc})"
    actual = _file_digests(directory)
    for name, want in sorted(expected.items()):
        got = actual.get(name)
        if got is None:
            return f"is missing {name}"
        if got["size"] != want.get("size"):
            return f"has a truncated or extended {name} ({got['size']} bytes, {want.get('size')} saved)"
        if got["sha256"] != want.get("sha256"):
            return f"has a corrupt {name} (its SHA-256 differs from the one saved)"
    return None


def lock_workdir(workdir):
    """Take the exclusive lock of a training run's workdir (process 0 of a multi-host run only); returns the
    open lock file (keep it open), or raises CheckpointError naming the pid that holds it."""
    if jax.process_index() != 0:
        return None
    os.makedirs(workdir, exist_ok=True)
    handle = open(os.path.join(workdir, LOCK_FILE), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise CheckpointError(f"workdir {workdir} in use by pid {holder} (another training run); wait for it to "
                              "finish, or pass another --workdir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def is_run_directory(path):
    """Whether `path` is a training run's workdir (holds checkpoints/) rather than converted weights."""
    return os.path.isdir(os.path.join(path, "checkpoints"))


def abstract_like(tree, sharding=None):
    """ShapeDtypeStructs (with a sharding) describing `tree`, for restoring without allocating twice."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or x.sharding), tree)
