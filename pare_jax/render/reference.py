"""Brute-force numpy references (float64, every pixel centre against every face) for tests and benchmarks.

They share the conventions of raster.py (pixel centres at +0.5, faces with a vertex at z <= near dropped, both
windings drawn) but none of its code: inside-ness comes from signed distances to the edges, and pixels whose
answer hangs on a tie (a centre within `edge_tol` pixels of an edge of a face that could be in front, or two
faces within `depth_tol` relative depth) are reported as ambiguous instead of guessed.
"""
import numpy as np


def project_reference(vertices, K, R, t):
    """vertices [V, 3] -> (pixels [V, 2], camera z [V]), float64."""
    cam = np.asarray(vertices, np.float64) @ np.asarray(R, np.float64).T + np.asarray(t, np.float64)
    hom = cam @ np.asarray(K, np.float64).T
    return hom[:, :2] / hom[:, 2:3], cam[:, 2]


def _edge_distances(face_xy, centres):
    """Signed distances (pixels, positive on the inner side) of centres [P, 2] to the 3 edges of faces
    [F, 3, 2] -> [P, F, 3]. Degenerate faces get -inf."""
    a = face_xy
    b = np.roll(face_xy, -1, axis=1)
    edge = b - a
    area = edge[:, 0, 0] * (face_xy[:, 2, 1] - a[:, 0, 1]) - edge[:, 0, 1] * (face_xy[:, 2, 0] - a[:, 0, 0])
    length = np.linalg.norm(edge, axis=-1)
    rel = centres[:, None, None, :] - a[None]
    cross = edge[None, ..., 0] * rel[..., 1] - edge[None, ..., 1] * rel[..., 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.sign(area)[None, :, None] * cross / length[None]
    return np.where((area != 0)[None, :, None], dist, -np.inf), cross, area


def rasterize_reference(vertices, faces, K, R, t, height, width, near=1e-2, edge_tol=1e-3, depth_tol=1e-6,
                        rows=None, pixel_chunk=2048):
    """Returns (face_index [H, W] int64 (-1 background), depth [H, W] (0 background), ambiguous [H, W] bool).

    rows: optional list of image rows to compute (others stay background); for timing on big meshes.
    """
    pixels, z = project_reference(vertices, K, R, t)
    faces = np.asarray(faces)
    face_xy, face_z = pixels[faces], z[faces]
    usable = np.all(face_z > near, axis=1)
    rows = np.arange(height) if rows is None else np.asarray(rows)
    ys, xs = np.meshgrid(rows, np.arange(width), indexing="ij")
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)
    face_index = np.full(height * width, -1, np.int64)
    depth = np.zeros(height * width)
    ambiguous = np.zeros(height * width, bool)
    flat = (ys * width + xs).ravel()
    for begin in range(0, len(centres), pixel_chunk):
        chunk = slice(begin, begin + pixel_chunk)
        best, best_depth, unsure = _resolve(face_xy, face_z, usable, centres[chunk], edge_tol, depth_tol)
        face_index[flat[chunk]], depth[flat[chunk]], ambiguous[flat[chunk]] = best, best_depth, unsure
    return face_index.reshape(height, width), depth.reshape(height, width), ambiguous.reshape(height, width)


def _resolve(face_xy, face_z, usable, centres, edge_tol, depth_tol):
    dist, cross, area = _edge_distances(face_xy, centres)
    loose = np.all(dist > -edge_tol, axis=-1) & usable[None]
    strict = np.all(dist > edge_tol, axis=-1) & usable[None]
    with np.errstate(divide="ignore", invalid="ignore"):
        # Screen-space weight of vertex i is the edge function of the edge opposite it, over twice the area.
        weights = np.roll(cross, -1, axis=-1) / area[None, :, None]
        pixel_z = 1.0 / np.sum(weights / face_z[None], axis=-1)
    pixel_z = np.where(loose, pixel_z, np.inf)
    strict_z = np.where(strict, pixel_z, np.inf)
    order = np.argsort(strict_z, axis=1, kind="stable")
    best = order[:, 0]
    rows = np.arange(len(centres))
    best_z = strict_z[rows, best]
    second_z = strict_z[rows, order[:, 1]] if strict_z.shape[1] > 1 else np.full(len(centres), np.inf)
    margin = depth_tol * np.where(np.isfinite(best_z), best_z, 0.0)
    with np.errstate(invalid="ignore"):
        close_second = np.isfinite(best_z) & (second_z - best_z <= margin)
    edge_contender = np.any(loose & ~strict & (pixel_z <= best_z[:, None] + margin[:, None]), axis=1)
    found = np.isfinite(best_z)
    return np.where(found, best, -1), np.where(found, best_z, 0.0), close_second | edge_contender


def soft_silhouette_reference(vertices, faces, K, R, t, height, width, sigma, near=1e-2):
    """SoftRas silhouette 1 - prod_f (1 - sigmoid(+-d^2 / sigma)), d = distance from the pixel centre to face f
    (+ inside, - outside), every face against every pixel, float64. Returns [H, W]."""
    pixels, z = project_reference(vertices, K, R, t)
    faces = np.asarray(faces)
    face_xy = pixels[faces][np.all(z[faces] > near, axis=1)]
    ys, xs = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    centres = np.stack([xs.ravel() + 0.5, ys.ravel() + 0.5], axis=1)
    dist, _, _ = _edge_distances(face_xy, centres)
    inside = np.all(dist > 0, axis=-1)
    a = face_xy[None]
    b = np.roll(face_xy, -1, axis=1)[None]
    p = centres[:, None, None, :]
    along = np.clip(np.sum((p - a) * (b - a), -1) / np.maximum(np.sum((b - a) ** 2, -1), 1e-300), 0.0, 1.0)
    seg_d2 = np.min(np.sum((p - a - along[..., None] * (b - a)) ** 2, -1), axis=-1)
    x = np.where(inside, 1.0, -1.0) * seg_d2 / sigma
    log_outside = np.sum(-np.logaddexp(0.0, x), axis=1)  # log prod (1 - sigmoid(x))
    return (1.0 - np.exp(log_outside)).reshape(height, width)
