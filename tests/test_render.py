"""Hard rasterizer against the numpy brute force; fill rule; maps; shading and compositing; batching."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pare_jax import render
from pare_jax.render import reference, shapes

H, W = 40, 48
K = np.array([[50.0, 0.0, 24.0], [0.0, 50.0, 20.0], [0.0, 0.0, 1.0]], np.float32)
R = np.eye(3, dtype=np.float32)
T = np.array([0.0, 0.0, 3.0], np.float32)


def padded(vertices, faces, num_vertices=48, num_faces=64):
    """Pad to common sizes with unused vertices and zero-area faces (dropped), so that tests share compilations."""
    vertices = np.concatenate([vertices, np.zeros((num_vertices - len(vertices), 3), vertices.dtype)])
    return vertices.astype(np.float32), np.concatenate([faces, np.zeros((num_faces - len(faces), 3), faces.dtype)])


def random_mesh(seed, num_vertices=30, num_faces=50, spread=0.8):
    """Random vertices and distinct random triangles (no repeated vertex sets, which would tie in depth),
    padded to 48 vertices and 64 faces."""
    rng = np.random.default_rng(seed)
    vertices = (rng.normal(size=(num_vertices, 3)) * spread).astype(np.float32)
    faces = {}
    while len(faces) < num_faces:
        face = rng.choice(num_vertices, size=3, replace=False)
        faces.setdefault(tuple(sorted(face)), face)
    return padded(vertices, np.asarray(list(faces.values()), np.int32))


def rasterize(vertices, faces, K=K, R=R, t=T, near=1e-2, tile_size=1, chunk_size=None, function=render.rasterize):
    """Every call passes the same argument structure: jit compiles again for a keyword given one way or another."""
    return function(jnp.asarray(vertices, jnp.float32), jnp.asarray(faces, jnp.int32), jnp.asarray(K),
                    jnp.asarray(R), jnp.asarray(t), H, W, near=near, tile_size=tile_size, chunk_size=chunk_size)


def check_against_reference(vertices, faces, **options):
    frags = rasterize(vertices, faces, **options)
    ours = np.asarray(frags.face_index)
    expected, depth, ambiguous = reference.rasterize_reference(vertices, faces, K, R, T, H, W)
    mismatch = (ours != expected) & ~ambiguous
    assert not mismatch.any(), f"{mismatch.sum()} pixels differ, e.g. at {np.argwhere(mismatch)[:5].tolist()}"
    same = (ours == expected) & (expected >= 0)
    np.testing.assert_allclose(np.asarray(frags.depth)[same], depth[same], rtol=1e-5)
    assert ambiguous.mean() < 0.01, "the comparison must not be vacuous"
    return ours, expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_meshes_match_brute_force(seed):
    ours, expected = check_against_reference(*random_mesh(seed))
    assert (expected >= 0).mean() > 0.3


@pytest.mark.parametrize("tile_size,chunk_size", [(1, None), (2, 3)])
def test_big_offscreen_and_behind_camera_faces(tile_size, chunk_size):
    """Huge triangles (many tiles each: many loop steps with a small chunk), faces crossing the image border,
    faces behind the camera and straddling the near plane (both dropped)."""
    vertices, faces = random_mesh(7, num_vertices=30, num_faces=40, spread=1.0)
    vertices[30:42] = [[-9.0, -9.0, 1.0], [9.0, -7.0, 4.0], [0.0, 9.0, 2.0],  # larger than the image
                       [1.0, 0.2, 0.0], [5.0, 1.0, 0.5], [1.5, 3.0, 0.2],  # crosses the right/bottom border
                       [0.0, 0.0, -4.0], [1.0, 0.0, -4.0], [0.0, 1.0, -4.0],  # behind the camera
                       [-0.5, -0.5, -3.5], [0.5, -0.3, 1.0], [0.0, 0.5, 1.0]]  # straddles the near plane
    faces[40:44] = 30 + np.arange(12).reshape(4, 3)
    ours, _ = check_against_reference(vertices, faces, tile_size=tile_size, chunk_size=chunk_size)
    assert not np.isin([42, 43], ours).any(), "faces behind the near plane must be dropped"
    assert np.isin([40, 41], ours).all()


def pixel_space_camera():
    """K = I, R = I, t = 0: a vertex (u, v, 1) lands exactly on pixel coordinates (u, v)."""
    return np.eye(3, dtype=np.float32), np.eye(3, dtype=np.float32), np.zeros(3, np.float32)


@pytest.mark.parametrize("jitter", [0.0, 1e-3, 0.3])
def test_grid_has_no_holes_and_no_double_hits(jitter):
    """A 12 x 10 grid of 3-pixel cells whose vertices sit on pixel centres, so that edges and vertices pass
    exactly through centres (jitter 0), nearly through them (1e-3 px), or anywhere near (0.3 px): every centre
    inside is covered exactly once. Cells span 16 pixels, so most faces also go through the gather loop."""
    vertices, faces = padded(*shapes.grid_mesh(12, 10, x_range=(4.5, 40.5), y_range=(5.5, 35.5), depth=1.0),
                             num_vertices=256, num_faces=512)
    rng = np.random.default_rng(3)
    inner = (vertices[:, 0] > 5) & (vertices[:, 0] < 40) & (vertices[:, 1] > 6) & (vertices[:, 1] < 35)
    vertices[inner, :2] += jitter * rng.uniform(-1, 1, size=(inner.sum(), 2))
    counts = np.asarray(rasterize(vertices, faces, *pixel_space_camera(), near=0.5, function=render.coverage_count))
    centre_x, centre_y = np.arange(W) + 0.5, np.arange(H) + 0.5
    # Top-left rule on the outer border: the left and top edges are in, the right and bottom edges are out.
    expected = ((centre_y >= 5.5) & (centre_y < 35.5))[:, None] & ((centre_x >= 4.5) & (centre_x < 40.5))[None]
    np.testing.assert_array_equal(counts, expected.astype(np.int32))


def test_fan_around_a_pixel_centre_covers_it_once():
    """Twelve triangles of irregular angles around a vertex on a pixel centre, and the same fan seen from behind
    (reversed winding): each centre of the polygon is covered once, the shared vertex included."""
    angles = np.sort(np.random.default_rng(5).uniform(0, 2 * np.pi, 12))
    rim = np.stack([20.5 + 14 * np.cos(angles), 18.5 + 14 * np.sin(angles), np.ones(12)], axis=1)
    vertices = np.concatenate([[[20.5, 18.5, 1.0]], rim])
    faces = np.array([[0, 1 + i, 1 + (i + 1) % 12] for i in range(12)], np.int32)
    for winding in (faces, faces[:, ::-1]):
        counts = np.asarray(rasterize(*padded(vertices, winding, num_vertices=256, num_faces=512),
                                      *pixel_space_camera(), near=0.5, function=render.coverage_count))
        assert counts[18, 20] == 1 and counts.max() == 1
        inner = reference.rasterize_reference(vertices, winding, *pixel_space_camera(), H, W, near=0.5)
        covered, _, ambiguous = inner
        np.testing.assert_array_equal((counts == 1)[~ambiguous], (covered >= 0)[~ambiguous])


def test_closed_mesh_covers_silhouette_twice():
    vertices, faces = padded(*shapes.capsule((-0.6, -0.3, 0.0), (0.7, 0.4, 0.2), 0.35, rings=14, segments=16),
                             num_vertices=256, num_faces=512)
    vertices[226:] = vertices[0]
    counts = np.asarray(rasterize(vertices, faces, function=render.coverage_count))
    assert set(np.unique(counts)) == {0, 2}


def test_part_labels_take_the_minimum_vertex_label():
    vertices, faces = padded(np.array([[0.0, 0.0, 1.0], [30.0, 0.0, 1.0], [0.0, 30.0, 1.0], [30.0, 30.0, 1.0]]),
                             np.array([[0, 1, 2], [1, 3, 2]], np.int32))
    vertex_parts = np.full(48, 23, np.int32)
    vertex_parts[:4] = [5, 3, 7, 0]
    frags = rasterize(vertices, faces, *pixel_space_camera(), near=0.5)
    labels = np.asarray(render.part_labels(frags, faces, vertex_parts))
    face_index = np.asarray(frags.face_index)
    np.testing.assert_array_equal(labels, np.select([face_index == 0, face_index == 1], [4, 1], 0))
    assert (labels == 4).sum() > 100 and (labels == 1).sum() > 100 and (labels == 0).sum() > 100


def test_silhouette_and_depth_of_a_tilted_plane():
    """Plane through (0, 0, 3) with normal (0.3, -0.2, 1): depth equals the ray-plane intersection."""
    vertices, faces = padded(*shapes.grid_mesh(4, 4, x_range=(-0.8, 0.8), y_range=(-0.7, 0.7)))
    vertices[:, 2] = -(0.3 * vertices[:, 0] - 0.2 * vertices[:, 1])
    frags = rasterize(vertices, faces)
    hit = np.asarray(frags.face_index) >= 0
    np.testing.assert_array_equal(np.asarray(render.silhouette(frags)), hit.astype(np.float32))
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    ray_x, ray_y = (xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1]
    expected = 3.0 / (1.0 + 0.3 * ray_x - 0.2 * ray_y)  # z of the ray (ray_x z, ray_y z, z) on the plane
    depth = np.asarray(render.depth_map(frags, background=-1.0))
    np.testing.assert_allclose(depth[hit], expected[hit], rtol=2e-6)
    assert (depth[~hit] == -1.0).all() and hit.mean() > 0.3
    bary = np.asarray(frags.bary)
    np.testing.assert_allclose(bary[hit].sum(-1), 1.0, atol=1e-5)
    assert (bary[hit] > -1e-5).all() and (bary[~hit] == 0).all()


def test_depth_is_differentiable_in_the_vertices():
    """A plane facing the camera at z = 3 + t_z: d(sum of depth)/d t_z = number of covered pixels, through the
    vertices (visibility itself is piecewise constant)."""
    vertices, faces = padded(*shapes.grid_mesh(2, 2, x_range=(-0.5, 0.5), y_range=(-0.5, 0.5)))

    def depth_sum(shift):
        frags = rasterize(jnp.asarray(vertices) + shift, faces)
        return jnp.sum(frags.depth), jnp.sum(frags.face_index >= 0)

    (_, covered), grad = jax.value_and_grad(depth_sum, has_aux=True)(jnp.zeros(3))
    np.testing.assert_allclose(grad, [0.0, 0.0, float(covered)], atol=1e-2)
    assert covered > 100


def test_barycentrics_reconstruct_the_surface_point():
    vertices, faces = random_mesh(4)
    frags = rasterize(vertices, faces)
    hit = np.asarray(frags.face_index) >= 0
    corners = (vertices + T)[faces[np.maximum(np.asarray(frags.face_index), 0)]]  # camera = world + t here
    point = np.sum(np.asarray(frags.bary)[..., None] * corners, axis=-2)
    ys, xs = np.mgrid[0:H, 0:W] + 0.5
    np.testing.assert_allclose(point[hit, 2], np.asarray(frags.depth)[hit], rtol=1e-5)
    np.testing.assert_allclose(point[hit, 0] / point[hit, 2] * K[0, 0] + K[0, 2], xs[hit], atol=1e-3)
    np.testing.assert_allclose(point[hit, 1] / point[hit, 2] * K[1, 1] + K[1, 2], ys[hit], atol=1e-3)


def test_batch_equals_per_item():
    """Four meshes in chunks of two: vmap within a chunk, lax.map across chunks."""
    meshes = [random_mesh(seed) for seed in (10, 11, 12, 13)]
    vertices = jnp.asarray(np.stack([v for v, _ in meshes]))
    faces = jnp.asarray(meshes[0][1])
    translations = jnp.asarray([[0.0, 0.0, 3.0], [0.2, -0.1, 3.5], [-0.1, 0.1, 2.8], [0.0, 0.1, 3.1]])
    batched = render.rasterize_batch(vertices, faces, K, R, translations, H, W, batch_chunk=2)
    vertex_parts = jnp.arange(48) % 24
    for i in range(4):
        single = rasterize(vertices[i], faces, t=translations[i])
        np.testing.assert_array_equal(batched.face_index[i], single.face_index)
        np.testing.assert_allclose(batched.depth[i], single.depth, rtol=1e-6)
        np.testing.assert_array_equal(render.part_labels(batched, faces, vertex_parts)[i],
                                      render.part_labels(single, faces, vertex_parts))


def test_pare_camera_renders_body_like_mesh():
    vertices, faces, parts = shapes.body_like_mesh()
    assert vertices.shape == (6890, 3) and faces.shape == (13776, 3) and parts.max() == 23
    labels = np.asarray(render.render_part_labels_batch(jnp.asarray(vertices)[None], jnp.asarray(faces),
                                                        jnp.asarray(parts), jnp.asarray([[0.0, 0.0, 45.0]])))[0]
    assert labels.shape == (224, 224) and labels[112, 112] > 0 and labels[0, 0] == 0
    assert len(np.unique(labels)) == 25


def test_shading_is_lambertian_and_two_sided():
    vertices, faces = padded(*shapes.grid_mesh(2, 2, x_range=(-0.5, 0.5), y_range=(-0.5, 0.5)))
    vertices = jnp.asarray(vertices)
    shade = jax.jit(render.shade, static_argnames=("smooth",))
    for faces_used in (faces, faces[:, ::-1]):  # both windings light the same way
        frags = rasterize(vertices, faces_used)
        rgb, alpha = shade(frags, vertices, jnp.asarray(faces_used), R, T, light_dir=jnp.asarray([0.0, 0.0, -1.0]),
                           ambient=0.25, diffuse=0.5, face_colors=np.full((64, 3), 0.8, np.float32))
        hit = np.asarray(frags.face_index) >= 0
        np.testing.assert_allclose(np.asarray(rgb)[hit], 0.8 * 0.75, atol=1e-5)
        assert (np.asarray(rgb)[~hit] == 0).all()
        np.testing.assert_array_equal(np.asarray(alpha), hit.astype(np.float32))
    side_lit, _ = shade(frags, vertices, jnp.asarray(faces), R, T, light_dir=jnp.asarray([1.0, 0.0, -1.0]),
                        ambient=0.0, diffuse=1.0, smooth=False)
    expected = np.broadcast_to(np.asarray(render.shading.DEFAULT_COLOR) / np.sqrt(2), (hit.sum(), 3))
    np.testing.assert_allclose(np.asarray(side_lit)[hit], expected, atol=1e-5)


def test_overlay_compositing_exact_at_alpha_zero_and_one():
    rng = np.random.default_rng(0)
    image = rng.uniform(size=(4, 5, 3)).astype(np.float32)
    rgb = rng.uniform(size=(4, 5, 3)).astype(np.float32)
    alpha = np.zeros((4, 5), np.float32)
    alpha[:2] = 1.0
    out = np.asarray(render.overlay(image, rgb, alpha))
    np.testing.assert_array_equal(out[:2], rgb[:2])
    np.testing.assert_array_equal(out[2:], image[2:])
    half = np.asarray(render.overlay(image, rgb, alpha, opacity=0.5))
    np.testing.assert_allclose(half[:2], 0.5 * (image[:2] + rgb[:2]), atol=1e-6)
    image_u8 = (image * 255).astype(np.uint8)
    out_u8 = np.asarray(render.overlay(image_u8, rgb, alpha))
    assert out_u8.dtype == np.uint8
    np.testing.assert_array_equal(out_u8[2:], image_u8[2:])
    np.testing.assert_array_equal(out_u8[:2], np.round(rgb[:2] * 255).astype(np.uint8))


def test_bad_input_names_the_problem():
    vertices, faces = random_mesh(0)
    with pytest.raises(ValueError, match="vertices must be"):
        render.rasterize(jnp.asarray(vertices)[None], jnp.asarray(faces), K, R, T, H, W)
    with pytest.raises(ValueError, match="integer array"):
        render.rasterize(jnp.asarray(vertices), jnp.asarray(faces, jnp.float32), K, R, T, H, W)
    with pytest.raises(ValueError, match="rasterize_batch needs"):
        render.rasterize_batch(jnp.asarray(vertices), jnp.asarray(faces), K, R, T, H, W)
