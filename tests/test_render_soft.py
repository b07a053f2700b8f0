"""Soft silhouette: against the every-face-every-pixel numpy reference, limit sigma -> 0, gradients."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pare_jax import render
from pare_jax.render import reference

H, W = 24, 32
K = np.array([[36.0, 0.0, 16.0], [0.0, 36.0, 12.0], [0.0, 0.0, 1.0]], np.float32)
R = np.eye(3, dtype=np.float32)
T = np.array([0.0, 0.0, 3.0], np.float32)


def small_mesh(seed=0):
    rng = np.random.default_rng(seed)
    vertices = (rng.normal(size=(12, 3)) * 0.7).astype(np.float32)
    faces = np.stack([rng.choice(12, 3, replace=False) for _ in range(10)]).astype(np.int32)
    vertices[11] = [0.1, 0.1, -3.2]  # a face through a vertex behind the near plane is dropped, here too
    return vertices, faces


@jax.jit
def soft(vertices, faces, t, sigma):
    return render.soft_silhouette(vertices, faces, K, R, t, H, W, sigma=sigma, tile_size=4, chunk_size=8)


def test_matches_every_face_every_pixel_reference():
    vertices, faces = small_mesh()
    for sigma in (0.3, 2.0):
        ours = np.asarray(soft(vertices, faces, T, sigma))
        expected = reference.soft_silhouette_reference(vertices, faces, K, R, T, H, W, sigma)
        np.testing.assert_allclose(ours, expected, atol=2e-6)
        assert 0.1 < expected.mean() < 0.9


def test_tends_to_the_hard_silhouette_as_sigma_goes_to_zero():
    vertices, faces = small_mesh()
    face_index, _, near_edge = reference.rasterize_reference(vertices, faces, K, R, T, H, W, edge_tol=0.1)
    hard = (face_index >= 0).astype(np.float32)
    errors = [np.abs(np.asarray(soft(vertices, faces, T, sigma)) - hard)[~near_edge].max()
              for sigma in (1.0, 0.1, 1e-3)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4, errors
    assert near_edge.mean() < 0.15 and hard.mean() > 0.1


@jax.jit
def soft_loss_grad(vertices, faces, t, sigma, weights):
    """Gradient of sum(soft silhouette * weights) w.r.t. vertices and sigma."""
    return jax.grad(lambda v, s: jnp.sum(soft(v, faces, t, s) * weights), argnums=(0, 1))(vertices, sigma)


def test_gradient_matches_finite_differences():
    vertices, faces = small_mesh(1)
    weights = np.random.default_rng(2).normal(size=(H, W)).astype(np.float32)
    grad_v, grad_sigma = soft_loss_grad(vertices, faces, T, 1.0, weights)

    def reference_loss(v, sigma=1.0):  # float64 numpy, every face against every pixel
        return np.sum(reference.soft_silhouette_reference(v, faces, K, R, T, H, W, sigma) * weights)

    eps = 1e-4
    base = vertices.astype(np.float64)
    direction = np.random.default_rng(3).normal(size=vertices.shape)
    numeric = (reference_loss(base + eps * direction) - reference_loss(base - eps * direction)) / (2 * eps)
    np.testing.assert_allclose(float(jnp.sum(grad_v * direction)), numeric, rtol=1e-3)
    for vertex, axis in ((0, 0), (3, 1), (5, 2)):
        step = np.zeros_like(base)
        step[vertex, axis] = eps
        numeric = (reference_loss(base + step) - reference_loss(base - step)) / (2 * eps)
        np.testing.assert_allclose(float(grad_v[vertex, axis]), numeric, rtol=2e-3, atol=1e-3)
    numeric_sigma = (reference_loss(base, 1.0 + eps) - reference_loss(base, 1.0 - eps)) / (2 * eps)
    np.testing.assert_allclose(float(grad_sigma), numeric_sigma, rtol=1e-3)
    assert float(jnp.abs(grad_v).max()) > 1.0


def test_batched_loss_value_and_gradient():
    """A silhouette loss over a vmapped batch (one compile) equals the sum of per-item ones, value and gradient."""
    vertices, faces = small_mesh(1)
    batch = jnp.stack([jnp.asarray(vertices), jnp.asarray(vertices) * 0.8])
    translations = jnp.asarray([[0.0, 0.0, 3.0], [0.1, 0.0, 3.2]])
    weights = jnp.asarray(np.random.default_rng(2).normal(size=(H, W)), jnp.float32)

    @jax.jit
    def batched_loss(b):
        return jnp.sum(jax.vmap(soft, in_axes=(0, None, 0, None))(b, faces, translations, 1.0) * weights)

    value, grads = jax.value_and_grad(batched_loss)(batch)
    expected = sum(jnp.sum(soft(batch[i], faces, translations[i], 1.0) * weights) for i in range(2))
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    for i in range(2):
        single, _ = soft_loss_grad(batch[i], faces, translations[i], 1.0, weights)
        np.testing.assert_allclose(grads[i], single, rtol=1e-5, atol=1e-5)


def test_sigma_must_be_positive():
    vertices, faces = small_mesh()
    with pytest.raises(ValueError, match="sigma must be a positive"):
        render.soft_silhouette(vertices, faces, K, R, T, H, W, sigma=0.0)
