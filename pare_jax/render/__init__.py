"""Rasterizer in pure JAX (no OpenGL): part labels, silhouettes, depth, shaded overlays, soft silhouettes.

    from pare_jax import render
    frags = render.rasterize(vertices [V, 3], faces [F, 3], K [3, 3], R [3, 3], t [3], height, width)
    labels = render.part_labels(frags, faces, vertex_parts)            # [H, W] int32, 0 = background, 1..24
    labels = render.render_part_labels_batch(vertices [B, V, 3], faces, vertex_parts, translation [B, 3])
    mask = render.silhouette(frags); depth = render.depth_map(frags)
    rgb, alpha = render.shade(frags, vertices, faces, R, t); out = render.overlay(image, rgb, alpha, 0.8)
    soft = render.soft_silhouette(vertices, faces, K, R, t, height, width, sigma=1.0)   # differentiable

Modules: raster (projection, z-buffer, fragments), tiles (the per-face tile work list every pass walks), maps
(labels, silhouettes, depth), shading (Lambertian colour, compositing), soft (SoftRas silhouette with a
custom VJP), reference (numpy brute force for tests and benchmarks), shapes (formula meshes). jax/numpy only.
"""
from pare_jax.render.maps import (NUM_PARTS, depth_map, face_part_labels, pare_label_camera, part_labels,
                                  render_part_labels, render_part_labels_batch, silhouette)
from pare_jax.render.raster import (Fragments, coverage_count, project, rasterize, rasterize_batch,
                                    rasterize_face_index)
from pare_jax.render.shading import face_normals, overlay, shade, vertex_normals
from pare_jax.render.soft import soft_silhouette

__all__ = ["Fragments", "NUM_PARTS", "coverage_count", "depth_map", "face_normals", "face_part_labels",
           "overlay", "pare_label_camera", "part_labels", "project", "rasterize", "rasterize_batch",
           "rasterize_face_index", "render_part_labels", "render_part_labels_batch", "shade", "silhouette",
           "soft_silhouette", "vertex_normals"]
