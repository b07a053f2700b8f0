"""Orbax checkpoints of the training state, with automatic resume from the workdir.

Where a run's state comes from, in this order (the first that exists wins):
  1. the latest finished checkpoint in WORKDIR/checkpoints (a resumed run: params, optimizer, step, data position);
  2. config.init_from: a checkpoint directory of another run or of the converter (python -m pare_jax.convert),
     whose params and batch statistics are loaded into a fresh optimizer at step 0 (e.g. the mixed-data phase
     starting from the COCO-EFT phase, or fine-tuning the authors' weights);
  3. a fresh initialisation from config.seed.
Orbax writes each checkpoint into a temporary directory and renames it when complete, so a run killed while
saving (even by SIGKILL) leaves the previous checkpoint intact; leftover temporary directories are removed.
"""
import os

import jax
import orbax.checkpoint as ocp


class Checkpoints:
    """Periodic checkpoints of a TrainState plus a small JSON record (e.g. the data position)."""

    def __init__(self, workdir, max_to_keep, save_every, read_only=False):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, save_interval_steps=save_every,
                                               cleanup_tmp_directories=not read_only, create=not read_only,
                                               read_only=read_only)
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=("state", "record"))

    def latest_step(self):
        return self.manager.latest_step()

    def should_save(self, step):
        return self.manager.should_save(step)

    def restore(self, abstract_state):
        """Restore the latest checkpoint into the structure and shardings of abstract_state (a pytree of
        jax.ShapeDtypeStruct with .sharding). Returns (state, record) or None when there is none."""
        step = self.manager.latest_step()
        if step is None:
            return None
        restored = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), record=ocp.args.JsonRestore()))
        return restored.state, restored.record

    def save(self, step, state, record, force=False):
        """Save if `step` is due (every save_every steps) or force. Asynchronous: call wait() before exit."""
        return self.manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), record=ocp.args.JsonSave(record)), force=force)

    def wait(self):
        self.manager.wait_until_finished()

    def close(self):
        self.manager.wait_until_finished()
        self.manager.close()


def is_run_directory(path):
    """Whether `path` is a training run's workdir (holds checkpoints/) rather than converted weights."""
    return os.path.isdir(os.path.join(path, "checkpoints"))


def abstract_like(tree, sharding=None):
    """ShapeDtypeStructs (with a sharding) describing `tree`, for restoring without allocating twice."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding or x.sharding), tree)
