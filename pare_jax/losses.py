"""PARE's training losses (PARE_SPEC.md, "Losses"), each a masked mean that is well defined under jit.

The authors' code averages each term over the samples that have the label; with static shapes we do the same
with masks: sum(mask * error) / max(count, 1), so a batch without any such sample contributes exactly 0.

Batch keys (from pare_jax.data): keypoints [B, 49, 3] (x, y in [-1, 1] of the crop, confidence), joints3d
[B, 24, 4] (the 24 SPIN ground-truth joints in metres + confidence), has_joints3d [B], pose [B, 72] (axis-angle),
betas [B, 10], has_smpl [B], part_map [B, H, W] int32 (0 background, 1..24 parts), has_part_map [B].
Model outputs (pare_jax.models): smpl_joints2d [B, 49, 2], smpl_joints3d [B, 49, 3], pred_pose [B, 24, 3, 3],
pred_shape [B, 10], pred_cam [B, 3], pred_segm_mask [B, h, w, M] logits (M = 25 parts+background or 24 maps).
"""
import jax
import jax.numpy as jnp

from smpl_jax.rotations import axis_angle_to_matrix

NUM_OPENPOSE = 25
# Mid-hip of the 24 SPIN ground-truth joints: the mean of "Right Hip" (2) and "Left Hip" (3).
GT_HIPS = (2, 3)


def _masked_mean(per_element, mask, elements_per_sample):
    """per_element [B, ...] errors, mask [B] -> mean over the elements of the masked samples."""
    mask = mask.astype(per_element.dtype)
    total = jnp.sum(per_element.reshape(per_element.shape[0], -1) * mask[:, None])
    return total / jnp.maximum(jnp.sum(mask) * elements_per_sample, 1.0)


def keypoint_2d_loss(pred, gt, openpose_weight=0.0, gt_weight=1.0):
    """Confidence-weighted squared error, averaged over all B x 49 x 2 coordinates (as the authors do).
    pred [B, 49, 2], gt [B, 49, 3] -> scalar. OpenPose joints (first 25) weighted by openpose_weight."""
    conf = gt[..., 2]
    joint_weight = jnp.where(jnp.arange(gt.shape[1]) < NUM_OPENPOSE, openpose_weight, gt_weight)
    return jnp.mean((conf * joint_weight)[..., None] * (pred - gt[..., :2]) ** 2)


def keypoint_3d_loss(pred, gt, has_joints3d):
    """Squared error of the 24 ground-truth joints after centring both on the mid-hip; samples with 3D only.
    pred [B, 24, 3] (joints 25..48 of the 49), gt [B, 24, 4], has_joints3d [B] -> scalar."""
    centre = lambda j: j - jnp.mean(j[:, GT_HIPS, :3], axis=1, keepdims=True)  # noqa: E731
    err = gt[..., 3:] * (centre(pred) - centre(gt[..., :3])) ** 2
    return _masked_mean(err, has_joints3d, gt.shape[1] * 3)


def smpl_losses(pred_pose, pred_shape, gt_pose, gt_betas, has_smpl):
    """Squared error of rotation matrices and of betas, samples with SMPL only.
    pred_pose [B, 24, 3, 3], pred_shape [B, 10], gt_pose [B, 72] axis-angle, gt_betas [B, 10], has_smpl [B]
    -> (pose loss, betas loss)."""
    gt_rot = axis_angle_to_matrix(gt_pose.reshape(-1, 24, 3))
    pose = _masked_mean((pred_pose - gt_rot) ** 2, has_smpl, 24 * 9)
    betas = _masked_mean((pred_shape - gt_betas) ** 2, has_smpl, gt_betas.shape[1])
    return pose, betas


CAMERA_LOSS_LINEAR_BELOW = -1.5


def camera_loss(pred_cam):
    """mean(exp(-10 s)^2): pushes the weak-perspective scale to stay positive. pred_cam [B, 3] -> scalar.

    Exactly the authors' term for s >= -1.5 (where it is already 1e13), continued below by its tangent line.
    The pure exponential overflows float32 at s < -4.4, and a step whose loss is infinite is skipped without
    changing the parameters, so one bad excursion of the scale would stall a run for good; the tangent keeps the
    loss and gradient finite and still points back to positive scales."""
    s = pred_cam[:, 0]
    s0 = CAMERA_LOSS_LINEAR_BELOW
    exact = jnp.exp(-10.0 * jnp.maximum(s, s0)) ** 2  # clamped inside too: no inf in the unused branch's gradient
    tangent = jnp.exp(-20.0 * s0) * (1.0 - 20.0 * (s - s0))
    return jnp.mean(jnp.where(s >= s0, exact, tangent))


def part_segmentation_loss(logits, part_map, has_part_map):
    """Cross-entropy over 25 classes with the logits upsampled (bilinear) to the label map's size.
    logits [B, h, w, 25], part_map [B, H, W] int32, has_part_map [B] -> scalar (mean over labelled pixels)."""
    batch, height, width = part_map.shape
    up = jax.image.resize(logits.astype(jnp.float32), (batch, height, width, logits.shape[-1]), "bilinear")
    log_probs = jax.nn.log_softmax(up, axis=-1)
    nll = -jnp.take_along_axis(log_probs, part_map[..., None], axis=-1)[..., 0]
    return _masked_mean(nll, has_part_map, height * width)


def joint_heatmap_loss(logits, keypoints, sigma=0.05):
    """"Joints" supervision of the part branch (Table 3 of the paper): map j's spatial softmax is pulled towards
    a Gaussian around ground-truth joint j of the 24 SPIN ground-truth joints (cross-entropy between the two
    distributions). logits [B, h, w, 24], keypoints [B, 49, 3] -> scalar. sigma in normalised units."""
    batch, h, w, maps = logits.shape
    gt = keypoints[:, NUM_OPENPOSE:NUM_OPENPOSE + maps]
    ys, xs = (jnp.linspace(-1 + 1 / n, 1 - 1 / n, n) for n in (h, w))  # pixel centres in [-1, 1]
    dx = xs[None, None, :, None] - gt[:, None, None, :, 0]
    dy = ys[None, :, None, None] - gt[:, None, None, :, 1]
    d2 = dx ** 2 + dy ** 2
    target = jax.nn.softmax((-d2 / (2 * sigma ** 2)).reshape(batch, h * w, maps), axis=1)
    log_attention = jax.nn.log_softmax(logits.astype(jnp.float32).reshape(batch, h * w, maps), axis=1)
    per_map = -jnp.sum(target * log_attention, axis=1)  # [B, maps]
    return jnp.sum(per_map * gt[..., 2]) / jnp.maximum(jnp.sum(gt[..., 2]), 1.0)


def dsed_distillation_loss(student_features, teacher_features):
    """HUPOR's feature distillation at every encoder block: sum_i mean (s_i - stop_grad(t_i))^2. Tuples of
    [B, h_i, w_i, C_i] -> scalar. Gradients reach the student only; the teacher learns from the completion."""
    return sum(jnp.mean((s.astype(jnp.float32) - jax.lax.stop_gradient(t.astype(jnp.float32))) ** 2)
               for s, t in zip(student_features, teacher_features))


def dsed_completion_loss(teacher_logits, batch, part_supervision):
    """The completed maps of the teacher path against the complete labels, with the part branch's own loss:
    the part cross-entropy ('parts') or the joint-heatmap loss ('joints'). teacher_logits [B, h, w, M]."""
    if part_supervision == "parts":
        return part_segmentation_loss(teacher_logits, batch["part_map"], batch["has_part_map"])
    return joint_heatmap_loss(teacher_logits, batch["keypoints"])


def pare_losses(out, batch, weights, part_supervision="parts"):
    """All terms and their weighted sum. weights: dict with keypoints_2d, keypoints_3d, pose, betas, camera,
    part (scalars, possibly traced from the schedule), and dsed_completion, dsed_distill when the outputs carry
    the DSED's (dsed_teacher_logits, dsed_student_features, dsed_teacher_features). part_supervision: 'parts' |
    'joints' | 'none' (HMR heads have no part maps: 'none'). Returns (total, {term: unweighted value}).
    The part term supervises the branch's raw maps (pred_segm_mask), not the completed ones."""
    terms = {
        "keypoints_2d": keypoint_2d_loss(out["smpl_joints2d"], batch["keypoints"]),
        "keypoints_3d": keypoint_3d_loss(out["smpl_joints3d"][:, NUM_OPENPOSE:], batch["joints3d"],
                                         batch["has_joints3d"]),
        "camera": camera_loss(out["pred_cam"]),
    }
    terms["pose"], terms["betas"] = smpl_losses(out["pred_pose"], out["pred_shape"], batch["pose"],
                                                batch["betas"], batch["has_smpl"])
    if part_supervision == "parts":
        terms["part"] = part_segmentation_loss(out["pred_segm_mask"], batch["part_map"], batch["has_part_map"])
    elif part_supervision == "joints":
        terms["part"] = joint_heatmap_loss(out["pred_segm_mask"], batch["keypoints"])
    if "dsed_teacher_logits" in out:
        terms["dsed_completion"] = dsed_completion_loss(out["dsed_teacher_logits"], batch, part_supervision)
        terms["dsed_distill"] = dsed_distillation_loss(out["dsed_student_features"], out["dsed_teacher_features"])
    total = sum(weights[name] * value for name, value in terms.items())
    return total, terms
