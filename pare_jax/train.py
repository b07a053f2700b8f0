"""The training driver: setup, restore, the step loop, periodic checkpoints and evaluation.

    python run.py --config=configs/synthetic.py --workdir=/tmp/pare_synthetic

Order of restore sources: pare_jax.checkpoint. Everything the driver reads is a key of the config; the whole
config is written to WORKDIR/config.json, so that evaluation, the demo and the analyses load the run by its path.
"""
import jax
import numpy as np
from absl import logging
from flax import nnx

from pare_jax import checkpoint, evaluate, inputs, preflight, reporting, schedules, sharding
from pare_jax.models.pare import abstract_model
from pare_jax.train_step import make_train_step, silhouette_mesh
from pare_jax.trained import initial_state, load_body, save_run_config


def maybe_initialize_distributed(config):
    """Multi-host: jax.distributed.initialize from config.distributed ('' = single process)."""
    dist = config.distributed
    if dist.coordinator_address == "auto":
        jax.distributed.initialize()
    elif dist.coordinator_address:
        jax.distributed.initialize(dist.coordinator_address, dist.num_processes, dist.process_id)


def parameter_overview(config):
    """Shapes of every parameter from jax.eval_shape (nothing allocated), as a log table."""
    params = nnx.state(abstract_model(config.model), nnx.Param)
    leaves = jax.tree_util.tree_leaves_with_path(params)
    lines = [f"{jax.tree_util.keystr(path):90s} {str(tuple(x.shape)):>22s}" for path, x in leaves]
    total = sum(int(np.prod(x.shape)) for _, x in leaves)
    return "\n".join(lines[:400] + [f"total parameters: {total:,}"]), total


def train_and_evaluate(config, workdir):
    """Train for config.num_steps (resuming from workdir), evaluating every config.eval_every steps and at the
    end. Returns the final evaluation summaries {split: summary}."""
    reporting.quiet_library_logs()
    maybe_initialize_distributed(config)
    preflight.check(config, workdir, for_training=True)
    mesh = sharding.data_mesh()
    per_process_batch = sharding.check_batch_size(config.batch_size, mesh)
    overview, _ = parameter_overview(config)
    logging.info("parameters:\n%s", overview)
    host_body = load_body(config.body)
    silhouette = silhouette_mesh(host_body) if config.loss.weights.silhouette > 0 else None
    body = sharding.replicate(host_body, mesh)
    tx = schedules.optimizer(config.optim, config.num_steps)
    ckpt = checkpoint.Checkpoints(workdir, config.checkpoint.keep, config.checkpoint.every)
    if jax.process_index() == 0:
        save_run_config(config, workdir)
    graphdef, state, record = initial_state(config, tx, mesh, ckpt)
    start = int(state.step)
    step_fn = jax.jit(make_train_step(graphdef, tx, config.loss, config.model.part_supervision,
                                      config.compute_dtype, config.model.dsed, config.num_steps, silhouette),
                      donate_argnums=0, out_shardings=(sharding.replicated(mesh), sharding.replicated(mesh)))
    step_fn = sharding.aligned(step_fn, "train_step")  # multi-host: every process starts step 1 together
    reporter = reporting.Reporter(workdir, config.num_steps, start, is_main=jax.process_index() == 0)
    stream = inputs.TrainStream(config, per_process_batch, workdir)
    if start > 0:
        stream.restore(start)
    window, nonfinite_run = [], 0
    for step in range(start, config.num_steps):
        batch = sharding.global_batch(next(stream), mesh)
        state, metrics = step_fn(state, batch, body)
        window.append(metrics)
        done = step + 1
        if done % config.log_every == 0 or done == config.num_steps:
            nonfinite_run = _report(reporter, done, window, nonfinite_run, config.max_nonfinite_steps)
            window = []
        if ckpt.should_save(done) or done == config.num_steps:
            _save(ckpt, stream, state, done)
        if config.eval_every and done % config.eval_every == 0 and done < config.num_steps:
            evaluate.evaluate_splits(config, graphdef, state, body, mesh, reporter, done)
    if ckpt.latest_step() != int(state.step):
        _save(ckpt, stream, state, int(state.step))
    ckpt.close()
    return evaluate.evaluate_splits(config, graphdef, state, body, mesh, reporter, int(state.step))


def _save(ckpt, stream, state, step):
    """The data position first: a model checkpoint must never exist without the stream position it needs."""
    stream.save(step)
    ckpt.save(step, state, {"step": step}, force=True)


def _report(reporter, step, window, nonfinite_run, max_nonfinite):
    """Average the window's metrics on the host, log them, and stop if the loss stayed non-finite too long."""
    host = jax.device_get(window)
    finite = np.asarray([m["finite"] for m in host], bool)
    if finite.any():  # the run of skipped steps now is the tail of this window after its last good step
        nonfinite_run = len(finite) - 1 - int(np.flatnonzero(finite)[-1])
    else:
        nonfinite_run += len(finite)
    if not finite.all():
        logging.warning("step %d: %d of the last %d steps had a non-finite loss or gradient and were skipped",
                        step, int((~finite).sum()), len(finite))
    if nonfinite_run > max_nonfinite:
        raise FloatingPointError(f"{nonfinite_run} consecutive training steps up to step {step} had a non-finite "
                                 "loss or gradient; stopping (the last checkpoint holds the last good state). "
                                 "Lower config.optim.lr or check the data.")
    means = {k: float(np.mean([m[k] for m, ok in zip(host, finite) if ok] or [np.nan])) for k in host[0]
             if k != "finite"}
    reporter.scalars(step, means, prefix="train/")
    reporter.progress(step, {k: means[k] for k in ("loss", "loss_keypoints_2d", "loss_part") if k in means})
    return nonfinite_run
