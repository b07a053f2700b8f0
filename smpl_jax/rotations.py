"""Rotation representations in pure JAX.

Conventions (named, since every body-model codebase picks its own):
- Axis-angle: a 3-vector whose direction is the axis and whose norm is the angle in radians.
- Rotation matrices act on column vectors: x' = R @ x.
- 6D: the first two *columns* of R, laid out as a 3x2 matrix and flattened row-major, i.e.
  x = [R00, R01, R10, R11, R20, R21]. This is the layout of SPIN and PARE (Zhou et al. 2019): reshape the
  six numbers to [3, 2], take columns a1 and a2, Gram-Schmidt them into b1, b2, and b3 = b1 x b2.
- Quaternions are (w, x, y, z), scalar first.

All functions broadcast over leading dimensions and are safe under jit, vmap and grad (including at angle zero).
"""
import jax
import jax.numpy as jnp


def _skew(v):
    """[..., 3] -> [..., 3, 3] cross-product matrix."""
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    zero = jnp.zeros_like(x)
    return jnp.stack([zero, -z, y, z, zero, -x, -y, x, zero], axis=-1).reshape(v.shape[:-1] + (3, 3))


def _sinc_and_versine(theta2):
    """sin(t)/t and (1-cos(t))/t^2 as functions of t^2, with Taylor series near zero so gradients stay finite."""
    small = theta2 < 1e-6
    safe = jnp.where(small, 1.0, theta2)
    t = jnp.sqrt(safe)
    a = jnp.where(small, 1.0 - theta2 / 6.0 + theta2 * theta2 / 120.0, jnp.sin(t) / t)
    b = jnp.where(small, 0.5 - theta2 / 24.0 + theta2 * theta2 / 720.0, (1.0 - jnp.cos(t)) / safe)
    return a, b


def axis_angle_to_matrix(aa):
    """Rodrigues' formula. aa: [..., 3] -> [..., 3, 3]."""
    theta2 = jnp.sum(aa * aa, axis=-1)[..., None, None]
    a, b = _sinc_and_versine(theta2)
    k = _skew(aa)
    eye = jnp.eye(3, dtype=aa.dtype)
    return eye + a * k + b * (k @ k)


def matrix_to_quaternion(R):
    """[..., 3, 3] -> [..., 4] unit quaternion (w, x, y, z) with w >= 0.

    Picks, per element, the best-conditioned of the four standard formulas (largest diagonal term), so it is
    accurate for every rotation including 180 degrees.
    """
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    m01, m02, m10 = R[..., 0, 1], R[..., 0, 2], R[..., 1, 0]
    m12, m20, m21 = R[..., 1, 2], R[..., 2, 0], R[..., 2, 1]
    candidates = jnp.stack([
        jnp.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], -1),
        jnp.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], -1),
        jnp.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], -1),
        jnp.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], -1),
    ], -2)  # row i = 4 * q_i * q, the formula that divides by the i-th component
    diag = jnp.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = jnp.argmax(diag, axis=-1)
    q = jnp.take_along_axis(candidates, best[..., None, None], axis=-2)[..., 0, :]
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    return jnp.where(q[..., :1] < 0, -q, q)


def quaternion_to_matrix(q):
    """[..., 4] (w, x, y, z), need not be unit -> [..., 3, 3]."""
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    return jnp.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], -1).reshape(q.shape[:-1] + (3, 3))


def quaternion_to_axis_angle(q):
    """[..., 4] (w, x, y, z) -> [..., 3], angle in [0, pi]."""
    q = q / jnp.linalg.norm(q, axis=-1, keepdims=True)
    q = jnp.where(q[..., :1] < 0, -q, q)
    v = q[..., 1:]
    s2 = jnp.sum(v * v, axis=-1, keepdims=True)
    small = s2 < 1e-12
    s = jnp.sqrt(jnp.where(small, 1.0, s2))
    angle = 2.0 * jnp.arctan2(s, q[..., :1])
    # Near zero, angle / sin(angle / 2) -> 2 (+ angle^2 / 12).
    scale = jnp.where(small, 2.0 + s2 * (1.0 / 3.0), angle / s)
    return v * scale


def axis_angle_to_quaternion(aa):
    """[..., 3] -> [..., 4] (w, x, y, z)."""
    theta2 = jnp.sum(aa * aa, axis=-1, keepdims=True)
    small = theta2 < 1e-12
    theta = jnp.sqrt(jnp.where(small, 1.0, theta2))
    half_sinc = jnp.where(small, 0.5 - theta2 / 48.0, jnp.sin(theta / 2) / theta)
    w = jnp.where(small, 1.0 - theta2 / 8.0, jnp.cos(theta / 2))
    return jnp.concatenate([w, aa * half_sinc], axis=-1)


def matrix_to_axis_angle(R):
    """[..., 3, 3] -> [..., 3], via quaternions (stable at 0 and 180 degrees)."""
    return quaternion_to_axis_angle(matrix_to_quaternion(R))


def _normalize(v, eps):
    return v / jnp.maximum(jnp.linalg.norm(v, axis=-1, keepdims=True), eps)


def rot6d_to_matrix(x, eps=1e-8):
    """6D (SPIN/PARE layout, see module docstring) -> rotation matrix. x: [..., 6] -> [..., 3, 3]."""
    m = x.reshape(x.shape[:-1] + (3, 2))
    a1, a2 = m[..., 0], m[..., 1]
    b1 = _normalize(a1, eps)
    b2 = _normalize(a2 - jnp.sum(b1 * a2, axis=-1, keepdims=True) * b1, eps)
    b3 = jnp.cross(b1, b2)
    return jnp.stack([b1, b2, b3], axis=-1)


def matrix_to_rot6d(R):
    """[..., 3, 3] -> [..., 6], the inverse of rot6d_to_matrix on rotation matrices."""
    return R[..., :, :2].reshape(R.shape[:-2] + (6,))


def geodesic_angle(R1, R2):
    """Angle in radians of R1^T R2. [..., 3, 3] x2 -> [...]."""
    cos = (jnp.trace(jnp.swapaxes(R1, -1, -2) @ R2, axis1=-2, axis2=-1) - 1.0) / 2.0
    return jnp.arccos(jnp.clip(cos, -1.0, 1.0))


def flip_axis_angle(aa):
    """Mirror rotations in the x = 0 plane (a left-right image flip): (x, y, z) -> (x, -y, -z). [..., 3]."""
    return aa * jnp.asarray([1.0, -1.0, -1.0], dtype=aa.dtype)


def flip_matrix(R):
    """Mirror rotation matrices in the x = 0 plane: M R M with M = diag(-1, 1, 1). [..., 3, 3]."""
    m = jnp.asarray([-1.0, 1.0, 1.0], dtype=R.dtype)
    return R * m[:, None] * m[None, :]


__all__ = [
    "axis_angle_to_matrix", "matrix_to_axis_angle", "matrix_to_quaternion", "quaternion_to_matrix",
    "quaternion_to_axis_angle", "axis_angle_to_quaternion", "rot6d_to_matrix", "matrix_to_rot6d",
    "geodesic_angle", "flip_axis_angle", "flip_matrix",
]
del jax
