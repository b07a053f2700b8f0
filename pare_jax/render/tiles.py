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
    """Fold `visit` over every tile of every box.

    face_data: a pytree of [F, ...] arrays (per-face values the visits need). visit(carry, face [C] int32, data
    (face_data at face, leaves [C, ...]), px [C, N] int32, py [C, N] int32, valid [C, N] bool) -> carry, with
    N a multiple of S * S (S = tile_size). Invalid candidates (past the box or the list) hold in-range values
    that must be ignored. First `aligned_tiles` visits of every face's k-th tile (C = F, in face order, so no
    gathers: with one-pixel tiles, 90-95% of a body's triangles at 224 px have at most 4 pixels in their box),
    then a while loop over the remaining tiles of all faces, chunk_size (C) at a time, gathering their faces'
    data (about 70 ns per tile on a CPU, against 6 ns per candidate for a visit). Reverse-mode differentiation does
    not pass through the loop: differentiate the visits instead (see soft.py).
    """
    num_faces = boxes.x0.shape[0]
    offsets = jnp.arange(tile_size * tile_size, dtype=jnp.int32)
    offset_x, offset_y = offsets % tile_size, offsets // tile_size
    counts = boxes.tiles_x * boxes.tiles_y

    def candidates(boxes, tile, in_list):
        """tile, in_list [C, T] -> px, py, valid [C, T * S * S]."""
        tiles_x = jnp.maximum(boxes.tiles_x, 1)[:, None]
        px = (boxes.x0[:, None] + (tile % tiles_x) * tile_size)[..., None] + offset_x
        py = (boxes.y0[:, None] + (tile // tiles_x) * tile_size)[..., None] + offset_y
        valid = in_list[..., None] & (px <= boxes.x1[:, None, None]) & (py <= boxes.y1[:, None, None])
        return tuple(a.reshape(a.shape[0], -1) for a in (px, py, valid))

    every_face = jnp.arange(num_faces, dtype=jnp.int32)

    def aligned_step(tile, carry):
        # One tile index per step: a [F, 4]-shaped visit runs several times slower per candidate on XLA:CPU,
        # and a loop compiles the visit once.
        tile = jnp.full((num_faces, 1), tile, jnp.int32)
        return visit(carry, every_face, face_data, *candidates(boxes, tile, tile < counts[:, None]))

    carry = jax.lax.fori_loop(0, aligned_tiles, aligned_step, init)
    extra = jnp.maximum(counts - aligned_tiles, 0)
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
        tile = (slot - start + aligned_tiles)[:, None]
        return index + 1, visit(carry, face, data, *candidates(face_boxes, tile, (slot < total)[:, None]))

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
