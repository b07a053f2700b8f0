"""Work lists of fixed-size pixel tiles that cover the triangles' pixel bounding boxes.

Every rasterizing pass here (hard z-buffer, coverage counts, the soft silhouette and its gradient) visits the same
kind of work: for each face, the pixels whose centres lie in its screen-space bounding box. Triangles of a body
mesh at 224 px are a few pixels wide, so instead of testing every pixel against every triangle each face gets
ceil(w / S) * ceil(h / S) tiles of S x S candidate pixels (S = tile_size, static). The tiles of all faces form one
flat work list (face f owns slots [start_f, end_f)); a `lax.while_loop` walks it `chunk_size` slots at a time, so
every step has static shapes [chunk_size, S * S] and a mesh with a few huge triangles costs more steps, not a
different program. Boxes are clipped to the image first, so off-screen parts of triangles cost nothing.

Pixel (x, y) has its centre at (x + 0.5, y + 0.5) in pixel coordinates; image row = y.
"""
from typing import NamedTuple

import jax
import jax.numpy as jnp


class PixelBoxes(NamedTuple):
    """Per-face inclusive pixel ranges clipped to the image, and the face's tile grid. All [F] int32."""
    x0: jax.Array
    y0: jax.Array
    x1: jax.Array
    y1: jax.Array
    tiles_x: jax.Array
    tiles_y: jax.Array


def pixel_boxes(face_xy, keep, height, width, tile_size, margin=0.0):
    """Pixel boxes of faces. face_xy [F, 3, 2] screen positions (pixels), keep [F] bool (False: no tiles),
    margin: pixels added on each side (the soft silhouette's reach). Returns PixelBoxes."""
    face_xy = jax.lax.stop_gradient(face_xy)
    # Clip in float first so that far-away or near-plane vertices cannot overflow the int conversion.
    lo = jnp.clip(face_xy.min(axis=1) - margin - 0.5, -2.0, max(height, width) + 2.0)
    hi = jnp.clip(face_xy.max(axis=1) + margin - 0.5, -2.0, max(height, width) + 2.0)
    first = jnp.maximum(jnp.ceil(lo).astype(jnp.int32), 0)
    last = jnp.minimum(jnp.floor(hi).astype(jnp.int32), jnp.asarray([width - 1, height - 1], jnp.int32))
    nonempty = keep & jnp.all(last >= first, axis=1)
    tiles = jnp.where(nonempty[:, None], (last - first + tile_size) // tile_size, 0)
    return PixelBoxes(first[:, 0], first[:, 1], last[:, 0], last[:, 1], tiles[:, 0], tiles[:, 1])


def fold_tiles(boxes, face_data, tile_size, chunk_size, visit, init):
    """Fold `visit` over every tile of every box.

    face_data: a pytree of [F] arrays (per-face values the visits need). visit(carry, face [C] int32, data
    (face_data at face, [C] leaves), px [C, S*S] int32, py [C, S*S] int32, valid [C, S*S] bool) -> carry, with
    S = tile_size. Invalid candidates (past the box or the list) hold in-range values that must be ignored.
    First one visit with every face's first tile (C = F; no gathers: body triangles need just that one), then
    a while loop over the remaining tiles of all faces, chunk_size (C) at a time. Reverse-mode differentiation
    does not pass through the loop: differentiate the visits instead (see soft.py).
    """
    num_faces = boxes.x0.shape[0]
    offsets = jnp.arange(tile_size * tile_size, dtype=jnp.int32)
    offset_x, offset_y = offsets % tile_size, offsets // tile_size

    def candidates(boxes, tile, in_list):
        tiles_x = jnp.maximum(boxes.tiles_x, 1)
        px = (boxes.x0 + (tile % tiles_x) * tile_size)[:, None] + offset_x
        py = (boxes.y0 + (tile // tiles_x) * tile_size)[:, None] + offset_y
        valid = in_list[:, None] & (px <= boxes.x1[:, None]) & (py <= boxes.y1[:, None])
        return px, py, valid

    every_face = jnp.arange(num_faces, dtype=jnp.int32)
    first_tile = jnp.zeros_like(every_face)
    carry = visit(init, every_face, face_data, *candidates(boxes, first_tile, boxes.tiles_x > 0))
    extra = jnp.maximum(boxes.tiles_x * boxes.tiles_y - 1, 0)
    ends = jnp.cumsum(extra)
    starts = ends - extra
    total = ends[-1]

    def step(state):
        index, carry = state
        slot = index * chunk_size + jnp.arange(chunk_size, dtype=jnp.int32)
        face = jnp.minimum(jnp.searchsorted(ends, slot, side="right"), num_faces - 1).astype(jnp.int32)
        face_boxes, data, start = gather_rows((boxes, face_data, starts), face)
        return index + 1, visit(carry, face, data, *candidates(face_boxes, slot - start + 1, slot < total))

    def more(state):
        return state[0] * chunk_size < total

    return jax.lax.while_loop(more, step, (jnp.int32(0), carry))[1]


def gather_rows(tree, index):
    """tree_map(lambda a: a[index], tree) for [F] leaves, as one row gather per dtype: XLA compiles each gather
    separately, and a few dozen of them dominate compile time."""
    leaves, treedef = jax.tree.flatten(tree)
    groups = {}
    for position, leaf in enumerate(leaves):
        groups.setdefault(jnp.dtype(leaf.dtype), []).append(position)
    gathered = [None] * len(leaves)
    for positions in groups.values():
        rows = jnp.stack([leaves[p] for p in positions], axis=1)[index]
        for column, p in enumerate(positions):
            gathered[p] = rows[:, column]
    return jax.tree.unflatten(treedef, gathered)


def default_chunk_size(num_faces):
    """Extra tiles per loop step: a quarter of the faces, rounded up to 256."""
    return int(max(256, -(-num_faces // 1024) * 256))
