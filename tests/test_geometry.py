"""Rotations, cameras, joint sets and metrics of smpl_jax, against independent references (scipy, numpy)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from smpl_jax import cameras, joints, metrics
from smpl_jax import rotations as rot


def _random_rotvecs(n, seed=0):
    rng = np.random.default_rng(seed)
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    angles = np.concatenate([[0.0, 1e-9, 1e-4, np.pi - 1e-6, np.pi], rng.uniform(0, np.pi, n - 5)])
    return axes * angles[:, None]


def test_axis_angle_to_matrix_matches_scipy():
    aa = _random_rotvecs(64)
    np.testing.assert_allclose(np.asarray(rot.axis_angle_to_matrix(jnp.asarray(aa, jnp.float32))),
                               Rotation.from_rotvec(aa).as_matrix(), atol=2e-6)


def test_matrix_axis_angle_round_trip_including_zero_and_pi():
    aa = _random_rotvecs(64, seed=1)
    mats = Rotation.from_rotvec(aa).as_matrix()
    back = np.asarray(rot.matrix_to_axis_angle(jnp.asarray(mats, jnp.float32)))
    np.testing.assert_allclose(Rotation.from_rotvec(back).as_matrix(), mats, atol=1e-5)


def test_quaternions_are_wxyz_and_match_scipy():
    np.testing.assert_allclose(np.asarray(rot.matrix_to_quaternion(jnp.eye(3))), [1, 0, 0, 0])
    aa = _random_rotvecs(32, seed=2)
    xyzw = Rotation.from_rotvec(aa).as_quat()
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], axis=1) * np.sign(xyzw[:, 3:] + 1e-30)
    ours = np.asarray(rot.matrix_to_quaternion(jnp.asarray(Rotation.from_rotvec(aa).as_matrix(), jnp.float32)))
    np.testing.assert_allclose(np.abs(np.sum(ours * wxyz, axis=1)), 1.0, atol=1e-5)  # same up to sign
    np.testing.assert_allclose(np.asarray(rot.quaternion_to_matrix(jnp.asarray(wxyz, jnp.float32))),
                               Rotation.from_rotvec(aa).as_matrix(), atol=1e-5)
    np.testing.assert_allclose(np.asarray(rot.axis_angle_to_quaternion(jnp.asarray(aa[5:], jnp.float32))),
                               wxyz[5:], atol=1e-5)


def test_rot6d_uses_the_first_two_columns_in_pare_layout():
    mats = Rotation.from_rotvec(_random_rotvecs(16, seed=3)).as_matrix()
    six = np.asarray(rot.matrix_to_rot6d(jnp.asarray(mats, jnp.float32)))
    np.testing.assert_allclose(six.reshape(-1, 3, 2), mats[:, :, :2], atol=1e-7)
    np.testing.assert_allclose(np.asarray(rot.rot6d_to_matrix(jnp.asarray(six))), mats, atol=1e-5)


def test_rot6d_gram_schmidt_on_arbitrary_input():
    x = jnp.asarray(np.random.default_rng(4).normal(size=(32, 6)), jnp.float32)
    R = np.asarray(rot.rot6d_to_matrix(x))
    np.testing.assert_allclose(R @ np.swapaxes(R, 1, 2), np.broadcast_to(np.eye(3), R.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(R), 1.0, atol=1e-5)
    a1 = np.asarray(x).reshape(-1, 3, 2)[:, :, 0]
    np.testing.assert_allclose(R[:, :, 0], a1 / np.linalg.norm(a1, axis=1, keepdims=True), atol=1e-6)


def test_rodrigues_gradient_is_finite_and_exact_at_zero():
    jac = jax.jacfwd(rot.axis_angle_to_matrix)(jnp.zeros(3))
    skew_basis = np.stack([np.asarray(rot._skew(jnp.eye(3)[i])) for i in range(3)], axis=-1)
    np.testing.assert_allclose(np.asarray(jac), skew_basis, atol=1e-7)
    grad = jax.grad(lambda v: jnp.sum(rot.matrix_to_axis_angle(rot.axis_angle_to_matrix(v)) ** 2))(jnp.zeros(3))
    assert np.isfinite(np.asarray(grad)).all()


def test_flipping_a_rotation_in_both_representations_agrees():
    aa = jnp.asarray(_random_rotvecs(16, seed=5), jnp.float32)
    np.testing.assert_allclose(np.asarray(rot.axis_angle_to_matrix(rot.flip_axis_angle(aa))),
                               np.asarray(rot.flip_matrix(rot.axis_angle_to_matrix(aa))), atol=1e-6)


def test_geodesic_angle():
    aa = jnp.asarray([[0.0, 0.0, 0.3]])
    np.testing.assert_allclose(np.asarray(rot.geodesic_angle(jnp.eye(3)[None], rot.axis_angle_to_matrix(aa))),
                               [0.3], atol=1e-6)


def test_weak_perspective_round_trip_and_pare_constants():
    cam = jnp.asarray([[0.9, 0.1, -0.2]])
    transl = cameras.weak_perspective_to_translation(cam)
    np.testing.assert_allclose(np.asarray(transl), [[0.1, -0.2, 2 * 5000 / (224 * 0.9 + 1e-9)]], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(cameras.translation_to_weak_perspective(transl)), np.asarray(cam),
                               rtol=1e-5)
    np.testing.assert_allclose(np.asarray(cameras.intrinsics()), [[5000, 0, 112], [0, 5000, 112], [0, 0, 1]])


def test_perspective_projection_known_values():
    points = jnp.asarray([[[1.0, 2.0, 10.0], [0.0, 0.0, 5.0]]])
    px = cameras.perspective_projection(points, jnp.zeros((1, 3)), 100.0, jnp.asarray([50.0, 60.0]))
    np.testing.assert_allclose(np.asarray(px), [[[60.0, 80.0], [50.0, 60.0]]])
    R = rot.axis_angle_to_matrix(jnp.asarray([[0.0, 0.0, np.pi / 2]]))
    px = cameras.perspective_projection(points[:, :1], jnp.zeros((1, 3)), jnp.asarray([[100.0, 50.0]]),
                                        jnp.zeros(2), rotation=R)
    np.testing.assert_allclose(np.asarray(px), [[[-20.0, 5.0]]], atol=1e-5)


def test_normalized_projection_approaches_weak_perspective_for_shallow_bodies():
    points = jnp.asarray(np.random.default_rng(6).uniform(-0.5, 0.5, (2, 10, 3)) * [1, 1, 0.001], jnp.float32)
    cam = jnp.asarray([[0.8, 0.05, 0.1], [1.1, -0.1, 0.0]])
    np.testing.assert_allclose(np.asarray(cameras.project_normalized(points, cam)),
                               np.asarray(cameras.weak_perspective_projection(points, cam)), atol=2e-4)


def _numpy_procrustes(src, dst):
    """Textbook similarity Procrustes for one sample (Umeyama 1991), written independently of the code."""
    ms, md = src.mean(0), dst.mean(0)
    a, b = src - ms, dst - md
    u, s, vt = np.linalg.svd(b.T @ a)
    d = np.diag([1, 1, np.sign(np.linalg.det(u @ vt))])
    r = u @ d @ vt
    scale = np.trace(np.diag(s) @ d) / np.sum(a ** 2)
    return scale * a @ r.T + md


def test_pa_mpjpe_matches_numpy_reference_and_is_zero_for_similar_copies():
    rng = np.random.default_rng(7)
    gt = rng.normal(size=(4, 14, 3))
    pred = gt + rng.normal(size=gt.shape) * 0.1
    expected = [np.mean(np.linalg.norm(_numpy_procrustes(p, g) - g, axis=1)) for p, g in zip(pred, gt)]
    np.testing.assert_allclose(np.asarray(metrics.pa_mpjpe(jnp.asarray(pred), jnp.asarray(gt))), expected,
                               rtol=1e-4)
    R = Rotation.from_rotvec(rng.normal(size=(4, 3))).as_matrix()
    similar = 2.5 * np.einsum("bij,bnj->bni", R, gt) + rng.normal(size=(4, 1, 3))
    np.testing.assert_allclose(np.asarray(metrics.pa_mpjpe(jnp.asarray(similar), jnp.asarray(gt))), 0, atol=1e-5)


def test_pa_mpjpe_never_aligns_with_a_reflection():
    gt = np.random.default_rng(8).normal(size=(1, 14, 3))
    mirrored = gt * np.array([-1.0, 1.0, 1.0])
    assert float(metrics.pa_mpjpe(jnp.asarray(mirrored), jnp.asarray(gt))[0]) > 0.1


def test_mpjpe_pve_and_sum_count_exact_values():
    gt = jnp.zeros((3, 2, 3))
    pred = gt.at[:, 0, 0].set(jnp.asarray([1.0, 2.0, 3.0])).at[:, 1, 1].set(4.0)
    np.testing.assert_allclose(np.asarray(metrics.mpjpe(pred, gt)), [2.5, 3.0, 3.5])
    np.testing.assert_allclose(np.asarray(metrics.pve(pred, gt)), [2.5, 3.0, 3.5])
    # Two ragged batches combine to the mean over samples, not the mean of batch means.
    s1, c1 = metrics.masked_sum_count(metrics.mpjpe(pred, gt))
    s2, c2 = metrics.masked_sum_count(jnp.asarray([10.0, 99.0]), mask=jnp.asarray([1.0, 0.0]))
    assert float((s1 + s2) / (c1 + c2)) == pytest.approx((2.5 + 3 + 3.5 + 10) / 4)
    per_joint_sum, per_joint_count = metrics.masked_sum_count(metrics.per_joint_error(pred, gt))
    np.testing.assert_allclose(np.asarray(per_joint_sum / per_joint_count), [2.0, 4.0])


def test_flip_permutations_are_involutions_and_pair_sides():
    for name in joints.JOINT_SETS:
        perm = joints.joint_set_flip_permutation(name)
        np.testing.assert_array_equal(perm[perm], np.arange(len(perm)))
    names = joints.joint_names("spin49")
    perm = joints.joint_set_flip_permutation("spin49")
    assert names[perm[names.index("OP LBigToe")]] == "OP RBigToe"
    assert names[perm[names.index("Left Ear")]] == "Right Ear"
    assert perm[names.index("Top of Head (LSP)")] == names.index("Top of Head (LSP)")


def test_flip_smpl_pose_twice_is_identity():
    pose = jnp.asarray(np.random.default_rng(9).normal(size=(2, 72)), jnp.float32)
    np.testing.assert_allclose(np.asarray(joints.flip_smpl_pose(joints.flip_smpl_pose(pose))), np.asarray(pose))
    flipped = np.asarray(joints.flip_smpl_pose(pose)).reshape(2, 24, 3)
    np.testing.assert_allclose(flipped[:, 1], np.asarray(pose).reshape(2, 24, 3)[:, 2] * [1, -1, -1], rtol=1e-6)


def test_set_sizes_and_lsp_subset():
    assert [len(joints.joint_names(n)) for n in ("smpl24", "openpose25", "spin49", "h36m17", "h36m14")] == \
        [24, 25, 49, 17, 14]
    assert joints.joint_names("h36m14")[0] == "Right Ankle" and joints.joint_names("h36m14")[-1] == "Head"
