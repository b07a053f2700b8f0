"""Shaded colour renderings of rasterized meshes, and compositing them over images (for overlays and demos).

    rgb, alpha = shade(frags, vertices [V, 3] world, faces [F, 3], R [3, 3], t [3], vertex_colors [V, 3] or
                       face_colors [F, 3], light_dir [3] (camera axes, towards the light))
        -> rgb [H, W, 3] in [0, 1], alpha [H, W] (1 on the mesh)
    out = overlay(image [H, W, 3], rgb, alpha, opacity=1.0) -> [H, W, 3]

Lighting is Lambertian and two-sided: colour * (ambient + diffuse * max(0, n . l)), with the normal turned to
face the camera, so inside-out or open meshes shade like closed ones. Normals are smooth (area-weighted vertex
normals interpolated with the perspective-correct barycentrics) or flat (one per face).
"""
import jax.numpy as jnp

from pare_jax.render.raster import Fragments

DEFAULT_COLOR = (0.65, 0.74, 0.86)


def face_normals(vertices, faces):
    """vertices [V, 3], faces [F, 3] -> unnormalised normals [F, 3] (length = twice the area)."""
    a, b, c = vertices[faces[:, 0]], vertices[faces[:, 1]], vertices[faces[:, 2]]
    return jnp.cross(b - a, c - a)


def vertex_normals(vertices, faces):
    """Area-weighted vertex normals [V, 3], unit length (zero for unused vertices)."""
    per_face = face_normals(vertices, faces)
    summed = jnp.zeros_like(vertices)
    for corner in range(3):
        summed = summed.at[faces[:, corner]].add(per_face)
    return _normalize(summed)


def _normalize(v, axis=-1):
    norm = jnp.linalg.norm(v, axis=axis, keepdims=True)
    return v / jnp.where(norm > 0, norm, 1.0)


def _interpolate(frags, faces, per_vertex):
    """per_vertex [V, C] -> [H, W, C] at the visible surface with the fragments' barycentrics."""
    corners = per_vertex[faces[jnp.maximum(frags.face_index, 0)]]  # [H, W, 3, C]
    return jnp.sum(frags.bary[..., None] * corners, axis=-2)


def shade(frags: Fragments, vertices, faces, R, t, vertex_colors=None, face_colors=None,
          light_dir=(0.0, -0.3, -1.0), ambient=0.35, diffuse=0.65, smooth=True):
    """Lambertian shading of a single rasterized mesh.

    frags: Fragments [H, W] of this mesh; vertices [V, 3] in world axes; R [3, 3], t [3] the camera it was
    rasterized with (lighting happens in camera axes); vertex_colors [V, 3] or face_colors [F, 3] in [0, 1] (default a
    light blue); light_dir [3] towards the light in camera axes (default: from the camera, a little above).
    Returns rgb [H, W, 3] in [0, 1] (0 on the background) and alpha [H, W] (1 where the mesh is visible).
    """
    if vertex_colors is not None and face_colors is not None:
        raise ValueError("pass vertex_colors or face_colors, not both")
    hit = frags.face_index >= 0
    face = jnp.maximum(frags.face_index, 0)
    if smooth:
        normal = _normalize(_interpolate(frags, faces, vertex_normals(vertices, faces) @ R.T))
    else:
        normal = _normalize(face_normals(vertices, faces) @ R.T)[face]
    # Two-sided: turn normals against the view ray (the camera-space position of the surface point).
    view = _interpolate(frags, faces, vertices @ R.T + t)
    normal = jnp.where(jnp.sum(normal * view, axis=-1, keepdims=True) > 0, -normal, normal)
    light = _normalize(jnp.asarray(light_dir, vertices.dtype))
    if vertex_colors is not None:
        color = _interpolate(frags, faces, jnp.asarray(vertex_colors, vertices.dtype))
    elif face_colors is not None:
        color = jnp.asarray(face_colors, vertices.dtype)[face]
    else:
        color = jnp.broadcast_to(jnp.asarray(DEFAULT_COLOR, vertices.dtype), normal.shape)
    lit = color * (ambient + diffuse * jnp.maximum(jnp.sum(normal * light, axis=-1, keepdims=True), 0.0))
    alpha = hit.astype(vertices.dtype)
    return jnp.clip(lit, 0.0, 1.0) * alpha[..., None], alpha


def overlay(image, rgb, alpha, opacity=1.0):
    """Alpha-composite rgb over image: image * (1 - a) + rgb * a with a = opacity * alpha.

    image [..., H, W, 3] float in [0, 1] or uint8 in [0, 255] (the result has the image's dtype and range);
    rgb [..., H, W, 3] in [0, 1]; alpha [..., H, W] in [0, 1]; opacity scalar or broadcastable.
    """
    is_int = jnp.issubdtype(jnp.asarray(image).dtype, jnp.integer)
    base = jnp.asarray(image, jnp.float32) / 255.0 if is_int else jnp.asarray(image)
    a = (jnp.asarray(opacity, base.dtype) * alpha)[..., None]
    out = base * (1.0 - a) + rgb.astype(base.dtype) * a
    return jnp.clip(jnp.round(out * 255.0), 0, 255).astype(image.dtype) if is_int else out
