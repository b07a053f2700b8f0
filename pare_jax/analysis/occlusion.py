"""Occlusion sensitivity (PARE_SPEC.md, "Occlusion sensitivity analysis"): slide a grey square over each image,
regress the body for every position and record the per-joint 3D error against the ground truth.

    python -m pare_jax.analysis.occlusion --workdir=runs/synthetic --out=out/occlusion
    python -m pare_jax.analysis.occlusion --workdir=runs/synthetic --out=out/occlusion_dense --stride=2
    python -m pare_jax.analysis.occlusion --workdir=runs/synthetic --compare=runs/synthetic_hmr --out=out/vs_hmr

The model (and its data config) comes from the run's config.json; --config=configs/...py[:variant] (with
--config.key=value overrides) replaces it. Writes into --out, one row per model in every picture:
  image_NNNN.png            the input, its mean MPJPE and PA-MPJPE heatmaps (Fig. 1 style)
  image_NNNN_joints.png     per joint, the MPJPE increase over the unoccluded image (which position hurts which
                            joint)
  mean_sensitivity*.png     the same two pictures averaged over the images of the split
  part_sensitivity.png      the occlusion sensitivity mesh (below)
  occlusion.npz             every number: boxes, per-image per-position per-joint errors, part sensitivities, maps
  summary.json              per model: unoccluded, mean over positions, worst position (MPJPE, PA-MPJPE), parts
Bad input (no model in --workdir, unknown split, patch size < 1 or larger than the image, stride < 1,
num-images < 1) is one `error: ...` line on stderr and exit code 2, checked before anything is written; files
are written to temporary names and renamed, summary.json last.

Choices, stated once:
- The patch is grey: RGB 0.5 in ImageNet normalisation, (0.5 - mean) / std per channel, written into the model's
  input (the same as painting the pixels RGB 0.5 before normalising).
- Positions: top-left corners at 0, s, 2s, ... on both axes for every corner inside the image (k * s < size),
  row-major; a patch that reaches over the right or bottom edge is clipped there. 40 px at stride 40 on 224 px
  gives the authors' 6 x 6 grid (the last row and column 24 px wide), stride 8 the dense 28 x 28 grid. Sizes are
  pixels of the model's input; the defaults scale the paper's 40 px at stride 40 on 224 px to the input size
  (11 px at stride 11 at 64 px: again 6 x 6).
- Errors follow the evaluation protocol (pare_jax.metrics): 14 H36M joints centred on the pelvis, ground truth
  from the batch's SMPL parameters through the body of config.body; PA per joint = distance after the per-sample
  Procrustes alignment on all 14 joints (their mean is PA-MPJPE).
- Heatmap over the image: each pixel holds the mean error of all patch positions that cover it (for stride =
  patch size that is the position's own error).
- Per-part sensitivity: the error increase of a position over the unoccluded image is attributed to the
  ground-truth parts under the patch (config's part_map: PARE's 24 parts, visible surface only), weighted by
  how many patch pixels each part covers, pooled over all positions and images; every vertex of the rest-pose
  mean body is painted with the value of its part. Parts never under a patch are grey.
"""
import functools
import io
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from pare_jax import inputs, trained
from pare_jax.evaluate import ground_truth_bodies
from pare_jax.files import write_atomic
from pare_jax.models.pare import IMAGENET_MEAN, IMAGENET_STD, _predict
from smpl_jax.joints import H36M_TO_J14, LSP14_NAMES, SMPL_JOINT_NAMES
from smpl_jax.metrics import per_joint_error, similarity_procrustes
from smpl_jax.rotations import axis_angle_to_matrix

GREY_RGB = 0.5
METRICS = ("mpjpe", "pa_mpjpe")
PAPER_PATCH, PAPER_CROP = 40, 224
NUM_PARTS = 24


def grey_value():
    """The patch colour in the model's input space: RGB 0.5 ImageNet-normalised. [3] float32."""
    return ((GREY_RGB - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)


def default_patch_size(image_size):
    """The paper's 40 px patch (stride 40) scaled from its 224 px crop to `image_size`."""
    return max(1, round(PAPER_PATCH * image_size / PAPER_CROP))


def patch_boxes(height, width, patch_size, stride):
    """Patch positions -> (boxes [P, 4] int32 as (top, left, bottom, right), bottom/right exclusive and clipped
    to the image; grid (rows, cols)), row-major over the grid of corners 0, stride, ... inside the image."""
    rows, cols = np.arange(0, height, stride), np.arange(0, width, stride)
    top, left = np.meshgrid(rows, cols, indexing="ij")
    boxes = np.stack([top, left, np.minimum(top + patch_size, height), np.minimum(left + patch_size, width)], -1)
    return boxes.reshape(-1, 4).astype(np.int32), (len(rows), len(cols))


def occlude(image, box, value):
    """image [H, W, 3], box [4] int (top, left, bottom, right), value [3] -> the image with the box set to value
    (an empty box leaves it unchanged)."""
    rows = jnp.arange(image.shape[0])[:, None]
    cols = jnp.arange(image.shape[1])[None, :]
    inside = (rows >= box[0]) & (rows < box[2]) & (cols >= box[1]) & (cols < box[3])
    return jnp.where(inside[..., None], jnp.asarray(value, image.dtype), image)


def evaluation_joints(body, pose_rotmats, betas):
    """pose_rotmats [B, 24, 3, 3], betas [B, 10] -> the 14 evaluation joints [B, 14, 3] centred on the H36M
    pelvis (as pare_jax.metrics.body_joints_and_vertices, skinning only the vertices the regressor needs)."""
    out = body(betas=betas, body_pose=pose_rotmats[:, 1:], global_orient=pose_rotmats[:, :1], joints="h36m17",
               return_verts=False)
    return out.joints[:, np.asarray(H36M_TO_J14)] - out.joints[:, :1]


def joint_errors(pred_joints, gt_joints):
    """[B, 14, 3] x2 (metres, pelvis-centred) -> {"mpjpe", "pa_mpjpe"}: per-joint errors [B, 14] in mm."""
    return {"mpjpe": per_joint_error(pred_joints, gt_joints) * 1000.0,
            "pa_mpjpe": per_joint_error(similarity_procrustes(pred_joints, gt_joints), gt_joints) * 1000.0}


@jax.jit
def ground_truth_joints(gt_bodies, pose, betas, gender):
    """gt_bodies (neutral, male, female), pose [B, 72] axis-angle, betas [B, 10], gender [B] (0 male, 1 female,
    else neutral, as pare_jax.evaluate) -> evaluation joints [B, 14, 3]."""
    rot = axis_angle_to_matrix(pose.reshape(-1, 24, 3))
    neutral, male, female = (evaluation_joints(b, rot, betas) for b in gt_bodies)
    g = gender[:, None, None]
    return jnp.where(g == 0, male, jnp.where(g == 1, female, neutral))


@functools.partial(jax.jit, static_argnums=(0, 6))
def _position_errors(graphdef, state, body, image, boxes, gt_joints, dtype_name, context=None):
    """One chunk of positions in one call: image [H, W, 3], boxes [C, 4], gt_joints [14, 3] -> {metric: [C, 14]}.
    context [H, W, 2]: a CoNorm model's centre maps of the image, the same for every position (the patch hides
    pixels, not people)."""
    occluded = jax.vmap(occlude, in_axes=(None, 0, None))(image, boxes, grey_value())
    if context is not None:
        context = jnp.broadcast_to(context, (len(boxes),) + context.shape)
    out = _predict(graphdef, state, None, occluded, dtype_name, context)
    pred = evaluation_joints(body, out["pred_pose"], out["pred_shape"])
    return joint_errors(pred, jnp.broadcast_to(gt_joints, pred.shape))


def position_errors(model, image, gt_joints, boxes, chunk=64, dtype="float32", context=None):
    """Per-joint errors of every patch position. model: a trained.Trained (graphdef, state, body); image
    [H, W, 3] ImageNet-normalised; gt_joints [14, 3]; boxes [P, 4] -> {"mpjpe", "pa_mpjpe"}: [P, 14] mm.
    context [H, W, 2]: the image's centre maps, which a CoNorm model needs (model.uses_context).
    The positions go through the network in equal chunks of at most `chunk` (the last one padded), so memory
    stays bounded and every call has the same shape (one compilation)."""
    num = len(boxes)
    calls = -(-num // chunk)
    size = -(-num // calls)
    padded = np.concatenate([boxes, np.repeat(boxes[-1:], calls * size - num, axis=0)])
    image, gt_joints = jnp.asarray(image), jnp.asarray(gt_joints)
    context = jnp.asarray(context) if context is not None and getattr(model, "uses_context", False) else None
    parts = [_position_errors(model.graphdef, model.state, model.body, image, padded[i * size:(i + 1) * size],
                              gt_joints, dtype, context) for i in range(calls)]  # dispatched before any is read back
    return {k: np.concatenate([np.asarray(p[k]) for p in parts])[:num] for k in METRICS}


def sensitivity(model, images, gt_joints, boxes, chunk=64, dtype="float32", contexts=None):
    """images [N, H, W, 3], gt_joints [N, 14, 3], boxes [P, 4] -> {"mpjpe", "pa_mpjpe"}: [N, P, 14] and
    {"unoccluded_mpjpe", "unoccluded_pa_mpjpe"}: [N, 14] (an empty box run with the positions), in mm.
    contexts [N, H, W, 2]: the images' centre maps, needed by a CoNorm model (model.uses_context)."""
    if getattr(model, "uses_context", False) and contexts is None:
        raise ValueError(f"this model uses CoNorm (model.conorm={model.model_config.conorm!r}) and needs the "
                         "samples' context maps; the split's data has none: rebuild the dataset with a version "
                         "that has context maps (pare_jax/data/context.py)")
    with_clear = np.concatenate([np.zeros((1, 4), np.int32), boxes])
    contexts = [None] * len(images) if contexts is None else contexts
    per_image = [position_errors(model, image, gt, with_clear, chunk, dtype, context)
                 for image, gt, context in zip(images, gt_joints, contexts)]
    out = {}
    for k in METRICS:
        stacked = np.stack([e[k] for e in per_image])
        out[k], out[f"unoccluded_{k}"] = stacked[:, 1:], stacked[:, 0]
    return out


def image_map(values, boxes, height, width):
    """values [P, C] per position, boxes [P, 4] -> [H, W, C]: at each pixel the mean value of the positions
    whose patch covers it (NaN where none does), via a 2-D difference array."""
    values = np.concatenate([values, np.ones_like(values[:, :1])], axis=1)  # the last channel counts
    diff = np.zeros((height + 1, width + 1, values.shape[1]))
    top, left, bottom, right = boxes.T
    for rows, cols, sign in ((top, left, 1), (top, right, -1), (bottom, left, -1), (bottom, right, 1)):
        np.add.at(diff, (rows, cols), sign * values)
    summed = diff.cumsum(0).cumsum(1)[:height, :width]
    count = np.round(summed[..., -1:])
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, summed[..., :-1] / count, np.nan)


def part_pixels(part_map, boxes, num_parts=NUM_PARTS):
    """part_map [H, W] int (0 background, 1..24), boxes [P, 4] -> pixels of each part under each patch [P, 24]."""
    onehot = (part_map[..., None] == np.arange(1, num_parts + 1)).astype(np.int64)
    integral = np.zeros((part_map.shape[0] + 1, part_map.shape[1] + 1, num_parts), np.int64)
    integral[1:, 1:] = onehot.cumsum(0).cumsum(1)
    top, left, bottom, right = boxes.T
    return integral[bottom, right] - integral[top, right] - integral[bottom, left] + integral[top, left]


def part_sensitivity(increase, pixels):
    """increase [N, P, 14] (error minus the unoccluded error), pixels [N, P, 24] -> [24, 14]: the pixel-weighted
    mean increase when each part is (partly) under the patch; NaN for parts never under one."""
    weight = pixels.sum(axis=(0, 1)).astype(np.float64)
    total = np.einsum("npk,npj->kj", pixels.astype(np.float64), increase)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight[:, None] > 0, total / weight[:, None], np.nan)


def summarize(errors, boxes):
    """The headline figures of one model (mm, means over joints): unoccluded, mean over positions, the worst
    position of the split-average map (and its box), the mean of each image's worst position."""
    out = {}
    for k in METRICS:
        per_position = errors[k].mean(axis=2)  # [N, P]
        average_map = per_position.mean(axis=0)
        worst = int(np.argmax(average_map))
        out[k] = {"unoccluded": float(errors[f"unoccluded_{k}"].mean()), "mean_over_positions": float(
            per_position.mean()), "worst_position": float(average_map[worst]),
            "worst_position_box": [int(v) for v in boxes[worst]],
            "worst_per_image": float(per_position.max(axis=1).mean())}
    return out


def collect_samples(config, split, num_images):
    """The first num_images samples of a split "name:split" that have SMPL ground truth -> dict of numpy arrays:
    img [N, H, W, 3], pose [N, 72], betas [N, 10], gender [N], part_map [N, H, W], has_part_map [N],
    sample_index [N], and context [N, H, W, 2] where the data has CoNorm's centre maps. Raises ValueError for
    an unknown dataset or split."""
    keep = {k: [] for k in ("img", "pose", "betas", "gender", "part_map", "has_part_map", "sample_index")}
    found = 0
    for batch in inputs.eval_batches(config, split, min(int(config.eval_batch_size), num_images)):
        if "context" in batch:
            keep.setdefault("context", [])
        valid = (batch["mask"] * batch["has_smpl"]) > 0
        n = len(valid)
        defaults = {"gender": np.full(n, -1, np.int32), "has_part_map": np.zeros(n, np.float32),
                    "part_map": np.zeros(batch["img"].shape[:3], np.int32), "sample_index": np.arange(n)}
        for k in keep:
            keep[k].append(np.asarray(batch.get(k, defaults.get(k)))[valid])
        found += int(valid.sum())
        if found >= num_images:
            break
    if found == 0:
        raise ValueError(f"split {split!r} has no samples with SMPL ground truth to measure errors against")
    return {k: np.concatenate(v)[:num_images] for k, v in keep.items()}


def analyse(models, config, samples, patch_size, stride, chunk=64, dtype="float32"):
    """Occlusion sensitivity of each model ({name: trained.Trained}) on samples (of collect_samples); the ground
    truth through the bodies of config.body. Returns (boxes, grid, {name: errors of `sensitivity`},
    {name: {metric: part sensitivity [24, 14]}}, part pixels [N, P, 24])."""
    first = next(iter(models.values()))
    gt_joints = np.asarray(ground_truth_joints(ground_truth_bodies(config, first.body), samples["pose"],
                                               samples["betas"], samples["gender"]))
    height, width = samples["img"].shape[1:3]
    boxes, grid = patch_boxes(height, width, patch_size, stride)
    errors = {name: sensitivity(m, samples["img"], gt_joints, boxes, chunk, dtype, samples.get("context"))
              for name, m in models.items()}
    pixels = np.stack([part_pixels(p, boxes) for p in samples["part_map"]])
    pixels = pixels * (samples["has_part_map"] > 0)[:, None, None]
    parts = {name: {k: part_sensitivity(e[k] - e[f"unoccluded_{k}"][:, None], pixels) for k in METRICS}
             for name, e in errors.items()}
    return boxes, grid, errors, parts, pixels


def model_label(model, taken=()):
    label = {"pare": "PARE", "hmr": "HMR-EFT"}.get(model.model_config.head, model.model_config.head)
    return label if label not in taken else f"{label} ({len(taken) + 1})"


def write_outputs(out_dir, models, split, samples, boxes, grid, errors, parts, pixels, patch_size, stride):
    """All files of one analysis into out_dir, each written atomically; summary.json last. Returns the summary."""
    from pare_jax.analysis import pictures
    os.makedirs(out_dir, exist_ok=True)
    save = lambda name, data: write_atomic(os.path.join(out_dir, name), data)  # noqa: E731
    labels = {}
    for name, model in models.items():
        labels[name] = model_label(model, tuple(labels.values()))
    height, width = samples["img"].shape[1:3]
    maps = {n: [_image_maps(errors[n], i, boxes, height, width) for i in range(len(samples["img"]))]
            for n in models}
    joints = len(LSP14_NAMES)
    for i, image in enumerate(samples["img"]):
        means = {labels[n]: {k: maps[n][i][..., 2 * joints + j] for j, k in enumerate(METRICS)} for n in models}
        save(f"image_{i:04d}.png", pictures.png_bytes(pictures.image_figure(image, means)))
        per_joint = {labels[n]: {"mpjpe increase": maps[n][i][..., :joints] - errors[n]["unoccluded_mpjpe"][i]}
                     for n in models}
        save(f"image_{i:04d}_joints.png", pictures.png_bytes(pictures.image_figure(image, per_joint, LSP14_NAMES)))
    mean_image = samples["img"].mean(axis=0)
    average = {n: np.mean(np.stack(maps[n]), axis=0) for n in models}  # uncovered pixels: NaN in every image alike
    save("mean_sensitivity.png", pictures.png_bytes(pictures.image_figure(
        mean_image, {labels[n]: {k: average[n][..., 2 * joints + j] for j, k in enumerate(METRICS)}
                     for n in models})))
    save("mean_sensitivity_joints.png", pictures.png_bytes(pictures.image_figure(
        mean_image, {labels[n]: {"mpjpe increase": average[n][..., :joints] - errors[n]["unoccluded_mpjpe"].mean(0)}
                     for n in models}, LSP14_NAMES)))
    first = next(iter(models.values()))
    save("part_sensitivity.png", pictures.png_bytes(pictures.part_figure(
        first.body, {labels[n]: {k: parts[n][k].mean(axis=1) for k in METRICS} for n in models})))
    arrays = {"boxes": boxes, "grid": np.asarray(grid), "sample_index": samples["sample_index"],
              "part_pixels": pixels, "grey_value": grey_value(), "joint_names": np.asarray(LSP14_NAMES),
              "part_names": np.asarray(SMPL_JOINT_NAMES)}
    for name in models:
        arrays |= {f"{name}_{k}": v for k, v in errors[name].items()}
        arrays |= {f"{name}_part_{k}": v for k, v in parts[name].items()}
        arrays |= {f"{name}_mean_map_{k}": average[name][..., joints * j:joints * (j + 1)]
                   for j, k in enumerate(METRICS)}
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    save("occlusion.npz", buffer.getvalue())
    summary = {"split": split, "num_images": len(samples["img"]), "image_size": [int(height), int(width)],
               "patch_size": patch_size, "stride": stride, "grid": list(grid), "num_positions": len(boxes),
               "patch_value": {"rgb": GREY_RGB, "imagenet_normalised": grey_value().tolist()},
               "units": "mm, means over the 14 H36M evaluation joints", "models": {}}
    for name, model in models.items():
        summary["models"][name] = {
            "label": labels[name], "source": os.path.abspath(model.source), "step": model.step,
            "backbone": model.model_config.backbone, "head": model.model_config.head,
            **summarize(errors[name], boxes),
            "part_sensitivity": {k: dict(zip(SMPL_JOINT_NAMES, map(_finite_or_none, parts[name][k].mean(1))))
                                 for k in METRICS}}
    save("summary.json", (json.dumps(summary, indent=2) + "\n").encode())
    return summary


def _image_maps(errors, index, boxes, height, width):
    """Maps of image `index` -> [H, W, 30]: per-joint MPJPE (14), per-joint PA-MPJPE (14), their two means."""
    values = [errors[k][index] for k in METRICS]
    return image_map(np.concatenate(values + [v.mean(-1, keepdims=True) for v in values], -1), boxes, height,
                     width)


def _finite_or_none(value):
    return float(value) if np.isfinite(value) else None


class UsageError(ValueError):
    """A bad command line: reported as one `error: ...` line, exit code 2."""


def _flags(argv):
    """The command's flags, on a FlagValues of their own (main can run many times in one process); argv tells
    config_flags which --config.key=value overrides to define."""
    from absl import flags
    from ml_collections import config_flags
    fv = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config file (configs/*.py[:variant]); default: the run's "
                                    "config.json", flag_values=fv, lock_config=True, sys_argv=argv)
    flags.DEFINE_string("workdir", None, "the trained model: a training workdir or converted weights", flag_values=fv)
    flags.DEFINE_string("out", None, "output folder", flag_values=fv)
    flags.DEFINE_string("compare", "", "a second model's workdir, run on the same images and patches", flag_values=fv)
    flags.DEFINE_string("split", "synthetic:test", "evaluation split name:split", flag_values=fv)
    flags.DEFINE_integer("num-images", 8, "images of the split to analyse", flag_values=fv)
    flags.DEFINE_integer("patch-size", None, "patch side in pixels of the model's input (default: 40 px at "
                         "224 px scaled to the input)", flag_values=fv)
    flags.DEFINE_integer("stride", None, "pixels between patch corners (default: the patch size)", flag_values=fv)
    flags.DEFINE_integer("chunk", 64, "patch positions per jitted call (bounds memory)", flag_values=fv)
    flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "network compute dtype", flag_values=fv)
    return fv


def _at_least_one(value, name, fix):
    if value is not None and value < 1:
        raise UsageError(f"--{name} must be at least 1 (got {value}); {fix}")


def run(argv):
    """Parse, check, load, compute, then write (nothing is written before every check has passed)."""
    from absl import flags
    fv = _flags(argv)
    try:
        fv(argv)
    except (flags.Error, ValueError) as e:
        raise UsageError(str(e)) from e
    if not fv.workdir or not fv.out:
        raise UsageError("--workdir=DIR (the trained model) and --out=DIR (where the results go) are required")
    _at_least_one(fv["num-images"].value, "num-images", "analyse at least one image")
    _at_least_one(fv["patch-size"].value, "patch-size", "give the patch side in pixels, or leave the flag out "
                  "for the paper's 40 px at 224 px scaled to the model's input")
    _at_least_one(fv.stride, "stride", "give the pixels between patch corners, or leave it out for the patch size")
    _at_least_one(fv.chunk, "chunk", "give the positions per call, e.g. 64")
    try:
        models = {"model": trained.load(fv.workdir, fv.config)}
        if fv.compare:
            models["compare"] = trained.load(fv.compare)
    except trained.ModelSourceError as e:
        raise UsageError(str(e)) from e
    config = fv.config if fv.config is not None else models["model"].config
    if config is None:
        raise UsageError(f"{fv.workdir} holds converted weights without a data config: pass --config=configs/...")
    size = int(config.data.image_size)
    for name, model in models.items():
        if model.config is not None and int(model.config.data.image_size) != size:
            raise UsageError(f"--{'compare' if name == 'compare' else 'workdir'} model takes "
                             f"{model.image_size} px images, the data {size} px: compare models of one input size")
    patch_size = fv["patch-size"].value or default_patch_size(size)
    if patch_size > size:
        raise UsageError(f"--patch-size={patch_size} is larger than the model's {size} px input; use at most {size}")
    stride = fv.stride or patch_size
    try:
        samples = collect_samples(config, fv.split, fv["num-images"].value)
    except ValueError as e:  # an unknown dataset or split
        raise UsageError(f"--split={fv.split}: {e}") from e
    results = analyse(models, config, samples, patch_size, stride, fv.chunk, fv.dtype)
    return write_outputs(fv.out, models, fv.split, samples, *results, patch_size, stride)


def main(argv=None):
    argv = sys.argv if argv is None else argv
    try:
        summary = run(argv)
    except UsageError as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    for name, figures in summary["models"].items():
        print(f"{figures['label']:8} " + "  ".join(
            f"{k}: unoccluded {figures[k]['unoccluded']:.1f}, mean {figures[k]['mean_over_positions']:.1f}, "
            f"worst position {figures[k]['worst_position']:.1f} mm" for k in METRICS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
