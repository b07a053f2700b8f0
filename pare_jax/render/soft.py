"""Soft, differentiable silhouette (SoftRas-style aggregation), for silhouette losses.

    mask = soft_silhouette(vertices [V, 3], faces [F, 3], K [3, 3], R [3, 3], t [3], height, width, sigma=1.0)
        -> [H, W] in [0, 1], differentiable w.r.t. vertices (and K, R, t, sigma) with jax.grad / jax.vjp

Per face f and pixel centre p: D_f(p) = sigmoid(s * d^2 / sigma), with d the distance in pixels from p to the
triangle's boundary in the image, s = +1 inside and -1 outside; sigma in pixel^2 sets the blur (SoftRas's
1e-4 in [-1, 1] units is about 1.25 px^2 at 224 px). The mask is 1 - prod_f (1 - D_f), computed as
1 - exp(-sum_f softplus(s d^2 / sigma)) because -log(1 - sigmoid(x)) = softplus(x), which stays exact where the
product underflows. As sigma -> 0 it tends to the hard silhouette (without its tie rule on edges).
Faces with a vertex at z <= near are dropped, as in the hard rasterizer.

Cost: a face only reaches pixels within sqrt(cutoff * sigma) of it (farther terms are below exp(-cutoff) each and
are left out), so every face visits the tiles of its box grown by that margin (see tiles.py): the same work list
as the hard rasterizer, not every pixel against every face. The loop is a while loop, which reverse-mode AD cannot
enter, so the sum is a custom_vjp whose backward pass walks the same tiles again and differentiates each visit.
"""
import functools

import jax
import jax.numpy as jnp

from pare_jax.render import tiles
from pare_jax.render.raster import _check_mesh, project


def soft_silhouette(vertices, faces, K, R, t, height, width, sigma=1.0, near=1e-2, cutoff=16.0, tile_size=8,
                    chunk_size=None):
    """vertices [V, 3] world, faces [F, 3], K/R [3, 3], t [3] -> soft mask [H, W] in [0, 1].
    sigma: blur in pixel^2 (> 0); cutoff: terms below exp(-cutoff) are skipped; tile_size, chunk_size: speed
    only (static). jit it at the call site (height, width, tile_size, chunk_size static)."""
    _check_mesh(vertices, faces)
    if isinstance(sigma, (int, float)) and not sigma > 0:
        raise ValueError(f"sigma must be a positive blur in pixel^2, got {sigma}")
    pixels, depth = project(vertices, K, R, t)
    face_xy = pixels[faces]
    keep = jnp.all(depth[faces] > near, axis=1) & jnp.all(jnp.isfinite(face_xy), axis=(1, 2))
    chunk = chunk_size or tiles.default_chunk_size(faces.shape[0]) * 4
    energy = _coverage_energy(face_xy, jnp.asarray(sigma, face_xy.dtype), keep, jnp.asarray(cutoff, jnp.float32),
                              height, width, tile_size, chunk)
    return 1.0 - jnp.exp(-energy.reshape(height, width))


def _soft_terms(face_xy, sigma, px, py):
    """softplus(s d^2 / sigma) for faces face_xy [C, 3, 2] at pixel centres px, py [C, N] -> [C, N]."""
    cx = px.astype(face_xy.dtype) + 0.5
    cy = py.astype(face_xy.dtype) + 0.5
    a = face_xy[:, None, :, :]  # [C, 1, 3, 2]
    edge = jnp.roll(a, -1, axis=2) - a
    rel_x, rel_y = cx[..., None] - a[..., 0], cy[..., None] - a[..., 1]  # [C, N, 3]
    cross = edge[..., 0] * rel_y - edge[..., 1] * rel_x
    inside = jnp.all(cross > 0, axis=-1) | jnp.all(cross < 0, axis=-1)
    length2 = jnp.sum(edge * edge, axis=-1)
    along = jnp.clip((rel_x * edge[..., 0] + rel_y * edge[..., 1]) / jnp.where(length2 > 0, length2, 1.0), 0, 1)
    dist2 = jnp.min((rel_x - along * edge[..., 0]) ** 2 + (rel_y - along * edge[..., 1]) ** 2, axis=-1)
    return jax.nn.softplus(jnp.where(inside, dist2, -dist2) / sigma)


def _boxes(face_xy, sigma, keep, cutoff, height, width, tile_size):
    margin = jnp.sqrt(cutoff * jax.lax.stop_gradient(sigma))
    xs, ys = ([face_xy[:, i, k] for i in range(3)] for k in range(2))
    return tiles.pixel_boxes(xs, ys, keep, height, width, tile_size, margin=margin)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6, 7))
def _coverage_energy(face_xy, sigma, keep, cutoff, height, width, tile_size, chunk):
    """sum_f softplus(s d^2 / sigma) per pixel: [H * W]."""
    boxes = _boxes(face_xy, sigma, keep, cutoff, height, width, tile_size)

    def visit(energy, face, xy, px, py, valid):
        target = jnp.where(valid, py * width + px, height * width)
        return energy.at[target.reshape(-1)].add(_soft_terms(xy, sigma, px, py).reshape(-1), mode="drop")

    return tiles.fold_tiles(boxes, face_xy, tile_size, chunk, visit, jnp.zeros(height * width, face_xy.dtype))


def _coverage_energy_fwd(face_xy, sigma, keep, cutoff, height, width, tile_size, chunk):
    energy = _coverage_energy(face_xy, sigma, keep, cutoff, height, width, tile_size, chunk)
    return energy, (face_xy, sigma, keep, cutoff)


def _coverage_energy_bwd(height, width, tile_size, chunk, residuals, grad_energy):
    face_xy, sigma, keep, cutoff = residuals
    boxes = _boxes(face_xy, sigma, keep, cutoff, height, width, tile_size)

    def visit(grads, face, xy, px, py, valid):
        grad_xy, grad_sigma = grads
        _, pullback = jax.vjp(lambda xy, sigma: _soft_terms(xy, sigma, px, py), xy, sigma)
        upstream = jnp.where(valid, grad_energy[jnp.clip(py * width + px, 0, height * width - 1)], 0.0)
        d_xy, d_sigma = pullback(upstream)
        return grad_xy.at[face].add(d_xy), grad_sigma + d_sigma

    init = (jnp.zeros_like(face_xy), jnp.zeros_like(sigma))
    grad_xy, grad_sigma = tiles.fold_tiles(boxes, face_xy, tile_size, chunk, visit, init)
    return grad_xy, grad_sigma, None, None


_coverage_energy.defvjp(_coverage_energy_fwd, _coverage_energy_bwd)
