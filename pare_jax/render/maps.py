"""Per-pixel maps from rasterized fragments: PARE's part labels, silhouettes, depth.

    labels = part_labels(face_index [..., H, W], faces [F, 3], vertex_parts [V]) -> [..., H, W] int32
    mask = silhouette(frags or face_index) -> [..., H, W] float (1 = body)
    depth = depth_map(frags, background=0.0) -> [..., H, W]
    labels = render_part_labels_batch(vertices [B, V, 3], faces, vertex_parts, translation [B, 3])
        -> [B, 224, 224] int32 with PARE's label camera (focal 5000, centre 112, R = I)

Part labels follow PARE: vertex labels are 0..23 (the 24 SMPL joints), a face takes the MINIMUM label of its
three vertices, and the map holds 0 for background and face label + 1 (1..24) on the body.
"""
import functools

import jax
import jax.numpy as jnp

from pare_jax.render.raster import Fragments, rasterize_batch, rasterize_face_index

PARE_FOCAL_LENGTH = 5000.0
PARE_CROP_SIZE = 224
NUM_PARTS = 24


def pare_label_camera(focal_length=PARE_FOCAL_LENGTH, crop_size=PARE_CROP_SIZE):
    """K [3, 3] of PARE's part-label renderer: principal point at the crop centre."""
    centre = crop_size / 2.0
    return jnp.asarray([[focal_length, 0.0, centre], [0.0, focal_length, centre], [0.0, 0.0, 1.0]], jnp.float32)


def face_part_labels(faces, vertex_parts):
    """faces [F, 3], vertex_parts [V] int (0..23) -> [F] int32: the minimum vertex label of each face."""
    return jnp.min(jnp.asarray(vertex_parts, jnp.int32)[faces], axis=1)


def _face_index(frags_or_index):
    return frags_or_index.face_index if isinstance(frags_or_index, Fragments) else frags_or_index


def part_labels(frags_or_index, faces, vertex_parts):
    """Fragments or face_index [..., H, W] -> part label map [..., H, W] int32: 0 background, 1..24 parts."""
    face_index = _face_index(frags_or_index)
    labels = face_part_labels(faces, vertex_parts) + 1
    return jnp.where(face_index >= 0, labels[jnp.maximum(face_index, 0)], 0)


def silhouette(frags_or_index, dtype=jnp.float32):
    """Fragments or face_index [..., H, W] -> [..., H, W] in {0, 1}: 1 where any face is visible."""
    return (_face_index(frags_or_index) >= 0).astype(dtype)


def depth_map(frags, background=0.0):
    """Fragments -> camera-space z of the visible surface [..., H, W], `background` elsewhere."""
    return jnp.where(frags.face_index >= 0, frags.depth, background)


def render_part_labels(vertices, faces, vertex_parts, translation, K=None, R=None, height=PARE_CROP_SIZE,
                       width=PARE_CROP_SIZE, **raster_options):
    """One mesh: vertices [V, 3] (body frame), translation [3] -> part labels [H, W] int32.
    K defaults to PARE's label camera, R to the identity; raster_options go to rasterize_face_index."""
    K = pare_label_camera() if K is None else K
    R = jnp.eye(3, dtype=vertices.dtype) if R is None else R
    face_index = rasterize_face_index(vertices, faces, K, R, translation, height, width, **raster_options)
    return part_labels(face_index, faces, vertex_parts)


@functools.partial(jax.jit, static_argnames=("height", "width", "tile_size", "chunk_size", "batch_chunk"))
def render_part_labels_batch(vertices, faces, vertex_parts, translation, K=None, R=None, height=PARE_CROP_SIZE,
                             width=PARE_CROP_SIZE, near=1e-2, tile_size=1, chunk_size=None, batch_chunk=None):
    """vertices [B, V, 3], translation [B, 3] (PARE: the ground-truth camera translation), K [3, 3] or
    [B, 3, 3] (default PARE's), R [3, 3] or [B, 3, 3] (default I) -> part labels [B, H, W] int32.
    See rasterize_batch for batch_chunk."""
    K = pare_label_camera() if K is None else K
    R = jnp.eye(3, dtype=vertices.dtype) if R is None else R
    face_index = rasterize_batch(vertices, faces, K, R, translation, height, width, near=near,
                                 tile_size=tile_size, chunk_size=chunk_size, face_index_only=True,
                                 batch_chunk=batch_chunk)
    return part_labels(face_index, faces, vertex_parts)
