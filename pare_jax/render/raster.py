"""Z-buffered triangle rasterizer for a pinhole camera, in pure JAX (jit, vmap; no OpenGL).

    frags = rasterize(vertices [V, 3], faces [F, 3], K [3, 3], R [3, 3], t [3], height, width)
    frags.face_index [H, W] int32 (-1 = background), frags.depth [H, W] (camera z, 0 = background),
    frags.bary [H, W, 3] perspective-correct barycentrics of faces[face_index] (0 = background)
    face_index = rasterize_face_index(...same arguments...)        # [H, W] only: what part labels need
    rasterize_batch(vertices [B, V, 3], faces, K [3, 3] | [B, 3, 3], R [3, 3] | [B, 3, 3], t [3] | [B, 3], H, W)

Camera: x_cam = R @ x_world + t, pixel = (K @ x_cam)[:2] / z_cam. PARE's label camera is K = [[5000, 0, 112],
[0, 5000, 112], [0, 0, 1]], R = I, t = the body translation, at 224 x 224 (maps.pare_label_camera).
Conventions: pixel (x, y) is the square [x, x + 1) x [y, y + 1), sampled at its centre (x + 0.5, y + 0.5); image
row = y. Both windings are drawn (no back-face culling). Faces with any vertex at z_cam <= near are DROPPED, not
clipped (a body in front of the camera never has any); faces off the image cost nothing (boxes are clipped).

How: every face visits the pixels of its bounding box (tiles.py) and tests their centres against its three edge
functions; a hit is written with one scatter-min of an int32 key, (quantised depth) << face_bits | face, into
a flat [H * W] buffer, so the nearest face wins and exact depth ties go to the lower face index. Depth is
quantised to 31 - bit_length(F) bits over the mesh's own 1/z range (17 bits for SMPL's 13,776 faces: ~4 um at
45 m for a 0.5 m deep body); faces closer than that in depth (interpenetrations) are ordered by face index.
Depth and barycentrics in Fragments are then recomputed exactly at the pixel centre; they are differentiable
with respect to the vertices (visibility is not: see soft.py for a differentiable silhouette).

Fill rule: a centre exactly on an edge belongs to the face for which that edge is a top or left edge (the
Direct3D rule). Both faces of a shared edge evaluate its edge function from the same canonical endpoint (the
lower vertex index) in arithmetic that no compiler fusing can change (_edge_function), so they get bit-identical
values of opposite sign: a centre on or near a shared edge is covered by exactly one of them (no holes, no
double hits; tested on grids through pixel centres). Where several edges meet at a vertex, rounding can still
disagree for a centre within about 1e-6 px of two edges at once (float32, no snapping to a fixed-point grid).
"""
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from pare_jax.render import tiles

BACKGROUND_KEY = 2**31 - 1
MIN_DEPTH_BITS = 12


class Fragments(NamedTuple):
    """face_index [..., H, W] int32 (-1 background), depth [..., H, W] camera z (0 background),
    bary [..., H, W, 3] perspective-correct barycentrics (0 background)."""
    face_index: jax.Array
    depth: jax.Array
    bary: jax.Array


def project(vertices, K, R, t):
    """vertices [V, 3] world -> (pixels [V, 2], depth [V]) with camera z = (R @ x + t)_z."""
    cam = _affine(vertices, R, t)
    homogeneous = _affine(cam, K, jnp.zeros(3, cam.dtype))
    safe_w = jnp.where(jnp.abs(homogeneous[:, 2]) > 0, homogeneous[:, 2], 1.0)
    return homogeneous[:, :2] / safe_w[:, None], cam[:, 2]


def _affine(points, matrix, offset):
    # Written out: a [V, 3] x [3, 3] dot is several times slower than this on CPU under vmap.
    return jnp.stack([points[:, 0] * matrix[i, 0] + points[:, 1] * matrix[i, 1] + points[:, 2] * matrix[i, 2]
                      + offset[i] for i in range(3)], axis=1)


def face_bits(num_faces):
    """Low key bits holding the face index; the remaining 31 - face_bits hold depth."""
    bits = max(int(num_faces).bit_length(), 1)
    if 31 - bits < MIN_DEPTH_BITS:
        raise ValueError(f"a mesh with {num_faces} faces leaves fewer than {MIN_DEPTH_BITS} depth bits in the "
                         "32-bit z-buffer key; split the mesh into parts of at most 2**19 faces")
    return bits


def materialize(tree):
    """Identity that makes XLA compute these values once, here, and store them.

    XLA:CPU fuses cheap producers into every consumer, so per-face values read by several visits were recomputed
    in each (a chain of 10 such values on 13,776 faces: 3.4 ms instead of 0.27), and it drops
    optimization_barrier before fusion. Outputs of a conditional are stored, so the values go through one whose
    predicate is always true at run time (x == x or x is NaN) but not provably so at compile time; the other
    branch is never taken. Under vmap the conditional becomes a select: still the identity.
    """
    probe = jax.tree.leaves(tree)[0].reshape(-1)[:1].astype(jnp.float32)
    always = jnp.all((probe == probe) | jnp.isnan(probe))
    return jax.lax.cond(always, lambda t: t, lambda t: jax.tree.map(jnp.zeros_like, t), tree)


class FaceTable(NamedTuple):
    """Per-face data for the candidate tests, each field a tuple of three [F] float32 arrays, one per edge (edge i
    runs from vertex i to vertex i + 1). start_*, dir_*: the edge's canonical start and direction, from the
    endpoint with the lower vertex index, so that both faces of a shared edge compute bit-identical edge
    functions; rule: +-1 turns the canonical edge function into the face's (positive inside), and +-2 also says
    that the edge is top-left (owns centres exactly on it). Columns rather than [F, 3] arrays: shuffles along a
    size-3 minor axis are slow on XLA:CPU."""
    start_x: tuple
    start_y: tuple
    dir_x: tuple
    dir_y: tuple
    rule: tuple


def face_table(pixels, depth, faces, near):
    """pixels [V, 2], depth [V], faces [F, 3] -> (FaceTable, keep [F] bool, (xs, ys, zs)), where xs, ys, zs are
    the corners' screen x, y and camera z, three [F] arrays each. keep is False for faces dropped: a vertex at
    z <= near, zero area, or non-finite positions. Works in float32 whatever the input (the edge functions'
    exactness argument needs it)."""
    idx = [faces[:, i] for i in range(3)]
    xs, ys, zs = ([column.astype(jnp.float32)[i] for i in idx] for column in (pixels[:, 0], pixels[:, 1], depth))
    fields = {name: [] for name in ("start_x", "start_y", "dir_x", "dir_y", "sign")}
    for i in range(3):
        j = (i + 1) % 3
        forward = idx[i] < idx[j]
        fields["start_x"].append(jnp.where(forward, xs[i], xs[j]))
        fields["start_y"].append(jnp.where(forward, ys[i], ys[j]))
        fields["dir_x"].append(jnp.where(forward, xs[j] - xs[i], xs[i] - xs[j]))
        fields["dir_y"].append(jnp.where(forward, ys[j] - ys[i], ys[i] - ys[j]))
        fields["sign"].append(jnp.where(forward, 1.0, -1.0).astype(jnp.float32))
    # The face's orientation: the sign of edge 0's function at vertex 2, in the same arithmetic as the tests.
    orient = materialize(jnp.sign(fields["sign"][0] * _edge_function(
        fields["start_x"][0], fields["start_y"][0], fields["dir_x"][0], fields["dir_y"][0], xs[2], ys[2])))
    finite = jnp.isfinite(xs[0] + xs[1] + xs[2] + ys[0] + ys[1] + ys[2])
    keep = (zs[0] > near) & (zs[1] > near) & (zs[2] > near) & (orient != 0) & finite
    rule = []
    for dx, dy, sign in zip(fields["dir_x"], fields["dir_y"], fields["sign"]):
        inward = sign * orient
        top_left = (dy * inward < 0) | ((dy == 0) & (dx * inward > 0))
        rule.append(jnp.where(top_left, 2.0 * inward, inward))
    table = FaceTable(*(tuple(fields[name]) for name in ("start_x", "start_y", "dir_x", "dir_y")), tuple(rule))
    return materialize((table, keep)) + ((tuple(xs), tuple(ys), tuple(zs)),)


def _split(x):
    """float32 x -> (hi, lo), x = hi + lo exactly, each with at most 12 significant bits (so that a product of
    two halves is exact in float32). Bit masking, so no compiler contraction can change it."""
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32) & jnp.uint32(0xFFFFF000)
    hi = jax.lax.bitcast_convert_type(bits, jnp.float32)
    return hi, x - hi


def _edge_function(start_x, start_y, dir_x, dir_y, x, y):
    """dir_x (y - start_y) - dir_y (x - start_x), evaluated so that the float32 result depends only on the inputs,
    never on whether the compiler fuses multiply-adds (FMA) in this kernel or that one: every product is of two
    12-bit halves (_split), hence exact, so a fused or unfused multiply-add rounds the same exact value once, and
    the order of the sums is fixed. Two faces sharing an edge (evaluated in different loops) thus agree to the
    bit, which the fill rule's exactly-once coverage relies on."""
    dir_x_hi, dir_x_lo = _split(dir_x)
    dir_y_hi, dir_y_lo = _split(dir_y)
    rel_y_hi, rel_y_lo = _split(y - start_y)
    rel_x_hi, rel_x_lo = _split(x - start_x)
    return (((dir_x_hi * rel_y_hi - dir_y_hi * rel_x_hi) + (dir_x_hi * rel_y_lo - dir_y_hi * rel_x_lo))
            + ((dir_x_lo * rel_y_hi - dir_y_lo * rel_x_hi) + (dir_x_lo * rel_y_lo - dir_y_lo * rel_x_lo)))


def candidate_hits(table, px, py):
    """Inside test at pixel centres. table: FaceTable with [C] leaves, px/py [C, N] int32.
    Returns (inside [C, N] bool, weights: three [C, N] unnormalised screen-space weights of vertices 0, 1, 2)."""
    cx = px.astype(jnp.float32) + 0.5
    cy = py.astype(jnp.float32) + 0.5
    inside, edges = True, []
    for i in range(3):
        sx, sy, dx, dy, rule = (field[i][:, None] for field in table)
        canonical = _edge_function(sx, sy, dx, dy, cx, cy)
        edge = jnp.where(rule > 0, canonical, -canonical)
        inside = inside & ((edge > 0) | ((edge == 0) & (jnp.abs(rule) > 1.5)))
        edges.append(edge)
    # Vertex i's weight is the edge function of the edge opposite it (edge i + 1).
    return inside, (edges[1], edges[2], edges[0])


def _depth_keys(corners, keep, bits):
    """Per face and vertex, the z-buffer key value in [0, 2**(31 - bits) - 1] (nearer = smaller; affine in screen
    space because 1/z is), divided by the face's doubled screen area so that a candidate's value is its edge
    weights' dot product with these, without a division per candidate. corners: (xs, ys, zs) as from face_table.
    Returns (three [F] arrays, number of levels)."""
    xs, ys, zs = corners
    inv_z = [1.0 / jnp.where(keep, z, 1.0) for z in zs]
    levels = 2.0 ** (31 - bits) - 1.0
    far_inv = jnp.min(jnp.where(keep, jnp.minimum(jnp.minimum(inv_z[0], inv_z[1]), inv_z[2]), jnp.inf))
    near_inv = jnp.max(jnp.where(keep, jnp.maximum(jnp.maximum(inv_z[0], inv_z[1]), inv_z[2]), -jnp.inf))
    scale = levels / jnp.maximum(near_inv - far_inv, 1e-30)
    area2 = jnp.abs((xs[1] - xs[0]) * (ys[2] - ys[0]) - (ys[1] - ys[0]) * (xs[2] - xs[0]))
    per_area = scale / jnp.where(keep & (area2 > 0), area2, 1.0)
    return tuple(jnp.where(keep, (near_inv - value) * per_area, 0.0) for value in inv_z), levels


@functools.partial(jax.jit, static_argnames=("height", "width", "tile_size", "chunk_size"))
def rasterize_face_index(vertices, faces, K, R, t, height, width, near=1e-2, tile_size=1, chunk_size=None):
    """The visible face per pixel only (what part labels and silhouettes need): [H, W] int32, -1 background.
    Arguments as rasterize."""
    check_mesh(vertices, faces)
    pixels, depth = project(vertices, K, R, t)
    return _face_index(*jax.lax.stop_gradient((pixels, depth)), faces, height, width, near, tile_size,
                       chunk_size)


def _face_index(pixels, depth, faces, height, width, near, tile_size, chunk_size):
    bits = face_bits(faces.shape[0])
    table, keep, corners = face_table(pixels, depth, faces, near)
    key_values, levels = _depth_keys(corners, keep, bits)
    key_values, boxes = materialize((key_values, tiles.pixel_boxes(*corners[:2], keep, height, width, tile_size)))

    def visit(keys, face, data, px, py, valid):
        table, key_values = data
        inside, weights = candidate_hits(table, px, py)
        value = sum(w * k[:, None] for w, k in zip(weights, key_values))
        quantised = jnp.clip(jnp.floor(value), 0.0, levels).astype(jnp.int32)
        key = (quantised << bits) | face[:, None]
        target = jnp.where(valid & inside, py * width + px, height * width)
        return keys.at[target.reshape(-1)].min(key.reshape(-1), mode="drop")

    init = jnp.full((height * width,), BACKGROUND_KEY, jnp.int32)
    chunk = chunk_size or tiles.default_chunk_size(faces.shape[0])
    keys = tiles.fold_tiles(boxes, (table, key_values), tile_size, chunk, visit, init)
    return jnp.where(keys < BACKGROUND_KEY, keys & ((1 << bits) - 1), -1).reshape(height, width)


@functools.partial(jax.jit, static_argnames=("height", "width", "tile_size", "chunk_size"))
def rasterize(vertices, faces, K, R, t, height, width, near=1e-2, tile_size=1, chunk_size=None):
    """vertices [V, 3] world, faces [F, 3] int, K/R [3, 3], t [3], near (world units) -> Fragments [H, W].

    tile_size: pixels per tile side (static); chunk_size: left-over tiles per loop step (static; default an
    eighth of the number of faces). Both only change speed (tiles.py).
    """
    check_mesh(vertices, faces)
    pixels, depth = project(vertices, K, R, t)
    face_index = _face_index(*jax.lax.stop_gradient((pixels, depth)), faces, height, width, near, tile_size,
                             chunk_size)
    return _fragments(face_index, pixels, depth, faces)


def _fragments(face_index, pixels, depth, faces):
    """Exact, differentiable depth and barycentrics at the pixel centres of the visible faces."""
    height, width = face_index.shape
    hit = face_index >= 0
    face = jnp.where(hit, face_index, 0)
    corner = [faces[:, i][face] for i in range(3)]
    xs, ys = [pixels[:, 0][c] for c in corner], [pixels[:, 1][c] for c in corner]
    inv_z = [1.0 / jnp.where(hit, depth[c], 1.0) for c in corner]
    cx = jnp.arange(width, dtype=pixels.dtype)[None, :] + 0.5
    cy = jnp.arange(height, dtype=pixels.dtype)[:, None] + 0.5
    edges = [(xs[(i + 1) % 3] - xs[i]) * (cy - ys[i]) - (ys[(i + 1) % 3] - ys[i]) * (cx - xs[i])
             for i in range(3)]
    area = edges[0] + edges[1] + edges[2]
    area = jnp.where(area == 0, 1.0, area)
    perspective = [edges[(i + 1) % 3] / area * inv_z[i] for i in range(3)]
    total = perspective[0] + perspective[1] + perspective[2]
    safe_total = jnp.where(hit & (total != 0), total, 1.0)
    bary = jnp.where(hit[..., None], jnp.stack(perspective, axis=-1) / safe_total[..., None], 0.0)
    return Fragments(face_index, jnp.where(hit, 1.0 / safe_total, 0.0), bary)


@functools.partial(jax.jit, static_argnames=("height", "width", "tile_size", "chunk_size"))
def coverage_count(vertices, faces, K, R, t, height, width, near=1e-2, tile_size=1, chunk_size=None):
    """How many faces cover each pixel centre under the fill rule, ignoring depth: [H, W] int32.
    A closed mesh seen from outside covers its silhouette an even number of times; a flat grid exactly once."""
    check_mesh(vertices, faces)
    pixels, depth = project(vertices, K, R, t)
    table, keep, corners = face_table(pixels, depth, faces, near)
    boxes = tiles.pixel_boxes(*corners[:2], keep, height, width, tile_size)

    def visit(counts, face, table, px, py, valid):
        inside, _ = candidate_hits(table, px, py)
        target = jnp.where(valid & inside, py * width + px, height * width)
        return counts.at[target.reshape(-1)].add(1, mode="drop")

    counts = tiles.fold_tiles(boxes, table, tile_size, chunk_size or tiles.default_chunk_size(faces.shape[0]),
                              visit, jnp.zeros((height * width,), jnp.int32))
    return counts.reshape(height, width)


@functools.partial(jax.jit, static_argnames=("height", "width", "tile_size", "chunk_size", "face_index_only",
                                             "batch_chunk"))
def rasterize_batch(vertices, faces, K, R, t, height, width, near=1e-2, tile_size=1, chunk_size=None,
                    face_index_only=False, batch_chunk=None):
    """rasterize (or rasterize_face_index) over B meshes. vertices [B, V, 3]; K, R [3, 3] shared or [B, 3, 3];
    t [3] or [B, 3]. Returns Fragments with a leading [B] (or face_index [B, H, W]).

    batch_chunk: maps rendered together by vmap; lax.map walks the chunks. Default: all of them on an
    accelerator; one on the CPU, where a single map's working set stays in cache and vmapped gathers and
    scatters are 2-3x slower per map than one map at a time.
    """
    if jnp.ndim(vertices) != 3:
        raise ValueError(f"rasterize_batch needs vertices [B, V, 3], got shape {jnp.shape(vertices)}; "
                         "use rasterize for one mesh")
    batch = vertices.shape[0]
    K, R, t = (jnp.broadcast_to(x, (batch,) + jnp.shape(x)[-shape:]) for x, shape in ((K, 2), (R, 2), (t, 1)))
    one = functools.partial(rasterize_face_index if face_index_only else rasterize, faces=faces, height=height,
                            width=width, near=near, tile_size=tile_size, chunk_size=chunk_size)
    if batch_chunk is None:
        batch_chunk = 1 if jax.default_backend() == "cpu" else batch
    return jax.lax.map(lambda item: one(item[0], K=item[1], R=item[2], t=item[3]), (vertices, K, R, t),
                       batch_size=batch_chunk)


def check_mesh(vertices, faces):
    """Raise a ValueError naming the problem unless vertices is [V, 3] and faces a non-empty int [F, 3]."""
    if vertices.ndim != 2 or vertices.shape[-1] != 3:
        raise ValueError(f"vertices must be [V, 3], got {vertices.shape}; batch with rasterize_batch / jax.vmap")
    if faces.ndim != 2 or faces.shape[-1] != 3 or not jnp.issubdtype(faces.dtype, jnp.integer):
        raise ValueError(f"faces must be an integer array [F, 3], got {faces.dtype} {faces.shape}")
    if faces.shape[0] == 0:
        raise ValueError("faces is empty: there is nothing to rasterize")
