"""Evaluation metrics of the PARE protocol as (sum, count) accumulators, so ragged and padded batches add up.

Protocol (PARE_SPEC.md): the H36M regressor turns predicted and ground-truth vertices into 17 joints, of which the
14 of H36M_TO_J14 are kept, both centred on H36M joint 0 (pelvis). MPJPE = mean L2 over the 14 joints; PA-MPJPE =
the same after per-sample similarity Procrustes; PVE = mean per-vertex L2 with both meshes centred on their
pelvis (no rotation or scale alignment). All in millimetres. Part-map mIoU over the 24 parts + background from
per-class intersection and union counts summed over the whole set.

Standard errors: every per-sample metric also accumulates its sum of squares (`<name>_sq`), so summarize
reports `<name>_se` = std / sqrt(n) over the samples.

Occluded joints: of the 14 evaluation joints, those whose ground-truth visibility is 0 (hidden by an occluder
or by the body itself, or outside the crop). The 14 joints are, in order, SPIN's ground-truth joints 0..13 (keypoints
25..38 of the 49: ankles, knees, hips, wrists, elbows, shoulders, neck, head top), the joints H36M_TO_J14 picks from
the H36M regressor, so their visibility is visibility[:, 25:39]. occluded_mpjpe is the error of those joints
(pelvis-centred, as MPJPE); occluded_pa_mpjpe the same after the Procrustes alignment computed on all 14 joints.
Both are means over occluded joints (sum over joints, count = number of occluded joints); their standard error
treats the joints as the samples. Unknown visibility (-1, real datasets) counts as not occluded.
"""
import jax.numpy as jnp
import numpy as np

from smpl_jax import metrics as smpl_metrics
from smpl_jax.joints import H36M_TO_J14

NUM_PART_CLASSES = 25
J14_VISIBILITY = slice(25, 39)  # of SPIN's 49 keypoints: the ground-truth joints 0..13, the 14 joints' order


def body_joints_and_vertices(body, pose_rotmats, betas):
    """pose_rotmats [B, 24, 3, 3], betas [B, 10] -> (14 evaluation joints [B, 14, 3], vertices [B, V, 3]), both
    centred on the H36M pelvis."""
    out = body(betas=betas, body_pose=pose_rotmats[:, 1:], global_orient=pose_rotmats[:, :1], joints="h36m17")
    pelvis = out.joints[:, :1]
    return out.joints[:, np.asarray(H36M_TO_J14)] - pelvis, out.vertices - pelvis


def pose_metrics(pred_joints, gt_joints, pred_vertices, gt_vertices, mask, visibility=None):
    """[B, 14, 3] x2, [B, V, 3] x2 (metres, centred), mask [B] of real samples, visibility [B, 49] (SPIN's 49
    keypoints; optional) -> {name: (sum, count)} in mm, with <name>_sq sums of squares for standard errors."""
    mm = 1000.0
    per_joint = smpl_metrics.per_joint_error(pred_joints, gt_joints) * mm
    aligned = smpl_metrics.similarity_procrustes(pred_joints, gt_joints)
    per_joint_pa = smpl_metrics.per_joint_error(aligned, gt_joints) * mm
    per_sample = {
        "mpjpe": jnp.mean(per_joint, axis=1),
        "pa_mpjpe": jnp.mean(per_joint_pa, axis=1),
        "pve": smpl_metrics.pve(pred_vertices, gt_vertices) * mm,
    }
    sums = {name: smpl_metrics.masked_sum_count(value, mask) for name, value in per_sample.items()}
    sums |= {f"{name}_sq": smpl_metrics.masked_sum_count(value ** 2, mask) for name, value in per_sample.items()}
    sums["per_joint_mpjpe"] = smpl_metrics.masked_sum_count(per_joint, mask)
    if visibility is not None:
        hidden = (visibility[:, J14_VISIBILITY] == 0) & mask.astype(bool)[:, None]
        for name, errors in (("occluded_mpjpe", per_joint), ("occluded_pa_mpjpe", per_joint_pa)):
            count = jnp.sum(hidden).astype(errors.dtype)
            sums[name] = (jnp.sum(jnp.where(hidden, errors, 0.0)), count)
            sums[f"{name}_sq"] = (jnp.sum(jnp.where(hidden, errors ** 2, 0.0)), count)
    return sums


def part_confusion_counts(pred_labels, gt_labels, mask):
    """pred_labels, gt_labels [B, H, W] int (0..24), mask [B] -> (intersection [25], union [25]) pixel counts."""
    valid = mask.astype(bool)[:, None, None]
    classes = jnp.arange(NUM_PART_CLASSES)
    pred_is = (pred_labels[..., None] == classes) & valid[..., None]
    gt_is = (gt_labels[..., None] == classes) & valid[..., None]
    intersection = jnp.sum(pred_is & gt_is, axis=(0, 1, 2))
    union = jnp.sum(pred_is | gt_is, axis=(0, 1, 2))
    return intersection.astype(jnp.float32), union.astype(jnp.float32)


def add(totals, update):
    """Accumulate nested (sum, count) pairs (or arrays) from one batch into running totals (numpy, on host)."""
    if totals is None:
        return {k: tuple(np.asarray(x, np.float64) for x in v) for k, v in update.items()}
    return {k: tuple(a + np.asarray(b, np.float64) for a, b in zip(totals[k], update[k])) for k in totals}


def summarize(totals):
    """Totals -> JSON-friendly dict: means of the (sum, count) metrics, their standard errors (<name>_se from
    <name>_sq), per-joint list, part mIoU, num_samples (and num_occluded_joints)."""
    summary = {}
    for name, (total, count) in totals.items():
        if name.endswith("_sq"):
            mean_total, _ = totals[name[:-3]]
            if count > 1:
                mean = mean_total / count
                variance = max(total / count - mean ** 2, 0.0) * count / (count - 1)
                summary[f"{name[:-3]}_se"] = float(np.sqrt(variance / count))
            else:
                summary[f"{name[:-3]}_se"] = None
        elif name == "part_iou":
            present = count > 0
            summary["part_miou"] = float(np.mean(total[present] / count[present])) if present.any() else None
        elif name == "per_joint_mpjpe":
            summary[name] = (total / np.maximum(count, 1)).tolist()
        else:
            summary[name] = float(total / count) if count > 0 else None
    summary["num_samples"] = int(totals["mpjpe"][1]) if "mpjpe" in totals else 0
    if "occluded_mpjpe" in totals:
        summary["num_occluded_joints"] = int(totals["occluded_mpjpe"][1])
    return summary
