"""Offline part labels: the camera translation from 2D keypoints, and the 24-part map of the ground-truth mesh.

PARE renders its part labels from the ground-truth SMPL mesh with the label camera K = [[5000, 0, 112],
[0, 5000, 112], [0, 0, 1]], R = I and a translation fitted so that the mesh's joints land on the annotated 2D
keypoints of the 224 px box. The fit (`estimate_translation`) is a weighted linear least squares in closed form:
for a joint X = (X, Y, Z) (camera axes, before translation) seen at u, v pixels from the principal point,
u (Z + tz) = f (X + tx) and v (Z + tz) = f (Y + ty) are linear in t = (tx, ty, tz):

    f tx - u tz = u Z - f X,        f ty - v tz = v Z - f Y,

two rows per joint, weighted by the keypoint confidence; t solves the 3 x 3 normal equations.
The maps are rendered at the stored crop's resolution (box plus margin), where the same camera has focal
5000 * S / (224 * margin) and its principal point at the crop centre.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pare_jax import render

FOCAL_LENGTH = 5000.0
LABEL_CROP_SIZE = 224
MIN_FIT_JOINTS = 4  # fewer confident joints leave the depth (tz) poorly determined: no part map then


def estimate_translation(joints, keypoints, focal_length=FOCAL_LENGTH, crop_size=LABEL_CROP_SIZE):
    """Weighted least-squares camera translation.

    joints [N, K, 3]: 3D joints in camera axes without translation; keypoints [N, K, 3]: box-normalised x, y
    ([-1, 1] over the box) and a confidence used as weight. The box is imaged at crop_size pixels with the
    given focal length and the principal point at its centre.
    Returns (translation [N, 3] float64, valid [N] bool): valid needs MIN_FIT_JOINTS confident joints and the
    body in front of the camera.
    """
    joints = np.asarray(joints, np.float64)
    keypoints = np.asarray(keypoints, np.float64)
    u = keypoints[..., 0] * crop_size / 2.0
    v = keypoints[..., 1] * crop_size / 2.0
    w = np.clip(keypoints[..., 2], 0.0, None)
    X, Y, Z = joints[..., 0], joints[..., 1], joints[..., 2]
    zeros, f = np.zeros_like(u), np.full_like(u, focal_length)
    rows_x, rows_y = np.stack([f, zeros, -u], -1), np.stack([zeros, f, -v], -1)  # [N, K, 3]
    rhs_x, rhs_y = u * Z - f * X, v * Z - f * Y
    normal = (np.einsum("nk,nki,nkj->nij", w, rows_x, rows_x) + np.einsum("nk,nki,nkj->nij", w, rows_y, rows_y))
    moment = np.einsum("nk,nki,nk->ni", w, rows_x, rhs_x) + np.einsum("nk,nki,nk->ni", w, rows_y, rhs_y)
    enough = (w > 0).sum(-1) >= MIN_FIT_JOINTS
    # A tiny ridge keeps degenerate systems (no or collinear keypoints) solvable; they are marked invalid.
    ridge = 1e-13 * np.trace(normal, axis1=1, axis2=2)[:, None, None] * np.eye(3) + 1e-12 * np.eye(3)
    translation = np.linalg.solve(normal + ridge, moment[..., None])[..., 0]
    valid = enough & (translation[:, 2] + Z.min(-1, initial=np.inf, where=w > 0) > 0) & np.isfinite(
        translation).all(-1)
    return translation, valid


def stored_crop_camera(size, crop_margin, focal_length=FOCAL_LENGTH, crop_size=LABEL_CROP_SIZE):
    """K [3, 3] of PARE's label camera for the stored crop of `size` pixels that spans crop_margin boxes."""
    focal = focal_length * size / (crop_size * crop_margin)
    return np.asarray([[focal, 0.0, size / 2.0], [0.0, focal, size / 2.0], [0.0, 0.0, 1.0]], np.float32)


@jax.jit
def posed_body(body, pose, betas, transl):
    """pose [B, 72], betas [B, 10], transl [B, 3] -> vertices [B, V, 3], spin49 joints [B, 49, 3]."""
    out = body(betas=betas, body_pose=pose[:, 3:], global_orient=pose[:, :3], transl=transl, joints="spin49")
    return out.vertices, out.joints


@functools.partial(jax.jit, static_argnames=("size",))
def _render(body, vertices, translation, K, size):
    labels = render.render_part_labels_batch(vertices, body.faces, body.vertex_parts(), translation, K=K,
                                             height=size, width=size)
    return labels.astype(jnp.uint8)


class PartLabeler:
    """Renders stored-crop part maps [S, S] uint8 for batches of SPIN-format annotations with one body.

    body: an smpl_jax.SMPL with the spin49 joints (the open body, or SMPL loaded with the SPIN extra
    regressor). chunk: samples per rendering call (padded, so each crop size compiles once).
    """

    def __init__(self, body, size, crop_margin, chunk=16):
        self.body, self.size, self.crop_margin, self.chunk = body, size, float(crop_margin), chunk
        self.K = jnp.asarray(stored_crop_camera(size, crop_margin))

    def __call__(self, pose, betas, keypoints, has_smpl):
        """pose [N, 72], betas [N, 10], keypoints [N, 49, 3] box-normalised, has_smpl [N]
        -> (part maps [N, S, S] uint8, cam_t [N, 3] float32, has_part_map [N] float32).
        The translation is fitted to the 24 ground-truth keypoints (keypoints[:, 25:])."""
        num = len(pose)
        maps = np.zeros((num, self.size, self.size), np.uint8)
        cam_t = np.zeros((num, 3), np.float32)
        has_map = np.zeros(num, np.float32)
        for start in range(0, num, self.chunk):
            rows = np.arange(start, min(start + self.chunk, num))
            labels, t, ok = self._chunk(pose[rows], betas[rows], keypoints[rows], has_smpl[rows] > 0)
            maps[rows], cam_t[rows], has_map[rows] = labels, t, ok
        return maps, cam_t, has_map

    def _chunk(self, pose, betas, keypoints, has_smpl):
        num = len(pose)
        pad = lambda x: np.concatenate([x, np.repeat(x[-1:], self.chunk - num, 0)])  # noqa: E731
        pose_p, betas_p = jnp.asarray(pad(pose), jnp.float32), jnp.asarray(pad(betas), jnp.float32)
        vertices, joints = posed_body(self.body, pose_p, betas_p, jnp.zeros((self.chunk, 3), jnp.float32))
        joints = np.asarray(joints)[:num]
        translation, valid = estimate_translation(joints[:, 25:], keypoints[:, 25:])
        valid &= has_smpl
        if not valid.any():
            return np.zeros((num, self.size, self.size), np.uint8), np.zeros((num, 3), np.float32), valid
        safe_t = np.where(valid[:, None], translation, [0.0, 0.0, 100.0])
        labels = _render(self.body, vertices, jnp.asarray(pad(safe_t), jnp.float32), self.K, self.size)
        labels = np.where(valid[:, None, None], np.asarray(labels)[:num], 0).astype(np.uint8)
        return labels, np.where(valid[:, None], translation, 0.0).astype(np.float32), valid.astype(np.float32)
