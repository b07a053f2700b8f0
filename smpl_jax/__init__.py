"""smpl_jax: the SMPL body model in pure JAX (jit, vmap, grad), smplx-compatible names.

    import smpl_jax
    body = smpl_jax.load("open")                      # the bundled openly licensed body
    body = smpl_jax.load("SMPL_NEUTRAL.pkl")          # or an official SMPL file (.pkl or .npz)
    out = body(betas=betas, body_pose=pose, global_orient=root, transl=transl)
    out.vertices, out.joints                          # [B, V, 3], [B, 24, 3]

Imports jax and numpy only.
"""
import os

import jax.numpy as jnp
import numpy as np

from smpl_jax import cameras, joints, metrics, rotations
from smpl_jax.io import ModelFileError, load_matrix, read_model_arrays
from smpl_jax.joints import SMPL_KEYPOINT_VERTEX_IDS, joint_names
from smpl_jax.model import SMPL, SMPLOutput, forward_kinematics

ASSET_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "assets")
BUNDLED = {"open": os.path.join(ASSET_DIR, "open_body.npz")}


def resolve(name_or_path):
    """'open' -> the bundled file; anything else is taken as a path."""
    if name_or_path in BUNDLED:
        path = BUNDLED[name_or_path]
        if not os.path.isfile(path):
            raise ModelFileError(f"the bundled body {name_or_path!r} is missing from {path}; reinstall the "
                                 "package or regenerate it with tools/make_open_body.py")
        return path
    return os.fspath(name_or_path)


def load(name_or_path="open", dtype=jnp.float32, num_betas=None, extra_regressor=None, h36m_regressor=None,
         keypoint_vertex_ids=None):
    """Load an SMPL-format body.

    name_or_path: 'open' (bundled), or an official SMPL .pkl (v1.0 / v1.1, read safely without chumpy) or a
    clean .npz (python -m smpl_jax.convert). dtype: float32 or float64 (needs jax_enable_x64).
    num_betas: keep the first shape components only. extra_regressor / h36m_regressor: paths of the SPIN/PARE
    regressors J_regressor_extra.npy [9, V] and J_regressor_h36m.npy [17, V] (files bundled with a body are
    used when not given). keypoint_vertex_ids: 11 vertex ids (see smpl_jax.joints.KEYPOINT_VERTEX_NAMES);
    defaults to the file's, or to SMPL's for the official 6890-vertex topology.
    """
    path = resolve(name_or_path)
    arrays = read_model_arrays(path)
    num_v = arrays["v_template"].shape[0]
    for key, value, what in (("extra_regressor", extra_regressor, "SPIN extra joint regressor"),
                             ("h36m_regressor", h36m_regressor, "H36M joint regressor")):
        if value is not None:
            arrays[key] = load_matrix(value, what, num_v)
    if keypoint_vertex_ids is not None:
        arrays["keypoint_vertex_ids"] = np.asarray(keypoint_vertex_ids, np.int32)
    elif "keypoint_vertex_ids" not in arrays and num_v == 6890:
        arrays["keypoint_vertex_ids"] = np.asarray(SMPL_KEYPOINT_VERTEX_IDS, np.int32)
    return SMPL.from_arrays(arrays, dtype=dtype, num_betas=num_betas)


__all__ = ["SMPL", "SMPLOutput", "load", "resolve", "ModelFileError", "read_model_arrays", "forward_kinematics",
           "joint_names", "cameras", "joints", "metrics", "rotations"]
