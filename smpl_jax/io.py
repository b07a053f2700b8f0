"""Reading SMPL-format model files: the official .pkl files (safely, without chumpy; see smpl_jax.pkl) and clean
.npz files, with every array checked (dtype, shape, finiteness, index ranges) before a model is built from it.
"""
import os
import tempfile

import numpy as np

from smpl_jax import pkl
from smpl_jax.pkl import ModelFileError

REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "parents", "faces")
OPTIONAL_KEYS = ("extra_regressor", "h36m_regressor", "keypoint_vertex_ids", "part_labels", "joint_names")
FLOAT_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "extra_regressor", "h36m_regressor")
INDEX_KEYS = ("faces", "keypoint_vertex_ids", "part_labels")
# Names that other SMPL-format files (official .pkl, smplx .npz) use for our keys.
_ALIASES = {"f": "faces", "kintree_table": "parents"}

__all__ = ["ModelFileError", "load_matrix", "normalize_arrays", "read_model_arrays", "write_npz_atomic"]


def _read_pkl(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    return pkl.model_values(pkl.read_pickle(raw, path), path)


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:
        raise ModelFileError(f"{path}: the .npz holds pickled objects or is corrupt ({exc}); "
                             "re-create it with python -m smpl_jax.convert") from None
    except Exception as exc:
        raise ModelFileError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from None


def _numbers(value, source, key, dtype):
    """value as a finite array of `dtype` (float64, or int64 for indices that must be whole numbers)."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, RecursionError) as exc:
        raise ModelFileError(f"{source}: key '{key}' is not an array of numbers ({type(exc).__name__})") from None
    if array.dtype.kind not in pkl.NUMERIC_KINDS or array.dtype.kind == "c":
        raise ModelFileError(f"{source}: key '{key}' holds {array.dtype} values, expected real numbers")
    if array.ndim == 0:
        raise ModelFileError(f"{source}: key '{key}' is a single number, expected an array")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ModelFileError(f"{source}: key '{key}' contains {int((~np.isfinite(array)).sum())} NaN or infinite "
                             "values; the file is corrupt")
    if dtype == np.int64 and array.dtype.kind == "f" and np.any(array != np.round(array)):
        raise ModelFileError(f"{source}: key '{key}' holds fractional values, expected indices")
    return array.astype(dtype)


def _parents_from(value, path):
    value = _numbers(value, path, "parents", np.float64)
    parents = value[0] if value.ndim == 2 else value  # kintree_table is [2, J]: parents, then joint ids
    if parents.ndim != 1 or parents.size == 0:
        raise ModelFileError(f"{path}: key 'parents' has shape {list(value.shape)}; expected [J] parents "
                             "(or a [2, J] kintree_table) with at least the root joint")
    parents = parents.astype(np.int64)
    parents[parents >= len(parents)] = -1  # the root's parent is stored as uint32 -1
    if parents[0] != -1 or any(not (0 <= p < i) for i, p in enumerate(parents[1:], start=1)):
        raise ModelFileError(f"{path}: kinematic tree is not topologically ordered (parents={parents.tolist()[:30]})")
    return parents.astype(np.int32)


def _check_shapes(arrays, path):
    for key in ("v_template", "J_regressor"):
        if arrays[key].ndim != 2:
            raise ModelFileError(f"{path}: key '{key}' has shape {list(arrays[key].shape)}, expected a matrix")
    v, j = arrays["v_template"].shape[0], arrays["J_regressor"].shape[0]
    expected = {
        "v_template": (v, 3), "shapedirs": (v, 3, None), "posedirs": (v, 3, 9 * (j - 1)),
        "J_regressor": (j, v), "weights": (v, j), "parents": (j,), "faces": (None, 3),
        "extra_regressor": (None, v), "h36m_regressor": (None, v), "keypoint_vertex_ids": (None,),
        "part_labels": (v,),
    }
    for key, shape in expected.items():
        if key not in arrays:
            continue
        got = arrays[key].shape
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
            raise ModelFileError(f"{path}: key '{key}' has shape {list(got)}, expected {want} "
                                 f"for a body with {v} vertices and {j} joints")
    for key in ("faces", "keypoint_vertex_ids"):
        ids = arrays.get(key)
        if ids is not None and ids.size and (ids.min() < 0 or ids.max() >= v):
            raise ModelFileError(f"{path}: key '{key}' indexes vertices outside [0, {v}) "
                                 f"(values {int(ids.min())} to {int(ids.max())})")


def read_model_arrays(path):
    """Read an SMPL-format file (.pkl or .npz) into a dict of clean numpy arrays with our key names.

    Returns float64 arrays for the geometry, int32 for parents and faces. Raises ModelFileError naming the file
    and the problem: missing file, unsafe or unreadable pickle, missing keys, wrong shapes, non-finite values,
    out-of-range indices.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such file. Pass the path of an SMPL model (.pkl or .npz), "
                             "or use smpl_jax.load('open') for the bundled open body.")
    reader = _read_npz if path.endswith(".npz") else _read_pkl
    return normalize_arrays(reader(path), path)


def normalize_arrays(raw, source="arrays"):
    """Map official key names (f, kintree_table) to ours, check keys, dtypes, shapes and values, fix dtypes.

    raw: dict of array-likes. source: the file name (or a description) used in error messages.
    """
    raw = {_ALIASES.get(k, k): v for k, v in raw.items()}
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ModelFileError(f"{source}: not an SMPL model file: missing key(s) {missing} "
                             f"(found {sorted(map(str, raw))[:12]})")
    arrays = {k: raw[k] for k in REQUIRED_KEYS + OPTIONAL_KEYS if raw.get(k) is not None}
    arrays["parents"] = _parents_from(arrays["parents"], source)
    for key in INDEX_KEYS:
        if key in arrays:
            ids = _numbers(arrays[key], source, key, np.int64)
            if ids.size and (ids.min() < np.iinfo(np.int32).min or ids.max() > np.iinfo(np.int32).max):
                raise ModelFileError(f"{source}: key '{key}' holds indices outside the int32 range")
            arrays[key] = ids.astype(np.int32)
    for key in FLOAT_KEYS:
        if key in arrays:
            arrays[key] = _numbers(arrays[key], source, key, np.float64)
    if "joint_names" in arrays:
        arrays["joint_names"] = np.asarray(arrays["joint_names"]).astype(str)
    _check_shapes(arrays, source)
    return arrays


def write_npz_atomic(path, arrays):
    """Write arrays to `path` via a temporary file and a rename, so a crash never leaves half a file."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_matrix(path, name, num_vertices):
    """Load a [K, V] vertex regressor (.npy or .npz with one array) such as J_regressor_extra.npy."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such file (the {name}).")
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                if len(data.files) != 1:
                    raise ModelFileError(f"{path}: expected one array for the {name}, found {data.files}")
                data = data[data.files[0]]
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(f"{path}: cannot read the {name} ({type(exc).__name__}: {exc})") from None
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != num_vertices:
        raise ModelFileError(f"{path}: the {name} has shape {list(data.shape)}, expected [K, {num_vertices}]")
    return data
