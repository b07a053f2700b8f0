"""Evaluation metrics of the PARE protocol as (sum, count) accumulators, so ragged and padded batches add up.

Protocol (PARE_SPEC.md): the H36M regressor turns predicted and ground-truth vertices into 17 joints, of which the
14 of H36M_TO_J14 are kept, both centred on H36M joint 0 (pelvis). MPJPE = mean L2 over the 14 joints; PA-MPJPE =
the same after per-sample similarity Procrustes; PVE = mean per-vertex L2 with both meshes centred on their
pelvis (no rotation or scale alignment). All in millimetres. Part-map mIoU over the 24 parts + background from
per-class intersection and union counts summed over the whole set.
"""
import jax.numpy as jnp
import numpy as np

from smpl_jax import metrics as smpl_metrics
from smpl_jax.joints import H36M_TO_J14

NUM_PART_CLASSES = 25


def body_joints_and_vertices(body, pose_rotmats, betas):
    """pose_rotmats [B, 24, 3, 3], betas [B, 10] -> (14 evaluation joints [B, 14, 3], vertices [B, V, 3]), both
    centred on the H36M pelvis."""
    out = body(betas=betas, body_pose=pose_rotmats[:, 1:], global_orient=pose_rotmats[:, :1], joints="h36m17")
    pelvis = out.joints[:, :1]
    return out.joints[:, np.asarray(H36M_TO_J14)] - pelvis, out.vertices - pelvis


def pose_metrics(pred_joints, gt_joints, pred_vertices, gt_vertices, mask):
    """[B, 14, 3] x2, [B, V, 3] x2 (metres, centred), mask [B] of real samples -> {name: (sum, count)} in mm."""
    mm = 1000.0
    per_joint = smpl_metrics.per_joint_error(pred_joints, gt_joints) * mm
    per_sample = {
        "mpjpe": jnp.mean(per_joint, axis=1),
        "pa_mpjpe": smpl_metrics.pa_mpjpe(pred_joints, gt_joints) * mm,
        "pve": smpl_metrics.pve(pred_vertices, gt_vertices) * mm,
    }
    sums = {name: smpl_metrics.masked_sum_count(value, mask) for name, value in per_sample.items()}
    sums["per_joint_mpjpe"] = smpl_metrics.masked_sum_count(per_joint, mask)
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
    """Totals -> JSON-friendly dict: means of the (sum, count) metrics, per-joint list, part mIoU."""
    summary = {}
    for name, (total, count) in totals.items():
        if name == "part_iou":
            present = count > 0
            summary["part_miou"] = float(np.mean(total[present] / count[present])) if present.any() else None
        elif name == "per_joint_mpjpe":
            summary[name] = (total / np.maximum(count, 1)).tolist()
        else:
            summary[name] = float(total / count) if count > 0 else None
    summary["num_samples"] = int(totals["mpjpe"][1]) if "mpjpe" in totals else 0
    return summary
