"""pare_jax.data pieces that need no body and no built dataset: poses, occluders, the SPIN npz reader, the
translation fit, and the augmentation geometry (image warp vs keypoint map, flips, rotations)."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from pare_jax.data import augment, occluders, poses, spin_format, textures
from pare_jax.data.offline_labels import estimate_translation
from pare_jax.data.tensorflow_cpu import tf
from smpl_jax import rotations
from smpl_jax.joints import SMPL_FLIP_PERMUTATION


def test_pose_sampler_respects_limits_and_seed():
    first = poses.sample_body_pose(np.random.default_rng(3), 500)
    again = poses.sample_body_pose(np.random.default_rng(3), 500)
    np.testing.assert_array_equal(first, again)
    assert poses.within_limits(first).all()
    assert not poses.within_limits(np.full((1, 69), 3.0)).all()
    # Limits are anatomical: knees only bend one way, and the right side mirrors the left.
    limits = np.rad2deg(poses.JOINT_LIMITS)
    assert limits[3, 0, 0] == 0 and limits[3, 0, 1] == 135  # left knee x (joint 4 -> row 3)
    np.testing.assert_allclose(limits[15, 1:], -limits[16, 1:, ::-1])  # left / right shoulder y, z


def test_global_orient_is_upright_in_camera_axes():
    orient = poses.sample_global_orient(np.random.default_rng(0), 200)
    R = Rotation.from_rotvec(orient).as_matrix()
    up = R[:, :, 1]  # SMPL's up axis (+y) seen in camera axes must point up the image (-y)
    assert (up[:, 1] < -0.6).all() and np.median(up[:, 1]) < -0.97  # tilted by N(0, 10 deg) per axis
    headings = np.arctan2(R[:, 0, 2], R[:, 2, 2])
    assert np.ptp(headings) > 5.5  # all the way round


def test_heading_range_keeps_people_facing_the_camera():
    orient = poses.sample_global_orient(np.random.default_rng(1), 500, tilt_deg=0.0, max_heading_deg=60.0)
    forward = Rotation.from_rotvec(orient).as_matrix()[:, :, 2]  # SMPL's front (+z) in camera axes
    turned = np.rad2deg(np.arccos(-forward[:, 2]))  # angle away from looking straight at the camera
    assert turned.max() <= 60.0 + 1e-3 and turned.max() > 55.0
    assert (forward[:, 0] > 0).mean() == pytest.approx(0.5, abs=0.08)  # turned left and right alike
    with pytest.raises(ValueError, match="max_heading_deg"):
        poses.sample_global_orient(np.random.default_rng(1), 1, max_heading_deg=270.0)


def test_betas_clipped():
    betas = poses.sample_betas(np.random.default_rng(0), 1000, clip=2.0)
    assert betas.shape == (1000, 10) and np.abs(betas).max() <= 2.0 and 0.8 < betas.std() < 1.0


def test_textures_and_occluder_bank():
    rng = np.random.default_rng(0)
    for kind in textures.KINDS:
        texture = textures.random_texture(rng, 20, 30, kinds=(kind,))
        assert texture.shape == (20, 30, 3) and texture.min() >= 0 and texture.max() <= 1
    bank = occluders.make_occluder_bank(num=6, size=32, seed=1)
    assert bank.shape == (6, 32, 32, 4) and bank.dtype == np.uint8
    np.testing.assert_array_equal(bank, occluders.make_occluder_bank(num=6, size=32, seed=1))
    alpha = bank[..., 3] / 255.0
    assert (alpha.max(axis=(1, 2)) == 1).all() and (alpha[:, 0, 0] == 0).all()
    soft = ((alpha > 0.02) & (alpha < 0.98)).sum(axis=(1, 2))
    assert (soft > 0).all(), "borders must be soft"


def test_user_occluder_file(tmp_path):
    cutout = np.zeros((10, 20, 4), np.uint8)
    cutout[2:8, 3:17] = [200, 10, 10, 255]
    np.savez(tmp_path / "good.npz", a=cutout, b=np.stack([cutout, cutout]).astype(np.float32) / 255)
    bank = occluders.load_occluder_file(tmp_path / "good.npz", size=16)
    assert bank.shape == (3, 16, 16, 4) and bank[0, 8, 8, 0] == 200
    np.savez(tmp_path / "rgb.npz", a=cutout[..., :3])
    with pytest.raises(occluders.OccluderFileError, match=r"shape \(10, 20, 3\).*RGBA"):
        occluders.load_occluder_file(tmp_path / "rgb.npz")
    np.savez(tmp_path / "empty.npz", a=np.zeros((5, 5, 4), np.uint8))
    with pytest.raises(occluders.OccluderFileError, match="all-zero alpha"):
        occluders.load_occluder_file(tmp_path / "empty.npz")
    with pytest.raises(occluders.OccluderFileError, match="does not exist"):
        occluders.load_occluder_file(tmp_path / "missing.npz")


def test_spin_npz_validation(tmp_path):
    names = np.asarray(["a.jpg", "b.jpg"])
    np.savez(tmp_path / "ok.npz", imgname=names, center=np.ones((2, 2)), scale=np.ones(2),
             pose=np.zeros((2, 72)), gender=np.asarray(["m", "female"]))
    ann = spin_format.read_annotations(tmp_path / "ok.npz")
    assert ann["part"].shape == (2, 24, 3) and ann["S"].shape == (2, 24, 4)
    np.testing.assert_array_equal(ann["has_smpl"], [1, 1])  # pose present, no has_smpl key
    np.testing.assert_array_equal(ann["has_joints3d"], [0, 0])
    np.testing.assert_array_equal(ann["gender"], [0, 1])
    np.savez(tmp_path / "bad.npz", imgname=names, center=np.ones((2, 2)), scale=np.ones(2),
             part=np.zeros((2, 14, 3)))
    with pytest.raises(spin_format.SpinFormatError, match=r"'part' has shape \(2, 14, 3\), expected \(2, 24, 3\)"):
        spin_format.read_annotations(tmp_path / "bad.npz")
    np.savez(tmp_path / "nobox.npz", imgname=names, center=np.ones((2, 2)), scale=np.array([1.0, 0.0]))
    with pytest.raises(spin_format.SpinFormatError, match=r"1 rows have a non-positive.*rows \[1\]"):
        spin_format.read_annotations(tmp_path / "nobox.npz")
    np.savez(tmp_path / "nokeys.npz", imgname=names)
    with pytest.raises(spin_format.SpinFormatError, match=r"missing required keys \['center', 'scale'\]"):
        spin_format.read_annotations(tmp_path / "nokeys.npz")


def test_crop_with_margin_maps_box_to_centre():
    image = np.zeros((100, 120, 3), np.uint8)
    image[40:60, 50:70] = 255  # a 20 px square centred at (60, 50)
    crop = spin_format.crop_image(image, center=(60, 50), scale=20 / 200, size=30, crop_margin=1.5)
    bright = np.argwhere(crop[..., 0] > 128)
    assert bright.min(0).tolist() == [5, 5] and bright.max(0).tolist() == [24, 24]
    corner = spin_format.crop_image(image, center=(0, 0), scale=0.5, size=16, crop_margin=1.0)
    assert corner[:8, :8].max() == 0  # outside the image is black
    keypoints = np.array([[[60, 50, 1], [70, 50, 0.5]]], np.float32)
    np.testing.assert_allclose(spin_format.normalize_keypoints(keypoints, [[60, 50]], [0.1]),
                               [[[0, 0, 1], [1, 0, 0.5]]])


def test_translation_fit_recovers_the_camera():
    rng = np.random.default_rng(0)
    joints = rng.normal(0, 0.4, (5, 24, 3))
    truth = np.stack([rng.uniform(-0.3, 0.3, 5), rng.uniform(-0.3, 0.3, 5), rng.uniform(20, 60, 5)], -1)
    cam = joints + truth[:, None]
    xy = 5000 * cam[..., :2] / cam[..., 2:] / 112  # normalised over a 224 box
    conf = (rng.uniform(size=(5, 24)) > 0.3).astype(float)
    keypoints = np.concatenate([xy + (1 - conf[..., None]) * 7.0, conf[..., None]], -1)  # junk where conf = 0
    fitted, valid = estimate_translation(joints, keypoints)
    assert valid.all()
    np.testing.assert_allclose(fitted, truth, rtol=1e-6, atol=1e-6)
    keypoints[1, :, 2] = 0
    keypoints[1, :3, 2] = 1
    assert not estimate_translation(joints, keypoints)[1][1], "three joints are too few"


def _params(flip=False, angle_deg=0.0, scale=1.0, centre=(0.0, 0.0)):
    params = augment.identity_params()
    params.update(flip=tf.constant(flip), angle=tf.constant(np.deg2rad(angle_deg), tf.float32),
                  scale=tf.constant(scale, tf.float32), centre=tf.constant(centre, tf.float32))
    return params


def _example(size=40, margin=1.25, seed=0):
    rng = np.random.default_rng(seed)
    return {"image": tf.constant(rng.integers(0, 256, (size, size, 3)), tf.uint8),
            "part_map": tf.constant(rng.integers(0, 25, (size, size, 1)), tf.uint8),
            "masks": tf.constant(rng.integers(0, 256, (size, size, 4)), tf.uint8),
            "crop_margin": tf.constant(margin, tf.float32),
            "keypoints": tf.constant(np.concatenate([rng.uniform(-1, 1, (49, 2)), rng.uniform(0, 1, (49, 1))], -1),
                                     tf.float32),
            "visibility": tf.constant(rng.choice([-1.0, 0.0, 1.0], 49), tf.float32),
            "joints3d": tf.constant(rng.normal(size=(24, 4)), tf.float32),
            "pose": tf.constant(rng.normal(0, 0.5, 72), tf.float32)}


def test_flipping_twice_gives_back_the_sample():
    example = _example(size=32, margin=1.0)
    once = augment.apply(example, _params(flip=True), None, 32, normalize=False)
    masks = tf.cast(tf.round(tf.concat([once["silhouette"], once["context"]], -1) * 255.0), tf.uint8)
    twice = augment.apply(dict(once, image=tf.cast(once["img"], tf.uint8), part_map=once["part_map"][..., None],
                               masks=masks), _params(flip=True), None, 32, normalize=False)
    np.testing.assert_allclose(np.concatenate([twice["silhouette"], twice["context"]], -1) * 255.0,
                               example["masks"].numpy().astype(np.float32), atol=1e-3)
    np.testing.assert_array_equal(twice["img"].numpy(), example["image"].numpy().astype(np.float32))
    np.testing.assert_array_equal(twice["part_map"].numpy(), example["part_map"].numpy()[..., 0])
    for key in ("keypoints", "visibility", "joints3d", "pose"):
        np.testing.assert_allclose(twice[key].numpy(), example[key].numpy(), atol=1e-5, err_msg=key)
    # Once: the image is mirrored, left and right part labels trade places, x changes sign.
    np.testing.assert_array_equal(once["img"].numpy(), example["image"].numpy()[:, ::-1].astype(np.float32))
    labels = example["part_map"].numpy()[:, ::-1, 0]
    np.testing.assert_array_equal(once["part_map"].numpy(), augment.PART_LABEL_FLIP[labels])
    assert augment.PART_LABEL_FLIP[2] == 3 and augment.PART_LABEL_FLIP[1] == 1  # left_hip <-> right_hip, pelvis


@pytest.mark.parametrize("flip,angle,scale,centre", [(False, 35.0, 1.2, (0.0, 0.0)), (True, -50.0, 0.8, (0.1, -0.3)),
                                                     (True, 0.0, 0.6, (-0.4, 0.0)), (False, 0.0, 1.0, (0.0, 0.0))])
def test_image_and_keypoints_move_together(flip, angle, scale, centre):
    """A bright dot drawn at each keypoint of the stored crop lands where the keypoint map sends it; the part map
    (nearest) follows the same map."""
    size, margin, out = 64, 1.5, 48
    rng = np.random.default_rng(1)
    # Choose where the dots should land, then invert the map by hand: x = c + s R(-angle) F y.
    targets = rng.uniform(-0.75, 0.75, (5, 2)) * [-1 if flip else 1, 1]
    turn = np.deg2rad(angle)
    R_inverse = np.array([[np.cos(turn), np.sin(turn)], [-np.sin(turn), np.cos(turn)]])
    points = np.asarray(centre) + scale * targets @ R_inverse.T
    for point in points:
        pixel = np.floor((point / margin + 1) * size / 2).astype(int)
        image = np.zeros((size, size, 3), np.uint8)
        image[pixel[1] - 1:pixel[1] + 2, pixel[0] - 1:pixel[0] + 2] = 255
        centre_of_dot = (pixel + 0.5) / (size / 2) * margin - margin  # box-normalised, exact pixel centre
        keypoints = np.zeros((49, 3), np.float32)
        keypoints[0, :2] = centre_of_dot
        example = dict(_example(size, margin), image=tf.constant(image),
                       part_map=tf.constant((image[..., :1] > 0).astype(np.uint8) * 7),
                       keypoints=tf.constant(keypoints))
        out_ex = augment.apply(example, _params(flip, angle, scale, centre), None, out, normalize=False)
        weights = out_ex["img"].numpy()[..., 0]
        ys, xs = np.mgrid[0:out, 0:out] + 0.5
        found = np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()
        moved = out_ex["keypoints"].numpy()
        index = augment.KEYPOINT_FLIP[0] if flip else 0  # joint 0 moves to its mirror's slot when flipped
        expected = (moved[index, :2] + 1) * out / 2
        np.testing.assert_allclose(found, expected, atol=0.3)
        labels = np.argwhere(out_ex["part_map"].numpy() > 0)[:, ::-1] + 0.5
        assert np.abs(labels.mean(0) - expected).max() < 1.0


def test_rotation_turns_pose_and_joints_about_the_camera_axis():
    example = _example()
    out = augment.apply(example, _params(angle_deg=40.0), None, 32, normalize=False)
    turn = np.asarray(rotations.axis_angle_to_matrix(np.array([0, 0, np.deg2rad(40.0)], np.float32)))
    root = np.asarray(rotations.axis_angle_to_matrix(example["pose"].numpy()[:3]))
    new_root = np.asarray(rotations.axis_angle_to_matrix(out["pose"].numpy()[:3]))
    np.testing.assert_allclose(new_root, turn @ root, atol=1e-5)
    np.testing.assert_allclose(out["pose"].numpy()[3:], example["pose"].numpy()[3:])
    joints = example["joints3d"].numpy()
    np.testing.assert_allclose(out["joints3d"].numpy()[:, :3], joints[:, :3] @ turn.T, atol=1e-5)
    # The image-plane rotation matches: projecting the turned joints equals turning the projections.
    xy = joints[:, :2] / 3.0
    np.testing.assert_allclose(out["joints3d"].numpy()[:, :2] / 3.0, xy @ turn[:2, :2].T, atol=1e-5)


def test_flip_pose_matches_smpl_flip_and_random_parameters_are_stateless():
    example = _example()
    out = augment.apply(example, _params(flip=True), None, 32, normalize=False)
    aa = example["pose"].numpy().reshape(24, 3)
    np.testing.assert_allclose(out["pose"].numpy().reshape(24, 3), aa[SMPL_FLIP_PERMUTATION] * [1, -1, -1])
    config = augment.AugmentConfig()
    key = tf.constant([7, 11], tf.int64)
    first = augment.sample_params(key, config, tf.constant(True))
    again = augment.sample_params(key, config, tf.constant(True))
    for name in first:
        np.testing.assert_array_equal(first[name].numpy(), again[name].numpy())
    draws = tf.data.Dataset.range(400).map(
        lambda i: augment.sample_params(tf.stack([tf.constant(0, tf.int64), i]), config, tf.constant(False)))
    params = next(iter(draws.batch(400)))
    scales, angles = params["scale"].numpy(), np.rad2deg(params["angle"].numpy())
    occluders_per_image = params["occluder_active"].numpy().sum(-1)
    assert occluders_per_image.min() == 1 and occluders_per_image.max() == 7
    assert 0.75 <= scales.min() and scales.max() <= 1.25  # no random crop before crop_start_step
    assert np.abs(angles).max() <= 60 and 0.5 < (angles == 0).mean() < 0.7


def test_spin_npz_truncated_is_named_and_non_finite_labels_are_dropped_and_reported(tmp_path, caplog):
    n = 3
    rng = np.random.default_rng(0)
    pose = rng.normal(0, 0.1, (n, 72))
    pose[1, 5] = np.nan
    part = np.ones((n, 24, 3))
    part[2, 7, 0] = np.inf
    np.savez(tmp_path / "ok.npz", imgname=np.array(["a.jpg", "b.jpg", "c.jpg"]), center=np.full((n, 2), 100.0),
             scale=np.ones(n), pose=pose, shape=np.zeros((n, 10)), part=part)
    ann = spin_format.read_annotations(tmp_path / "ok.npz")
    assert ann["has_smpl"].tolist() == [1.0, 0.0, 1.0] and np.isfinite(ann["pose"]).all()
    assert ann["part"][2, 7].tolist() == [0.0, 0.0, 0.0] and ann["part"][2, 6].tolist() == [1.0, 1.0, 1.0]
    assert "ok.npz: 'pose' has non-finite values in 1 rows (e.g. [1], imgname b.jpg)" in caplog.text
    assert "ok.npz: 'part' has non-finite values in 1 rows" in caplog.text
    (tmp_path / "cut.npz").write_bytes((tmp_path / "ok.npz").read_bytes()[:300])
    with pytest.raises(spin_format.SpinFormatError, match=r"cut.npz: cannot read it as a .npz .*truncated"):
        spin_format.read_annotations(tmp_path / "cut.npz")
