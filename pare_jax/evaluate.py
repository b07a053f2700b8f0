"""Jitted evaluation: MPJPE, PA-MPJPE, PVE (mm) with standard errors, the error on occluded joints alone,
per-joint errors and part-map mIoU on every split of config.data.eval, written as JSON to WORKDIR/eval/.

    python -m pare_jax.evaluate --config=configs/synthetic.py --workdir=/tmp/pare_synthetic
    python -m pare_jax.evaluate --config=configs/synthetic.py --workdir=DIR --baseline=mean_pose

The first evaluates the latest checkpoint in WORKDIR (or, with none, the weights in config.init_from); the second
evaluates a predictor that always outputs the mean pose and shape of the training split, the reference a model
must beat. Ground truth comes from the batch's SMPL parameters through the body of config.body, or through
gender-specific bodies where config.body.gt_male / gt_female are set (3DPW's protocol).
"""
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

import smpl_jax
from pare_jax import inputs, metrics, sharding
from pare_jax.train_step import batch_context
from smpl_jax.rotations import axis_angle_to_matrix


def ground_truth_bodies(config, body):
    """(neutral, male, female) bodies for the ground truth; unset paths fall back to the main body."""
    def load(path):
        return body if not path else smpl_jax.load(path, h36m_regressor=config.body.h36m_regressor or None)
    return body, load(config.body.gt_male), load(config.body.gt_female)


def batch_metrics(pred_pose, pred_shape, pred_segm, batch, body, gt_bodies):
    """(sum, count) metrics of one batch. pred_pose [B, 24, 3, 3], pred_shape [B, 10], pred_segm [B, h, w, M]
    logits or None; batch with pose, betas, has_smpl, mask (and part_map, has_part_map, gender)."""
    pred_joints, pred_vertices = metrics.body_joints_and_vertices(body, pred_pose, pred_shape)
    gt_rot = axis_angle_to_matrix(batch["pose"].reshape(-1, 24, 3))
    per_gender = [metrics.body_joints_and_vertices(b, gt_rot, batch["betas"]) for b in gt_bodies]
    gender = batch.get("gender", jnp.full(batch["mask"].shape, -1))
    choose = lambda i: jnp.where((gender == 0)[:, None, None], per_gender[1][i],  # noqa: E731
                                 jnp.where((gender == 1)[:, None, None], per_gender[2][i], per_gender[0][i]))
    mask = batch["mask"] * batch["has_smpl"]
    sums = metrics.pose_metrics(pred_joints, choose(0), pred_vertices, choose(1), mask, batch.get("visibility"))
    if pred_segm is not None and pred_segm.shape[-1] == metrics.NUM_PART_CLASSES:
        b, h, w = batch["part_map"].shape
        logits = jax.image.resize(pred_segm.astype(jnp.float32), (b, h, w, pred_segm.shape[-1]), "bilinear")
        labels = jnp.argmax(logits, axis=-1)
        sums["part_iou"] = metrics.part_confusion_counts(labels, batch["part_map"],
                                                         batch["mask"] * batch["has_part_map"])
    return sums


def make_model_eval_step(graphdef):
    def eval_step(params, rest, batch, body, gt_bodies):
        model = nnx.merge(graphdef, params, rest)
        model = nnx.view(model, use_running_average=True, deterministic=True, raise_if_not_found=False)
        out = model(batch["img"], None, context=batch_context(model, batch))
        return batch_metrics(out["pred_pose"], out["pred_shape"], out.get("pred_segm_mask"), batch, body,
                             gt_bodies)
    return eval_step


def run_split(step_fn, config, split, mesh):
    """Accumulate step_fn(batch) over a split; returns the summary dict."""
    totals = None
    for host_batch in inputs.eval_batches(config, split, sharding.check_batch_size(config.eval_batch_size, mesh)):
        totals = metrics.add(totals, jax.device_get(step_fn(sharding.global_batch(host_batch, mesh))))
    if totals is None:
        raise ValueError(f"evaluation split {split!r} is empty")
    return metrics.summarize(totals)


def evaluate_splits(config, graphdef, state, body, mesh, reporter, step):
    """Evaluate the model state on every split of config.data.eval; report and return {split: summary}."""
    gt_bodies = sharding.replicate(ground_truth_bodies(config, body), mesh)
    eval_step = sharding.aligned(jax.jit(make_model_eval_step(graphdef)), "eval_step")
    results = {}
    for split in config.data.eval:
        results[split] = run_split(lambda b: eval_step(state.params, state.rest, b, body, gt_bodies),
                                   config, split, mesh)
        reporter.evaluation(step, split, results[split])
        logging.info("eval %s at step %d: %s", split, step,
                     {k: v for k, v in results[split].items() if k != "per_joint_mpjpe"})
    return results


def mean_training_parameters(config, max_batches=50):
    """Chordal mean of the training split's rotations per joint (projected back onto SO(3)) and mean betas:
    the prediction of a model that learned nothing about the image. -> pose [24, 3, 3], betas [10]."""
    rot_sum, beta_sum, count = np.zeros((24, 3, 3)), np.zeros(10), 0.0
    for i, batch in enumerate(inputs.eval_batches(config, config.data.baseline_split, config.eval_batch_size)):
        weight = np.asarray(batch["mask"] * batch["has_smpl"])
        rot = np.asarray(axis_angle_to_matrix(jnp.asarray(batch["pose"]).reshape(-1, 24, 3)))
        rot_sum += np.einsum("b,bjik->jik", weight, rot)
        beta_sum += weight @ np.asarray(batch["betas"])
        count += weight.sum()
        if i + 1 >= max_batches:
            break
    u, _, vt = np.linalg.svd(rot_sum)  # nearest rotation to each summed matrix
    fix = np.tile(np.eye(3), (24, 1, 1))
    fix[:, 2, 2] = np.sign(np.linalg.det(u @ vt))
    return u @ fix @ vt, beta_sum / max(count, 1)


def evaluate_mean_pose_baseline(config, body, mesh, reporter, step=0):
    mean_pose, mean_betas = mean_training_parameters(config)
    gt_bodies = sharding.replicate(ground_truth_bodies(config, body), mesh)

    @jax.jit
    def eval_step(batch, body, gt_bodies):
        n = batch["mask"].shape[0]
        pose = jnp.broadcast_to(jnp.asarray(mean_pose, jnp.float32), (n, 24, 3, 3))
        betas = jnp.broadcast_to(jnp.asarray(mean_betas, jnp.float32), (n, 10))
        return batch_metrics(pose, betas, None, batch, body, gt_bodies)

    results = {}
    for split in config.data.eval:
        results[split] = run_split(lambda b: eval_step(b, body, gt_bodies), config, split, mesh)
        reporter.evaluation(step, f"{split}_mean_pose_baseline", results[split])
    return results


def main(argv):
    from pare_jax import preflight
    with preflight.exit_on_error():  # bad input: one line `error: ...`, exit code 2
        _main(argv, preflight)


def _main(argv, preflight):
    del argv
    from pare_jax import checkpoint, reporting, schedules, trained
    config, workdir = FLAGS.config, FLAGS.workdir
    preflight.check(config, workdir, for_training=False)
    mesh = sharding.data_mesh()
    body = sharding.replicate(trained.load_body(config.body), mesh)
    reporter = reporting.Reporter(workdir, config.num_steps, 0)
    if FLAGS.baseline == "mean_pose":
        results = evaluate_mean_pose_baseline(config, body, mesh, reporter)
    else:
        tx = schedules.optimizer(config.optim, config.num_steps)
        ckpt = checkpoint.Checkpoints(workdir, 1, 1, read_only=True)
        if ckpt.latest_step() is None and not config.init_from:
            print(f"error: no checkpoint in {workdir}/checkpoints and no config.init_from to evaluate",
                  file=sys.stderr)
            sys.exit(2)
        graphdef, state, _ = trained.initial_state(config, tx, mesh, ckpt)
        results = evaluate_splits(config, graphdef, state, body, mesh, reporter, int(state.step))
    for split, summary in results.items():
        print(split, {k: v for k, v in summary.items() if k != "per_joint_mpjpe"})


FLAGS = flags.FLAGS
if __name__ == "__main__":
    config_flags.DEFINE_config_file("config", None, "experiment config file", lock_config=True)
    flags.DEFINE_string("workdir", None, "the training run's directory")
    flags.DEFINE_enum("baseline", "", ["", "mean_pose"], "evaluate a baseline predictor instead of the model")
    flags.mark_flags_as_required(["config", "workdir"])
    from pare_jax import preflight
    app.run(main, flags_parser=preflight.parse_command_line)
