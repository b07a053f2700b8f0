"""Evaluation metrics of the PARE/SPIN protocol, in the units of the inputs (multiply metres by 1000 for mm).

Every metric returns per-sample values [B]; `masked_sum_count` turns them into a (sum, count) pair so that
batches of different sizes (a ragged last batch, padding) combine exactly: mean = sum(sums) / sum(counts).
"""
import jax.numpy as jnp


def mpjpe(pred, gt):
    """Mean per-joint position error. pred, gt [B, J, 3] (already root-centred as the protocol asks) -> [B]."""
    return jnp.mean(jnp.linalg.norm(pred - gt, axis=-1), axis=-1)


def per_joint_error(pred, gt):
    """[B, J, 3] x2 -> [B, J] Euclidean distance per joint."""
    return jnp.linalg.norm(pred - gt, axis=-1)


def similarity_procrustes(source, target):
    """Per-sample similarity transform (scale, rotation with det +1, translation) that best maps source onto
    target in the least-squares sense (Umeyama). source, target [B, N, 3] -> aligned source [B, N, 3]."""
    mu_s = jnp.mean(source, axis=1, keepdims=True)
    mu_t = jnp.mean(target, axis=1, keepdims=True)
    xs, xt = source - mu_s, target - mu_t
    var_s = jnp.sum(xs * xs, axis=(1, 2))
    cov = jnp.einsum("bni,bnj->bij", xt, xs)  # [B, 3, 3] = sum_n xt_n xs_n^T
    u, sig, vt = jnp.linalg.svd(cov)
    # Flip the last singular direction when needed so the rotation is proper (det +1), not a reflection.
    d = jnp.sign(jnp.linalg.det(u @ vt))
    d = jnp.where(d == 0, 1.0, d)
    fix = jnp.concatenate([jnp.ones_like(sig[:, :2]), d[:, None]], axis=1)
    rot = u @ (fix[:, :, None] * vt)
    scale = jnp.sum(sig * fix, axis=1) / var_s
    return scale[:, None, None] * jnp.einsum("bij,bnj->bni", rot, xs) + mu_t


def pa_mpjpe(pred, gt):
    """MPJPE after per-sample Procrustes alignment of pred onto gt. [B, J, 3] x2 -> [B]."""
    return mpjpe(similarity_procrustes(pred, gt), gt)


def pve(pred_vertices, gt_vertices):
    """Mean per-vertex error without alignment. [B, V, 3] x2 -> [B]."""
    return mpjpe(pred_vertices, gt_vertices)


def center_on(joints, index):
    """Subtract joint `index` from all joints (the protocol centres on the pelvis). [B, J, 3] -> [B, J, 3]."""
    return joints - joints[:, index:index + 1]


def masked_sum_count(per_sample, mask=None):
    """per_sample [B] (or [B, ...]), mask [B] of valid samples -> (sum, count) over valid samples."""
    if mask is None:
        mask = jnp.ones(per_sample.shape[:1], per_sample.dtype)
    mask = mask.astype(per_sample.dtype).reshape(mask.shape + (1,) * (per_sample.ndim - 1))
    return jnp.sum(per_sample * mask, axis=0), jnp.sum(mask, axis=0) * jnp.ones(per_sample.shape[1:])
