"""PARE's training losses (PARE_SPEC.md, "Losses"), each a masked mean that is well defined under jit.

The authors' code averages each term over the samples that have the label; with static shapes we do the same
with masks: sum(mask * error) / max(count, 1), so a batch without any such sample contributes exactly 0.

Batch keys (from pare_jax.data): keypoints [B, 49, 3] (x, y in [-1, 1] of the crop, confidence), joints3d
[B, 24, 4] (the 24 SPIN ground-truth joints in metres + confidence), has_joints3d [B], pose [B, 72] (axis-angle),
betas [B, 10], has_smpl [B], part_map [B, H, W] int32 (0 background, 1..24 parts), has_part_map [B];
with the silhouette term on: silhouette [B, H, W, 2] float32 in [0, 1] (channel 0 the target's full silhouette,
channel 1 its visible part), has_silhouette [B].
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
    # A one-hot product rather than take_along_axis: the same value, and its gradient is elementwise, where the
    # gather's transpose was a scatter XLA:CPU built as a broadcast-compare (its most expensive op per step).
    nll = -jnp.sum(jax.nn.one_hot(part_map, log_probs.shape[-1], dtype=log_probs.dtype) * log_probs, axis=-1)
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


def pare_losses(out, batch, weights, part_supervision="parts", silhouette_faces=None, silhouette_size=64,
                log_variances=None):
    """All terms and their weighted sum. weights: dict with keypoints_2d, keypoints_3d, pose, betas, camera,
    part (scalars, possibly traced from the schedule), and dsed_completion, dsed_distill when the outputs carry
    the DSED's (dsed_teacher_logits, dsed_student_features, dsed_teacher_features). part_supervision: 'parts' |
    'joints' | 'none' (HMR heads have no part maps: 'none'). Returns (total, {term: unweighted value}).
    The part term supervises the branch's raw maps (pred_segm_mask), not the completed ones.
    silhouette_faces [F, 3]: adds the silhouette term (weights['silhouette']) of out['silhouette_vertices']
    [N, V, 3] and out['pred_cam_t'] against batch['silhouette'], batch['has_silhouette'] (silhouette_loss), for
    the first N <= B samples of the batch (all by default; fewer to bound the renderer's cost).
    log_variances {term: s}: uncertainty weighting of those terms (weighted_total)."""
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
    if silhouette_faces is not None:
        n = out["silhouette_vertices"].shape[0]  # the first n samples (loss.silhouette_samples)
        terms["silhouette"] = silhouette_loss(out["silhouette_vertices"], silhouette_faces, out["pred_cam_t"][:n],
                                              batch["silhouette"][:n], batch["has_silhouette"][:n],
                                              silhouette_size)
    return weighted_total(terms, weights, log_variances), terms


# ---- LASOR (SEED_SYSTEMS.md, section c): the silhouette term and homoscedastic uncertainty weighting ----

WEIGHTINGS = ("fixed", "uncertainty")
SILHOUETTE_SIGMA = 0.1  # blur in pixel^2 at the silhouette resolution (pare_jax.render.soft); see silhouette_loss


def crop_camera(size, focal_length=5000.0, crop_size=224):
    """K [3, 3] of the training crop rendered at size x size pixels: PARE's camera (focal 5000 px for a 224 px
    crop) scaled to the size, principal point at the centre. A point X in the camera frame lands at
    u = f X_x / X_z + size / 2, so (u - size / 2) / (size / 2) = 5000 X_x / (112 X_z): exactly
    smpl_jax.cameras.project_normalized, the [-1, 1] coordinates of the 2D keypoints (pixel i spans [i, i + 1])."""
    f = focal_length * size / crop_size
    c = size / 2.0
    return jnp.asarray([[f, 0.0, c], [0.0, f, c], [0.0, 0.0, 1.0]], jnp.float32)


def render_silhouettes(vertices, faces, cam_t, size, sigma=SILHOUETTE_SIGMA):
    """Soft silhouettes of posed bodies through the crop camera (at the origin, looking down +z).
    vertices [B, V, 3] (body frame), faces [F, 3], cam_t [B, 3] (pred_cam_t) -> [B, size, size] in [0, 1]."""
    from pare_jax.render import soft_silhouette  # the renderer is only needed with the silhouette term on
    K = crop_camera(size).astype(vertices.dtype)
    R = jnp.eye(3, dtype=vertices.dtype)
    render = lambda v, t: soft_silhouette(v, faces, K, R, t, size, size, sigma=sigma)  # noqa: E731
    return jax.vmap(render)(vertices, cam_t.astype(vertices.dtype))


def silhouette_target(silhouette, size):
    """The visible silhouette of the target (channel 1 of batch["silhouette"] [B, H, W, 2]: LASOR's
    S = S1 - S1 * S2, the target minus the person in front of it), resized to size x size -> [B, size, size]."""
    visible = silhouette[..., 1].astype(jnp.float32)
    batch, height, width = visible.shape
    if (height, width) == (size, size):
        return visible
    if height % size == 0 and width % size == 0:  # whole blocks: the exact area average
        return visible.reshape(batch, size, height // size, size, width // size).mean(axis=(2, 4))
    return jax.image.resize(visible, (batch, size, size), "linear", antialias=True)  # antialiased: area-like


def silhouette_loss(vertices, faces, cam_t, silhouette, has_silhouette, size, sigma=SILHOUETTE_SIGMA):
    """LASOR's L_S = (1 / HW) ||S - S_hat||^2: the soft silhouette S_hat of the predicted mesh (vertices
    [B, V, 3], faces [F, 3], cam_t [B, 3]) rendered at size x size through the crop camera (crop_camera), against
    the target's visible silhouette S (silhouette_target of silhouette [B, H, W, 2]). LASOR supervises the
    visible part: where another person stands in front, the target is not asked to cover it, and the prediction
    is pulled off it. Mean over the pixels of the samples with has_silhouette [B] -> scalar.
    The blur sigma defaults to 0.1 px^2, SoftRas's 1e-4 in [-1, 1] units at 64 px: the soft mask is a union over
    faces, so a dense mesh bleeds outwards where many faces are near an edge (at 1 px^2 the open body's mask
    > 0.5 reached ~3 px beyond its projected outline at 64 px, which would pull every prediction inwards)."""
    predicted = render_silhouettes(vertices, faces, cam_t, size, sigma)
    target = silhouette_target(silhouette, size)
    return _masked_mean((predicted - target) ** 2, has_silhouette, size * size)


def check_weighting(loss):
    """loss.weighting ('fixed' when the config has no such key) -> the name; ValueError for any other."""
    weighting = loss.get("weighting", "fixed")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"loss.weighting={weighting!r}: choose one of {list(WEIGHTINGS)}")
    return weighting


def initial_log_variances(loss):
    """The learnable log-variances s_i = log sigma_i^2 of loss.weighting='uncertainty': one per term of
    loss.weights with a positive weight w_i, initialised to -log(w_i) so that each term's multiplier exp(-s_i)
    starts at its fixed weight. {} for 'fixed' (and no s for a term of weight 0). {term: float32 scalar}."""
    if check_weighting(loss) == "fixed":
        return {}
    return {name: jnp.asarray(-jnp.log(float(w)), jnp.float32) for name, w in sorted(loss.weights.items())
            if float(w) > 0}


def weighted_total(terms, weights, log_variances=None):
    """The loss to minimise. Fixed: sum_i w_i L_i. With log_variances (Kendall's homoscedastic uncertainty as
    STRAPS and LASOR implement it): sum_i (L_i exp(-s_i) + s_i) over the terms that have an s_i and whose
    scheduled weight w_i is positive at this step; a term switched off by the schedule (w_i = 0) contributes
    neither L_i nor s_i. Terms without an s_i (weight 0 in the config, the DSED's) keep w_i L_i.
    Only whether w_i > 0 matters for a term with an s_i, not its scheduled size."""
    log_variances = log_variances or {}
    total = 0.0
    for name, value in terms.items():
        if name in log_variances:
            s = log_variances[name]
            total = total + jnp.where(weights[name] > 0, value * jnp.exp(-s) + s, 0.0)
        else:
            total = total + weights[name] * value
    return total


def effective_weights(weights, log_variances):
    """{term: multiplier of L_term}: exp(-s) for the active uncertainty-weighted terms, 0 when switched off,
    the fixed weight otherwise (what the training metrics report as weight_<term>)."""
    return {name: jnp.where(w > 0, jnp.exp(-log_variances[name]), 0.0) if name in log_variances else w
            for name, w in weights.items()}
