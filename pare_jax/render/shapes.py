"""Simple meshes built from formulas, for tests, benchmarks and demos (numpy only).

    grid_mesh(cells_x, cells_y, x_range, y_range, depth) -> vertices [V, 3], faces [F, 3]: a flat triangulated
        grid facing the camera (both diagonals used, so edges run in every direction)
    capsule(start [3], end [3], radius, rings, segments) -> closed genus-0 tube with round caps
    body_like_mesh() -> vertices [6890, 3], faces [13776, 3], vertex_parts [6890] (0..23): ten capsules placed
        like a standing person 1.8 m tall, in camera axes (y down, z away), with SMPL's vertex and face counts
"""
import numpy as np

BODY_VERTICES = 6890
BODY_FACES = 13776


def grid_mesh(cells_x, cells_y, x_range=(-1.0, 1.0), y_range=(-1.0, 1.0), depth=0.0):
    """A flat grid of 2 * cells_x * cells_y triangles in the plane z = depth; the diagonal alternates."""
    xs = np.linspace(*x_range, cells_x + 1)
    ys = np.linspace(*y_range, cells_y + 1)
    gx, gy = np.meshgrid(xs, ys, indexing="xy")
    vertices = np.stack([gx.ravel(), gy.ravel(), np.full(gx.size, depth)], axis=1)
    faces = []
    for row in range(cells_y):
        for col in range(cells_x):
            a, b = row * (cells_x + 1) + col, row * (cells_x + 1) + col + 1
            c, d = a + cells_x + 1, b + cells_x + 1
            faces += [[a, b, d], [a, d, c]] if (row + col) % 2 == 0 else [[a, b, c], [b, d, c]]
    return vertices, np.asarray(faces, np.int32)


def capsule(start, end, radius, rings, segments):
    """Closed tube from start to end with hemispherical caps: rings * segments + 2 vertices, 2 * rings * segments
    faces, rings spaced evenly along the profile so that triangles are about the same size everywhere."""
    start, end = np.asarray(start, np.float64), np.asarray(end, np.float64)
    length = np.linalg.norm(end - start)
    arc = np.pi * radius / 2
    profile = np.linspace(0.0, 2 * arc + length, rings + 2)[1:-1]
    low_angle = np.clip(profile, 0, arc) / radius
    high_angle = np.clip(profile - arc - length, 0, arc) / radius
    ring_radius = np.where(profile < arc, np.sin(low_angle), np.cos(high_angle)) * radius
    height = np.where(profile < arc, -radius * np.cos(low_angle),
                      np.where(profile <= arc + length, profile - arc, length + radius * np.sin(high_angle)))
    phi = 2 * np.pi * np.arange(segments) / segments
    ring = np.stack([np.cos(phi), np.sin(phi)], axis=1)
    local = np.concatenate([
        [[0.0, 0.0, -radius]],
        np.concatenate([ring_radius[:, None, None] * ring[None], np.broadcast_to(height[:, None, None],
                                                                                  (rings, segments, 1))],
                       axis=2).reshape(-1, 3),
        [[0.0, 0.0, length + radius]]])
    faces = _capsule_faces(rings, segments)
    return local @ _frame(end - start).T + start, faces


def _capsule_faces(rings, segments):
    ring = lambda r, s: 1 + r * segments + s % segments  # noqa: E731 (index helper)
    top = rings * segments + 1
    faces = [[0, ring(0, s + 1), ring(0, s)] for s in range(segments)]
    for r in range(rings - 1):
        for s in range(segments):
            faces += [[ring(r, s), ring(r, s + 1), ring(r + 1, s + 1)], [ring(r, s), ring(r + 1, s + 1),
                                                                         ring(r + 1, s)]]
    faces += [[top, ring(rings - 1, s), ring(rings - 1, s + 1)] for s in range(segments)]
    return np.asarray(faces, np.int32)


def _frame(axis):
    """Rotation whose third column is the unit axis."""
    z = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    return np.stack([x, np.cross(z, x), z], axis=1)


# (start, end, radius, part labels from start to end) in metres, camera axes: x right, y down.
_BODY_PARTS = [
    ((0.0, -0.72, 0.0), (0.0, -0.78, 0.0), 0.11, [12, 15]),
    ((0.0, -0.42, 0.0), (0.0, 0.0, 0.0), 0.16, [9, 6, 3, 0]),
    ((0.2, -0.44, 0.0), (0.45, -0.22, 0.0), 0.05, [13, 16]),
    ((-0.2, -0.44, 0.0), (-0.45, -0.22, 0.0), 0.05, [14, 17]),
    ((0.47, -0.2, 0.0), (0.66, 0.05, 0.0), 0.042, [18, 20, 22]),
    ((-0.47, -0.2, 0.0), (-0.66, 0.05, 0.0), 0.042, [19, 21, 23]),
    ((0.1, 0.12, 0.0), (0.13, 0.5, 0.0), 0.08, [1]),
    ((-0.1, 0.12, 0.0), (-0.13, 0.5, 0.0), 0.08, [2]),
    ((0.13, 0.54, 0.0), (0.14, 0.9, 0.02), 0.055, [4, 7, 10]),
    ((-0.13, 0.54, 0.0), (-0.14, 0.9, 0.02), 0.055, [5, 8, 11]),
]


def body_like_mesh():
    """Ten capsules placed like a person (about 1.8 m tall, centred near the origin, y down), with vertex counts
    proportional to surface area and SMPL's totals: 6890 vertices and 13776 faces (ten closed parts have
    2 * 6890 - 40 = 13740 faces; the last 36 repeat faces of the torso, which the z-buffer must resolve too).
    Returns vertices [6890, 3] float32, faces [13776, 3] int32, vertex_parts [6890] int32 in 0..23."""
    shapes = _vertex_split()
    vertices, faces, parts = [], [], []
    for (rings, segments), (a, b, r, labels) in zip(shapes, _BODY_PARTS):
        v, f = capsule(a, b, r, rings, segments)
        along = np.clip((v - np.asarray(a)) @ _frame(np.subtract(b, a))[:, 2] / max(np.linalg.norm(
            np.subtract(b, a)), 1e-9), 0, 0.999)
        faces.append(f + sum(len(x) for x in vertices))
        vertices.append(v)
        parts.append(np.asarray(labels)[(along * len(labels)).astype(int)])
    vertices, faces = np.concatenate(vertices), np.concatenate(faces)
    faces = np.concatenate([faces, faces[len(faces) // 3: len(faces) // 3 + BODY_FACES - len(faces)]])
    return vertices.astype(np.float32), faces.astype(np.int32), np.concatenate(parts).astype(np.int32)


def _vertex_split():
    """(rings, segments) per part: vertices in proportion to surface area, square-ish cells, and exactly
    BODY_VERTICES in all (the torso takes the rounding remainder; the head gives or takes a ring until the
    remainder factors well)."""
    areas = np.array([2 * np.pi * r * np.linalg.norm(np.subtract(b, a)) + 4 * np.pi * r * r
                      for a, b, r, _ in _BODY_PARTS])
    ring_vertices = BODY_VERTICES - 2 * len(_BODY_PARTS)
    shapes = [_rings_segments(n, a, b, r) for n, (a, b, r, _) in
              zip(ring_vertices * areas / areas.sum(), _BODY_PARTS)]
    torso_rings, torso_segments = shapes[1]
    for head_change in (0, 1, -1, 2, -2, 3, -3):
        head = (shapes[0][0] + head_change, shapes[0][1])
        rest = ring_vertices - head[0] * head[1] - sum(r * s for r, s in shapes[2:])
        options = [s for s in range(int(torso_segments * 0.7), int(torso_segments * 1.4) + 1) if rest % s == 0]
        if options:
            segments = min(options, key=lambda s: abs(s - torso_segments))
            return [head, (rest // segments, segments)] + shapes[2:]
    raise AssertionError("no exact vertex split for body_like_mesh; change the part list")


def _rings_segments(vertex_budget, start, end, radius):
    """Rings and segments with about vertex_budget vertices and square-ish triangles."""
    profile = np.pi * radius + np.linalg.norm(np.subtract(end, start))
    ratio = profile / (2 * np.pi * radius)  # rings per segment for square cells
    segments = max(int(round(np.sqrt(vertex_budget / ratio))), 6)
    return max(int(round(vertex_budget / segments)), 2), segments
