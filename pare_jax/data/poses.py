"""Random plausible SMPL poses within per-joint limits, and random orientations in camera axes.

Limits are per joint and per component of the joint's local axis-angle (radians), in SMPL's rest frame: the body
stands in a T-pose, y up, facing +z, its left hand at +x. Sign conventions that follow from that frame:
x = flexion / extension (positive bends the spine and the knees forward-down, and the hips backward; negative
hip x lifts the thigh forward), y = twist about the vertical (for the arms in the T-pose: swinging the arm
forward or back), z = sideways (positive z on the left hip opens the leg outward; on the left shoulder it lifts
the arm; the right side mirrors, so its y and z ranges are negated and swapped).

| joint        | x (deg)      | y (deg)      | z (deg)      | from anatomy |
|--------------|--------------|--------------|--------------|--------------|
| hip L        | -115 .. 25   | -35 .. 35    | -20 .. 50    | flexion 115, extension 25, rotation 35, abduction 50 / adduction 20 |
| knee         | 0 .. 135     | -6 .. 6      | -3 .. 3      | flexion only |
| ankle        | -20 .. 45    | -15 .. 15    | -15 .. 15    | dorsiflexion 20, plantarflexion 45, in/eversion |
| foot (toes)  | -30 .. 15    | 0            | 0            | toe extension 30, flexion 15 |
| spine1/2/3   | -10 .. 25    | -15 .. 15    | -12 .. 12    | each a third of the trunk's flexion 75, extension 30, twist 45, side 35 |
| neck         | -25 .. 35    | -35 .. 35    | -20 .. 20    | with head: flexion 60, extension 55, rotation 70, side 40 |
| head         | -20 .. 25    | -25 .. 25    | -15 .. 15    | |
| collar L     | -10 .. 10    | -15 .. 10    | -10 .. 20    | shoulder girdle elevation 20, protraction 15 |
| shoulder L   | -60 .. 60    | -90 .. 45    | -85 .. 70    | twist 60, flexion 90 / extension 45 in the T-pose, from arm-down (-85) to raised 70 |
| elbow L      | -20 .. 20    | -145 .. 0    | -5 .. 5      | flexion 145, pronation/supination share x |
| wrist L      | -30 .. 30    | -25 .. 25    | -70 .. 70    | flexion / extension 70, deviation 25 |
| hand L       | -10 .. 10    | -10 .. 10    | -20 .. 20    | finger curl |

Each component is drawn from a normal with sd = a fifth of its range, clipped to the range, centred on the rest
value (0, i.e. the T-pose, clipped into the range) except for the arms, centred lowered by 45 degrees with the
elbows bent by 30: poses near a relaxed stance are likelier than extremes, and every pose stays within limits.
"""
import numpy as np

from scipy.spatial.transform import Rotation

from smpl_jax.joints import SMPL_JOINT_NAMES

# Left-side and central limits (degrees); right joints mirror them (y and z negated).
_LEFT_AND_CENTRAL = {
    "left_hip": ((-115, 25), (-35, 35), (-20, 50)),
    "left_knee": ((0, 135), (-6, 6), (-3, 3)),
    "left_ankle": ((-20, 45), (-15, 15), (-15, 15)),
    "left_foot": ((-30, 15), (0, 0), (0, 0)),
    "spine1": ((-10, 25), (-15, 15), (-12, 12)),
    "spine2": ((-10, 25), (-15, 15), (-12, 12)),
    "spine3": ((-10, 25), (-15, 15), (-12, 12)),
    "neck": ((-25, 35), (-35, 35), (-20, 20)),
    "head": ((-20, 25), (-25, 25), (-15, 15)),
    "left_collar": ((-10, 10), (-15, 10), (-10, 20)),
    "left_shoulder": ((-60, 60), (-90, 45), (-85, 70)),
    "left_elbow": ((-20, 20), (-145, 0), (-5, 5)),
    "left_wrist": ((-30, 30), (-25, 25), (-70, 70)),
    "left_hand": ((-10, 10), (-10, 10), (-20, 20)),
}


def _mirror(limits):
    (x, (y0, y1), (z0, z1)) = limits
    return (x, (-y1, -y0), (-z1, -z0))


def joint_limits():
    """[23, 3, 2] radians: (low, high) per body joint (SMPL joints 1..23) and axis-angle component."""
    table = dict(_LEFT_AND_CENTRAL)
    for name, limits in _LEFT_AND_CENTRAL.items():
        if name.startswith("left_"):
            table["right_" + name[5:]] = _mirror(limits)
    missing = [n for n in SMPL_JOINT_NAMES[1:] if n not in table]
    assert not missing, f"joint limits missing for {missing}"
    return np.deg2rad(np.asarray([table[n] for n in SMPL_JOINT_NAMES[1:]], np.float64))


JOINT_LIMITS = joint_limits()


def _pose_centre():
    centre = np.clip(0.0, JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1])
    for side, sign in (("left", 1.0), ("right", -1.0)):
        centre[SMPL_JOINT_NAMES.index(f"{side}_shoulder") - 1, 2] = -sign * np.deg2rad(45)
        centre[SMPL_JOINT_NAMES.index(f"{side}_elbow") - 1, 1] = -sign * np.deg2rad(30)
    return centre


POSE_CENTRE = _pose_centre()


def sample_body_pose(rng, num):
    """[num, 69] axis-angle body poses within JOINT_LIMITS (see the module docstring for the distribution)."""
    low, high = JOINT_LIMITS[..., 0], JOINT_LIMITS[..., 1]
    pose = np.clip(rng.normal(POSE_CENTRE, (high - low) / 5, (num,) + low.shape), low, high)
    return pose.reshape(num, 69).astype(np.float32)


def within_limits(body_pose, tol=1e-6):
    """body_pose [N, 69] -> [N] bool: every component inside its limit."""
    aa = np.asarray(body_pose).reshape(-1, 23, 3)
    return ((aa >= JOINT_LIMITS[..., 0] - tol) & (aa <= JOINT_LIMITS[..., 1] + tol)).all(axis=(1, 2))


def _axis_rotation(axis, angle):
    """[N] angles -> [N, 3, 3] rotations about a coordinate axis (0 = x, 1 = y, 2 = z)."""
    c, s = np.cos(angle), np.sin(angle)
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    R = np.tile(np.eye(3), (len(angle), 1, 1))
    R[:, i, i], R[:, i, j], R[:, j, i], R[:, j, j] = c, -s, s, c
    return R


DEFAULT_TILT_DEG = 10.0


def sample_global_orient(rng, num, tilt_deg=DEFAULT_TILT_DEG, max_heading_deg=180.0):
    """[num, 3] axis-angle orientations in camera axes (x right, y down, z forward): an upright body turned to
    a heading uniform in +-max_heading_deg (0 = facing the camera, 180 = all the way round), tilted forward/back
    and sideways by N(0, tilt_deg) each. The 180 degree turn about x takes SMPL's y-up frame to the camera's
    y-down frame, as in the SPIN/PARE annotations."""
    if not 0.0 <= max_heading_deg <= 180.0:
        raise ValueError(f"max_heading_deg must be in [0, 180], got {max_heading_deg}")
    heading = rng.uniform(-1.0, 1.0, num) * np.deg2rad(max_heading_deg)
    pitch, roll = np.deg2rad(rng.normal(0.0, tilt_deg, (2, num)))
    upright = _axis_rotation(0, np.full(num, np.pi))
    R = upright @ _axis_rotation(2, roll) @ _axis_rotation(0, pitch) @ _axis_rotation(1, heading)
    return Rotation.from_matrix(R).as_rotvec().astype(np.float32)  # numpy: no per-sample device round trip


def sample_betas(rng, num, num_betas=10, clip=2.5):
    """[num, num_betas] ~ N(0, 1) clipped to +-clip."""
    return np.clip(rng.normal(size=(num, num_betas)), -clip, clip).astype(np.float32)
