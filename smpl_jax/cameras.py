"""Cameras: weak-perspective [s, tx, ty], pinhole perspective projection, and PARE's conversion between them.

PARE predicts a weak-perspective camera for a square crop; its perspective equivalent puts the body at depth
tz = 2 f / (crop * s) with focal length f = 5000 px, and projects with the principal point at the crop centre.
2D keypoints in PARE's losses are normalised to [-1, 1] over the crop.
"""
import jax.numpy as jnp

PARE_FOCAL_LENGTH = 5000.0
PARE_CROP_SIZE = 224


def weak_perspective_to_translation(cam, focal_length=PARE_FOCAL_LENGTH, crop_size=PARE_CROP_SIZE):
    """cam [..., 3] = (s, tx, ty) -> camera translation [..., 3] = (tx, ty, 2 f / (crop s + 1e-9))."""
    s, tx, ty = cam[..., 0], cam[..., 1], cam[..., 2]
    return jnp.stack([tx, ty, 2.0 * focal_length / (crop_size * s + 1e-9)], axis=-1)


def translation_to_weak_perspective(transl, focal_length=PARE_FOCAL_LENGTH, crop_size=PARE_CROP_SIZE):
    """Inverse of weak_perspective_to_translation. transl [..., 3] -> cam [..., 3]."""
    s = 2.0 * focal_length / (crop_size * transl[..., 2])
    return jnp.stack([s, transl[..., 0], transl[..., 1]], axis=-1)


def perspective_projection(points, translation, focal_length, center, rotation=None):
    """Pinhole projection to pixels. points [B, N, 3], translation [B, 3], focal_length scalar or [B] or [B, 2],
    center [2] or [B, 2], rotation [B, 3, 3] (identity if None). Returns [B, N, 2]."""
    if rotation is not None:
        points = jnp.einsum("bij,bnj->bni", rotation, points)
    cam_points = points + translation[:, None, :]
    focal = jnp.asarray(focal_length, points.dtype)
    focal = focal.reshape((-1, 1, 1) if focal.ndim == 1 else (-1, 1, 2) if focal.ndim == 2 else ())
    center = jnp.asarray(center, points.dtype).reshape(-1, 1, 2)
    return cam_points[..., :2] / cam_points[..., 2:3] * focal + center


def intrinsics(focal_length=PARE_FOCAL_LENGTH, crop_size=PARE_CROP_SIZE):
    """K [3, 3] for a square crop with the principal point at its centre (PARE's label camera for 224 px)."""
    c = crop_size / 2.0
    return jnp.asarray([[focal_length, 0.0, c], [0.0, focal_length, c], [0.0, 0.0, 1.0]])


def project_normalized(points, cam, focal_length=PARE_FOCAL_LENGTH, crop_size=PARE_CROP_SIZE):
    """PARE's 2D keypoints: perspective projection with the translation from the weak-perspective cam, principal
    point at the centre, divided by half the crop so the crop spans [-1, 1]. points [B, N, 3], cam [B, 3]
    -> [B, N, 2]."""
    transl = weak_perspective_to_translation(cam, focal_length, crop_size)
    pixels = perspective_projection(points, transl, focal_length, jnp.zeros(2, points.dtype))
    return pixels / (crop_size / 2.0)


def weak_perspective_projection(points, cam):
    """Orthographic projection scaled by s after shifting by (tx, ty). points [B, N, 3], cam [B, 3] -> [B, N, 2]
    in the crop's normalised [-1, 1] coordinates."""
    return cam[:, None, :1] * (points[..., :2] + cam[:, None, 1:])
