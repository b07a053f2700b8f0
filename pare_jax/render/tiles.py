"""Visiting the candidate pixels of every triangle: per-face pixel boxes cut into tiles, in two passes.

Every rasterizing pass here (hard z-buffer, coverage counts, the soft silhouette and its gradient) does the same
kind of work: for each face, test the pixels whose centres lie in its screen-space bounding box. Triangles of a
body mesh at 224 px are a few pixels wide, so instead of testing every pixel against every triangle (~700M tests
per map) each face's box is cut into ceil(w / S) * ceil(h / S) tiles of S x S pixels (S = tile_size, static;
1 for the hard rasterizer, where boxes hold 1-9 pixels) and only those are visited:

1. `aligned_tiles` steps of a fori_loop, step k visiting the k-th tile of every face at once ([F, S * S]
   candidates, face data used in place, no gathers). With S = 1 and 4 steps this covers 90-95% of the faces
   of a body at PARE's scale completely.
2. The tiles left over (big triangles, tiles k >= aligned_tiles) form one flat work list (face f owns slots
   [start_f, start_f + extra_f)); a while loop walks it `chunk_size` slots at a time, gathering each slot's
   face data, so every step has static shapes and a mesh with huge triangles costs more steps, not a different
   program. Correct for any triangle size; fast when few tiles are left over.

Boxes are clipped to the image first, so off-screen parts of triangles cost nothing. Both loops have static
shapes and no Python loop over faces or pixels: jit and vmap apply (under vmap the while loop runs until every
item of the batch is done). Pixel (x, y) has its centre at (x + 0.5, y + 0.5); image row = y.
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


def pixel_boxes(xs, ys, keep, height, width, tile_size, margin=0.0):
    """Pixel boxes of faces. xs, ys: the three corners' screen coordinates (pixels), each a sequence of three [F]
    arrays; keep [F] bool (False: no tiles); margin: pixels added on each side (the soft silhouette's reach).
    Returns PixelBoxes."""
    xs, ys = jax.lax.stop_gradient((tuple(xs), tuple(ys)))
    # Clip in float first so that far-away or near-plane vertices cannot overflow the int conversion.
    bound = max(height, width) + 2.0

    def span(values, size):
        lo = jnp.clip(jnp.minimum(jnp.minimum(values[0], values[1]), values[2]) - margin - 0.5, -2.0, bound)
        hi = jnp.clip(jnp.maximum(jnp.maximum(values[0], values[1]), values[2]) + margin - 0.5, -2.0, bound)
        return jnp.maximum(jnp.ceil(lo).astype(jnp.int32), 0), jnp.minimum(jnp.floor(hi).astype(jnp.int32), size - 1)

    (x0, x1), (y0, y1) = span(xs, width), span(ys, height)
    nonempty = keep & (x1 >= x0) & (y1 >= y0)
    tiles_x = jnp.where(nonempty, (x1 - x0 + tile_size) // tile_size, 0)
    tiles_y = jnp.where(nonempty, (y1 - y0 + tile_size) // tile_size, 0)
    return PixelBoxes(x0, y0, x1, y1, tiles_x, tiles_y)


def fold_tiles(boxes, face_data, tile_size, chunk_size, visit, init, aligned_tiles=4):
    """Fold `visit` over every tile of every box: the aligned pass, then the work list (see the module doc).

    face_data: a pytree of [F, ...] arrays (per-face values the visits need). visit(carry, face [C] int32, data
    (face_data at face, leaves [C, ...]), px [C, N] int32, py [C, N] int32, valid [C, N] bool) -> carry, with
    N = S * S. Invalid candidates (past the box or the list) hold in-range values that must be ignored.
    Reverse-mode differentiation does not pass through the while loop: differentiate the visits instead (see
    soft.py).
    """
    counts = boxes.tiles_x * boxes.tiles_y
    carry = _fold_aligned(boxes, counts, face_data, tile_size, visit, init, aligned_tiles)
    return _fold_work_list(boxes, jnp.maximum(counts - aligned_tiles, 0), face_data, tile_size, chunk_size, visit,
                           carry, aligned_tiles)


def _tile_candidates(boxes, tile, in_list, tile_size):
    """boxes with [C] leaves, tile and in_list [C] -> the tiles' pixels px, py and valid, [C, S * S] each."""
    offsets = jnp.arange(tile_size * tile_size, dtype=jnp.int32)
    tiles_x = jnp.maximum(boxes.tiles_x, 1)
    px = (boxes.x0 + (tile % tiles_x) * tile_size)[:, None] + offsets % tile_size
    py = (boxes.y0 + (tile // tiles_x) * tile_size)[:, None] + offsets // tile_size
    valid = in_list[:, None] & (px <= boxes.x1[:, None]) & (py <= boxes.y1[:, None])
    return px, py, valid


def _fold_aligned(boxes, counts, face_data, tile_size, visit, carry, aligned_tiles):
    every_face = jnp.arange(counts.shape[0], dtype=jnp.int32)

    def step(tile, carry):
        # One tile index per step: an [F, 4 * S * S] visit runs several times slower per candidate on XLA:CPU
        # than four [F, S * S] ones, and a loop compiles the visit once.
        tile = jnp.full_like(every_face, tile)
        return visit(carry, every_face, face_data, *_tile_candidates(boxes, tile, tile < counts, tile_size))

    return jax.lax.fori_loop(0, aligned_tiles, step, carry)


def _fold_work_list(boxes, extra, face_data, tile_size, chunk_size, visit, carry, first_tile):
    """Visit tiles first_tile.. of every face, chunk_size of them per while-loop step. extra [F]: how many."""
    every_face = jnp.arange(extra.shape[0], dtype=jnp.int32)
    starts = jnp.cumsum(extra) - extra
    total = starts[-1] + extra[-1]
    has_extra = extra > 0

    def step(state):
        index, carry = state
        base = index * chunk_size
        slot = base + jnp.arange(chunk_size, dtype=jnp.int32)
        # The face owning each slot: mark where each face's tiles begin, then a running max (face ids grow with
        # their starts); the face whose tiles began before this chunk seeds the first slot.
        owner_before = jnp.max(jnp.where(has_extra & (starts <= base), every_face, 0))
        begins = jnp.where(has_extra & (starts >= base), starts - base, chunk_size)
        marks = jnp.zeros(chunk_size, jnp.int32).at[begins].max(every_face, mode="drop")
        face = jax.lax.cummax(marks.at[0].max(owner_before))
        face_boxes, data, start = gather_rows((boxes, face_data, starts), face)
        candidates = _tile_candidates(face_boxes, slot - start + first_tile, slot < total, tile_size)
        return index + 1, visit(carry, face, data, *candidates)

    def more(state):
        return state[0] * chunk_size < total

    return jax.lax.while_loop(more, step, (jnp.int32(0), carry))[1]


def gather_rows(tree, index):
    """tree_map(lambda a: a[index], tree) for leaves [F, ...]. (Packing the leaves into one table first would
    save gathers but costs more: a concatenation along a minor axis is slow on XLA:CPU.)"""
    return jax.tree.map(lambda leaf: leaf[index], tree)


def default_chunk_size(num_faces):
    """Tiles per loop step: an eighth of the number of faces, rounded up to 256 (a body at 224 px with one-pixel
    tiles has about 0.02-0.1 tiles per face past the first four, so one step)."""
    return int(max(256, -(-num_faces // 2048) * 256))
