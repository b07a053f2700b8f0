"""Joint sets: names, how each joint is computed, and left-right flip permutations.

A joint comes from one of three sources: the 24 posed SMPL joints ("smpl"), a vertex picked on the surface
("keypoints": nose, eyes, ears, toes, heels), or a row of a vertex regressor ("extra": the 9 extra joints of
SPIN/PARE; "h36m": the 17 Human3.6M joints). Each set below lists (source, index) per joint.
Flip permutations are derived from the names, so a set and its permutation can never disagree.
"""
import re

import jax.numpy as jnp
import numpy as np

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand",
    "right_hand",
)
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# Order of SMPL.keypoint_vertex_ids.
KEYPOINT_VERTEX_NAMES = ("nose", "right_eye", "left_eye", "right_ear", "left_ear", "left_big_toe",
                         "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")
# The vertices of the official SMPL topology (6890 vertices) at those keypoints, as used by smplx and SPIN.
SMPL_KEYPOINT_VERTEX_IDS = (332, 6260, 2800, 4071, 583, 3216, 3226, 3387, 6617, 6624, 6787)

OPENPOSE_NAMES = (
    "OP Nose", "OP Neck", "OP RShoulder", "OP RElbow", "OP RWrist", "OP LShoulder", "OP LElbow", "OP LWrist",
    "OP MidHip", "OP RHip", "OP RKnee", "OP RAnkle", "OP LHip", "OP LKnee", "OP LAnkle", "OP REye", "OP LEye",
    "OP REar", "OP LEar", "OP LBigToe", "OP LSmallToe", "OP LHeel", "OP RBigToe", "OP RSmallToe", "OP RHeel",
)
SPIN_GT_NAMES = (
    "Right Ankle", "Right Knee", "Right Hip", "Left Hip", "Left Knee", "Left Ankle", "Right Wrist",
    "Right Elbow", "Right Shoulder", "Left Shoulder", "Left Elbow", "Left Wrist", "Neck (LSP)",
    "Top of Head (LSP)", "Pelvis (MPII)", "Thorax (MPII)", "Spine (H36M)", "Jaw (H36M)", "Head (H36M)", "Nose",
    "Left Eye", "Right Eye", "Left Ear", "Right Ear",
)
# Rows of the SPIN extra regressor (J_regressor_extra.npy), in file order.
EXTRA_REGRESSOR_NAMES = ("Right Hip", "Left Hip", "Neck (LSP)", "Top of Head (LSP)", "Pelvis (MPII)",
                         "Thorax (MPII)", "Spine (H36M)", "Jaw (H36M)", "Head (H36M)")
# Rows of the H36M regressor used for evaluation (J_regressor_h36m.npy). Left/right as implied by the
# standard 14-joint evaluation subset below, which maps them onto the LSP order.
H36M_NAMES = ("Pelvis", "Left Hip", "Left Knee", "Left Ankle", "Right Hip", "Right Knee", "Right Ankle",
              "Spine", "Neck", "Jaw", "Head", "Left Shoulder", "Left Elbow", "Left Wrist", "Right Shoulder",
              "Right Elbow", "Right Wrist")
H36M_TO_J14 = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
LSP14_NAMES = tuple(H36M_NAMES[i] for i in H36M_TO_J14)


def _kp(name):
    return ("keypoints", KEYPOINT_VERTEX_NAMES.index(name))


def _smpl(name):
    return ("smpl", SMPL_JOINT_NAMES.index(name))


_OPENPOSE_SOURCES = (
    _kp("nose"), _smpl("neck"), _smpl("right_shoulder"), _smpl("right_elbow"), _smpl("right_wrist"),
    _smpl("left_shoulder"), _smpl("left_elbow"), _smpl("left_wrist"), _smpl("pelvis"), _smpl("right_hip"),
    _smpl("right_knee"), _smpl("right_ankle"), _smpl("left_hip"), _smpl("left_knee"), _smpl("left_ankle"),
    _kp("right_eye"), _kp("left_eye"), _kp("right_ear"), _kp("left_ear"), _kp("left_big_toe"),
    _kp("left_small_toe"), _kp("left_heel"), _kp("right_big_toe"), _kp("right_small_toe"), _kp("right_heel"),
)
_SPIN_GT_SOURCES = (
    _smpl("right_ankle"), _smpl("right_knee"), ("extra", 0), ("extra", 1), _smpl("left_knee"),
    _smpl("left_ankle"), _smpl("right_wrist"), _smpl("right_elbow"), _smpl("right_shoulder"),
    _smpl("left_shoulder"), _smpl("left_elbow"), _smpl("left_wrist"), ("extra", 2), ("extra", 3), ("extra", 4),
    ("extra", 5), ("extra", 6), ("extra", 7), ("extra", 8), _kp("nose"), _kp("left_eye"), _kp("right_eye"),
    _kp("left_ear"), _kp("right_ear"),
)

JOINT_SETS = {
    "smpl24": (SMPL_JOINT_NAMES, tuple(("smpl", i) for i in range(24))),
    "openpose25": (OPENPOSE_NAMES, _OPENPOSE_SOURCES),
    "spin49": (OPENPOSE_NAMES + SPIN_GT_NAMES, _OPENPOSE_SOURCES + _SPIN_GT_SOURCES),
    "h36m17": (H36M_NAMES, tuple(("h36m", i) for i in range(17))),
    "h36m14": (LSP14_NAMES, tuple(("h36m", i) for i in H36M_TO_J14)),
}

_MISSING_HELP = {
    "keypoints": "the keypoint vertex ids (set automatically for the official 6890-vertex topology and the "
                 "open body; otherwise pass keypoint_vertex_ids=[11 ids] to smpl_jax.load)",
    "extra": "the SPIN/PARE extra joint regressor J_regressor_extra.npy [9, 6890], which comes with the "
             "SPIN/PARE data: pass extra_regressor=PATH to smpl_jax.load",
    "h36m": "the H36M joint regressor J_regressor_h36m.npy [17, 6890], which comes with the SPIN/PARE data: "
            "pass h36m_regressor=PATH to smpl_jax.load",
}


def joint_names(joint_set):
    """Names of the joints of a set, in output order."""
    return _lookup(joint_set)[0]


def _lookup(joint_set):
    if joint_set not in JOINT_SETS:
        raise ValueError(f"unknown joint set {joint_set!r}; choose one of {sorted(JOINT_SETS)}")
    return JOINT_SETS[joint_set]


def compute(joint_set, smpl_joints, vertex_joints_fn):
    """Assemble a joint set. smpl_joints [B, 24, 3]; vertex_joints_fn() -> {group: [B, k, 3]} (called only if
    the set needs vertex joints). Returns [B, K, 3]."""
    _, sources = _lookup(joint_set)
    groups = sorted({g for g, _ in sources})
    available = {"smpl": smpl_joints}
    if groups != ["smpl"]:
        available.update(vertex_joints_fn())
    for group in groups:
        if group not in available:
            raise ValueError(f"joint set {joint_set!r} needs {_MISSING_HELP[group]}.")
    offsets, start = {}, 0
    for group in groups:
        offsets[group] = start
        start += available[group].shape[1]
    index = np.asarray([offsets[g] + i for g, i in sources])
    return jnp.concatenate([available[g] for g in groups], axis=1)[:, index]


# Whole words left/right (snake_case or Title Case), or OpenPose's one-letter prefix after "OP ".
_SIDE = re.compile(r"(?<![A-Za-z])(left|right|Left|Right)(?![a-z])|(?<=^OP )(L|R)(?=[A-Z])")
_SWAP = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "L": "R", "R": "L"}


def mirror_name(name):
    """'left_hip' -> 'right_hip', 'OP LEye' -> 'OP REye', 'Right Ankle' -> 'Left Ankle', 'neck' -> 'neck'."""
    return _SIDE.sub(lambda m: _SWAP[m.group(0)], name)


def flip_permutation(names):
    """perm such that flipped[..., i, :] = original[..., perm[i], :] after mirroring an image left-right."""
    names = tuple(names)
    perm = []
    for name in names:
        mirrored = mirror_name(name)
        if mirrored not in names:
            raise ValueError(f"joint {name!r} has no mirrored counterpart {mirrored!r} in the set")
        perm.append(names.index(mirrored))
    return np.asarray(perm, dtype=np.int32)


def joint_set_flip_permutation(joint_set):
    return flip_permutation(joint_names(joint_set))


# The SMPL pose flip: swap left/right joints and mirror each rotation (see rotations.flip_axis_angle).
SMPL_FLIP_PERMUTATION = flip_permutation(SMPL_JOINT_NAMES)


def flip_smpl_pose(pose):
    """Mirror an SMPL pose left-right. pose: axis-angle [B, 24, 3] or [B, 72] -> same shape."""
    shape = pose.shape
    aa = pose.reshape(shape[:-1] + (24, 3)) if shape[-1] == 72 else pose
    aa = aa[..., SMPL_FLIP_PERMUTATION, :] * jnp.asarray([1.0, -1.0, -1.0], dtype=aa.dtype)
    return aa.reshape(shape)
