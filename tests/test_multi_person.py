"""People occluding people: the synthetic generator's multi-person scenes, their exact labels for the target
(part map, visibility, silhouettes, OCHMR's context maps), and the SPIN builder's context maps."""
import numpy as np
import pytest

import smpl_jax
from pare_jax.data import builders, context, occluders, synthetic
from pare_jax.render.reference import rasterize_reference

SIZE, MARGIN, CHUNK = 48, 1.5, 4


@pytest.fixture(scope="module")
def renderer():
    body = smpl_jax.load("open")
    return synthetic.SceneRenderer(body, occluders.make_occluder_bank(num=8, size=32, seed=0), chunk=CHUNK,
                                   max_heading_deg=90.0, multi_person_ratio=0.5)


@pytest.fixture(scope="module")
def person_occluded(renderer):
    return renderer.crops("test_person_occluded", list(range(CHUNK)), seed=3, size=SIZE, crop_margin=MARGIN)


def _scene(renderer, split, index, seed=3):
    """What crops() builds for one sample, for the brute-force checks: target, box, camera, other people."""
    rng = synthetic.sample_rng(seed, split, index)
    target = synthetic.sample_scene(rng, renderer.max_heading_deg, renderer.tilt_deg)
    vertices, joints = (np.asarray(x)[0] for x in renderer.pose([target]))
    box = synthetic.person_box(vertices, rng)
    K = synthetic.box_camera(*box, SIZE, SIZE, (SIZE / 2, SIZE / 2), SIZE / MARGIN)
    others = renderer._pose_others(renderer.others(seed, split, index, target, box))
    return vertices, joints, K, others


def test_target_labels_match_a_brute_force_z_buffer_of_the_whole_scene(renderer, person_occluded):
    body = renderer.body
    faces, num_faces = np.asarray(body.faces), len(renderer.face_parts)
    vertices, joints, K, others = _scene(renderer, "test_person_occluded", 1)
    assert 1 <= len(others) <= synthetic.MAX_PEOPLE - 1
    mesh = np.concatenate([vertices] + [v for v, _, _ in others])
    scene_faces = np.concatenate([faces + p * len(vertices) for p in range(1 + len(others))])
    rows = list(range(3, SIZE, 8))  # the brute force costs seconds a row for 4 bodies; rows through all of them
    face_index, depth, ambiguous = rasterize_reference(mesh, scene_faces, K, np.eye(3), np.zeros(3), SIZE, SIZE,
                                                       rows=rows)
    expected = np.where((face_index >= 0) & (face_index < num_faces),
                        renderer.face_parts[np.clip(face_index, 0, num_faces - 1)] + 1, 0)
    example = person_occluded[1]
    clear = ~ambiguous & np.isin(np.arange(SIZE), rows)[:, None]
    np.testing.assert_array_equal(example["part_map"][..., 0][clear], expected[clear])
    # someone in front hides part of the target: fewer target pixels than the target rendered alone
    alone, _, _ = rasterize_reference(vertices, faces, K, np.eye(3), np.zeros(3), SIZE, SIZE, rows=rows)
    full, visible = example["masks"][..., 0] > 127, example["masks"][..., 1] > 127
    np.testing.assert_array_equal(full[clear], (alone >= 0)[clear])
    np.testing.assert_array_equal(visible[clear], (expected > 0)[clear])  # no object occluders in this split
    assert visible.sum() < full.sum() and not (visible & ~full).any()
    # visibility of the 24 ground-truth joints from the scene's z-buffer: a joint whose pixel shows another
    # person more than its tolerance in front of it is hidden
    pixels = joints @ K.T
    pixels = pixels[:, :2] / pixels[:, 2:3]
    col, row = np.floor(pixels[25:]).astype(int).T
    inside = (col >= 0) & (col < SIZE) & (row >= 0) & (row < SIZE)
    col, row = np.clip(col, 0, SIZE - 1), np.clip(row, 0, SIZE - 1)
    other = (face_index[row, col] >= num_faces) & inside & clear[row, col]  # rows not computed are -1
    behind = joints[25:, 2] - depth[row, col] > renderer.tolerance[25:]
    assert not example["visibility"][25:][other & behind].any()


def test_a_target_with_nobody_in_front_is_rendered_as_if_alone(renderer, monkeypatch):
    indices = list(range(CHUNK))
    alone = renderer.crops("test", indices, seed=3, size=SIZE, crop_margin=MARGIN)
    real_others = renderer.others

    def behind_only(seed, split, index, target, box):  # the test split's scenes with people behind them
        people = real_others(seed, "test_person_occluded", index, target, box)
        for person in people:
            person["depth"] = np.float32(target["transl"][2] + 2.0)
        return people

    monkeypatch.setattr(renderer, "others", behind_only)
    crowded = renderer.crops("test", indices, seed=3, size=SIZE, crop_margin=MARGIN)
    for a, c in zip(alone, crowded):
        np.testing.assert_array_equal(a["part_map"], c["part_map"])
        np.testing.assert_array_equal(a["visibility"], c["visibility"])
        np.testing.assert_array_equal(a["masks"][..., :3], c["masks"][..., :3])  # silhouettes, local map
        body = a["part_map"][..., 0] > 0
        np.testing.assert_array_equal(a["image"][body], c["image"][body])  # the target's own pixels
        assert (c["masks"][..., 3] >= a["masks"][..., 3]).all()  # the global map gains the others
        assert (c["masks"][..., 3] != a["masks"][..., 3]).any()
        np.testing.assert_array_equal(a["masks"][..., 2], a["masks"][..., 3])  # alone: global = local


def test_context_maps_peak_at_the_projected_body_centres(renderer, person_occluded):
    _, joints, K, others = _scene(renderer, "test_person_occluded", 2)
    local, global_map = (person_occluded[2]["masks"][..., c] / 255.0 for c in (2, 3))

    def centre(j):
        gt = j[25:] @ K.T
        return (gt[:, :2] / gt[:, 2:3])[list(context.TORSO_GT_JOINTS)].mean(0)

    row, col = np.unravel_index(np.argmax(local), local.shape)
    np.testing.assert_allclose([col + 0.5, row + 0.5], centre(joints), atol=1.0)
    for _, j, _ in others:
        x, y = centre(j)
        if 0 <= x < SIZE and 0 <= y < SIZE:
            assert global_map[int(y), int(x)] > 0.85  # each person's Gaussian, peak at its centre
    assert (global_map >= local - 1 / 255).all()


def test_context_maps_definition():
    maps = context.context_maps([[10.0, 12.0], [30.0, 5.0]], [3.0, 2.0], 0, 24, 40)
    assert maps.shape == (24, 40, 2) and maps.dtype == np.float32
    np.testing.assert_allclose(maps[11, 9, 0], np.exp(-0.25 / 9), rtol=1e-6)  # pixel centre (9.5, 11.5)
    assert np.unravel_index(maps[..., 1][:, 20:].argmax(), (24, 20)) == (4, 9)
    np.testing.assert_array_equal(maps[..., 1], np.maximum(maps[..., 0], context.gaussian((30, 5), 2.0, 24, 40)))
    assert context.sigma_for_box(64.0) == pytest.approx(6.4) and context.sigma_for_box(1.0) == 1.0
    with pytest.raises(ValueError, match="target 2"):
        context.context_maps([[1, 1], [2, 2]], 1.0, 2, 8, 8)
    unknown = np.zeros((24, 3))
    assert context.body_centre(unknown, box_centre=(4, 5)).tolist() == [4, 5]


def test_targets_do_not_depend_on_the_multi_person_ratio(renderer):
    single = synthetic.SceneRenderer(renderer.body, renderer.bank, chunk=CHUNK, max_heading_deg=90.0)
    for a, b in zip(single.crops("train", list(range(CHUNK)), 3, SIZE, MARGIN),
                    renderer.crops("train", list(range(CHUNK)), 3, SIZE, MARGIN)):
        for key in ("pose", "betas", "keypoints", "joints3d", "cam_t"):
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        np.testing.assert_array_equal(a["masks"][..., 0], b["masks"][..., 0])  # full silhouette
    with pytest.raises(ValueError, match="multi_person_ratio"):
        synthetic.SceneRenderer(renderer.body, renderer.bank, chunk=CHUNK, multi_person_ratio=1.5)


def test_person_occluded_split_hides_more_of_the_target(renderer, person_occluded):
    clear = renderer.crops("test", list(range(CHUNK)), seed=3, size=SIZE, crop_margin=MARGIN)
    fraction = [(e["masks"][..., 1] > 127).sum() / (e["masks"][..., 0] > 127).sum() for e in person_occluded]
    assert np.mean(fraction) < 0.97
    assert np.mean([e["visibility"][25:].mean() for e in person_occluded]) < np.mean(
        [e["visibility"][25:].mean() for e in clear])
    assert all((e["masks"][..., 1] == e["masks"][..., 0]).all() for e in clear)  # alone, no objects: equal


def test_spin_context_marks_every_person_of_the_same_image():
    part = np.zeros((3, 24, 3))
    part[:2, list(context.TORSO_GT_JOINTS), 2] = 1.0
    part[0, list(context.TORSO_GT_JOINTS), :2] = [100.0, 100.0]
    part[1, list(context.TORSO_GT_JOINTS), :2] = [160.0, 110.0]
    ann = {"imgname": np.asarray(["a.jpg", "a.jpg", "b.jpg"]), "part": part,
           "center": np.asarray([[100.0, 100.0], [160.0, 110.0], [50.0, 50.0]]), "scale": np.asarray([1.0, 0.5, 1.0])}
    people = builders._people_of_images(ann)
    maps = builders._spin_context(0, people, ann, 60, 1.5)  # crop of 300 px around (100, 100) at 60 px
    assert np.unravel_index(maps[..., 0].argmax(), (60, 60)) == (29, 29)  # its own centre (30, 30) in the crop
    assert maps[31, 41, 1] > 0.9 and maps[31, 41, 0] < 0.1  # person 1 at (160, 110) -> (42, 32): global only
    alone = builders._spin_context(2, people, ann, 60, 1.5)  # box centre: no torso joint annotated
    np.testing.assert_array_equal(alone[..., 0], alone[..., 1])
    assert np.unravel_index(alone[..., 0].argmax(), (60, 60)) == (29, 29)


def test_view_augmentation_widens_the_lean_and_names_the_dataset():
    import ml_collections
    from scipy.spatial.transform import Rotation

    from configs import synthetic as synthetic_config
    from pare_jax import inputs

    def lean_deg(tilt):
        rng = np.random.default_rng(0)
        orient = np.stack([synthetic.sample_scene(rng, 90.0, tilt)["pose"][:3] for _ in range(200)])
        up = Rotation.from_rotvec(orient).apply([0.0, 1.0, 0.0])  # the body's up axis in camera axes (y down)
        return np.degrees(np.arccos(np.clip(-up[:, 1], -1, 1))).mean()

    assert lean_deg(30.0) > 2 * lean_deg(10.0) > 0
    config = synthetic_config.get_config("")
    names = set()
    for tilt, ratio in ((10.0, 0.5), (25.0, 0.5), (10.0, 0.0)):
        config.data.synthetic.tilt_deg, config.data.synthetic.multi_person_ratio = tilt, ratio
        names.add(inputs._builder(config, "synthetic").builder_config.name)
    assert len(names) == 3 and isinstance(config, ml_collections.ConfigDict)
