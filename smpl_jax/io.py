"""Reading SMPL-format model files: the official .pkl files (safely, without chumpy) and clean .npz files.

The official SMPL .pkl files are Python 2 pickles holding numpy arrays, chumpy arrays and a scipy sparse
matrix. Unpickling runs whatever callables the file names, so a .pkl from the internet could run code. We never
use pickle's default class lookup: `_SafeUnpickler` knows the handful of globals such files need and maps the
chumpy and scipy classes to inert stand-ins that only collect their state; any other global is refused.
"""
import io
import os
import pickle
import tempfile

import numpy as np

REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "parents", "faces")
OPTIONAL_KEYS = ("extra_regressor", "h36m_regressor", "keypoint_vertex_ids", "part_labels", "joint_names")
# Names that other SMPL-format files (official .pkl, smplx .npz) use for our keys.
_ALIASES = {"f": "faces", "kintree_table": "parents"}


class ModelFileError(ValueError):
    """A model file is missing, unreadable, unsafe or not an SMPL-format body."""


class _StateHolder:
    """Inert stand-in for a chumpy or scipy object: keeps the pickled state and nothing else."""

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):  # never re-pickle a stand-in as if it were the real class
        raise TypeError("stand-in objects from SMPL files cannot be pickled")


class _Chumpy(_StateHolder):
    kind = "chumpy"


class _SparseMatrix(_StateHolder):
    kind = "sparse"


def _reconstructor(cls, base, state):
    """Safe replacement for copyreg._reconstructor: only ever builds our stand-ins."""
    if not (isinstance(cls, type) and issubclass(cls, _StateHolder)) or base is not object:
        raise pickle.UnpicklingError(f"refused to construct {cls!r}")
    return object.__new__(cls)


def _latin1_encode(text, encoding="latin1"):
    """Python 3 writes bytes in protocol-2 pickles as _codecs.encode(text, 'latin1'); allow only that."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused _codecs.encode with unexpected arguments")
    return text.encode("latin1")


def _allowed_globals():
    from numpy._core import multiarray  # numpy >= 2; the files name the old numpy.core path

    allowed = {
        ("copy_reg", "_reconstructor"): _reconstructor,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("__builtin__", "object"): object,
        ("builtins", "object"): object,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Plain containers that chumpy objects keep in their state; building them runs no user code.
    for mod in ("__builtin__", "builtins"):
        for kind in (set, frozenset, slice):
            allowed[(mod, kind.__name__)] = kind
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = multiarray._reconstruct
        allowed[(mod, "scalar")] = multiarray.scalar
    for mod in ("chumpy.ch", "chumpy.reordering", "chumpy.ch_ops", "chumpy"):
        for name in ("Ch", "Select", "Reshape", "Transpose", "Concatenate", "Permute"):
            allowed[(mod, name)] = _Chumpy
    for mod in ("scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr"):
        for name in ("csc_matrix", "csr_matrix"):
            allowed[(mod, name)] = _SparseMatrix
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, path):
        super().__init__(file, encoding="latin1")
        self._path = path
        self._allowed = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise ModelFileError(
                f"{self._path}: refused to load '{module}.{name}'. SMPL model files only contain numpy arrays, "
                "chumpy arrays and scipy sparse matrices, so this file is either not an SMPL model or has been "
                "tampered with; loading it could run arbitrary code. Use the official file from the SMPL "
                "website, or a clean .npz (python -m smpl_jax.convert)."
            ) from None

    def persistent_load(self, pid):
        raise ModelFileError(f"{self._path}: persistent ids are not used by SMPL files; refusing to load")


def _to_array(value, path, key):
    """Turn a loaded value (ndarray, chumpy stand-in, sparse stand-in) into a dense numpy array."""
    if isinstance(value, _Chumpy):
        state = value.state if isinstance(value.state, dict) else {}
        if "x" not in state:
            raise ModelFileError(f"{path}: key '{key}' is a derived chumpy expression, not stored values")
        return _to_array(state["x"], path, key)
    if isinstance(value, _SparseMatrix):
        return _sparse_to_dense(value.state, path, key)
    if isinstance(value, np.ndarray):
        return value
    return np.asarray(value)


def _sparse_to_dense(state, path, key):
    try:
        data, indices, indptr = (np.asarray(state[k]) for k in ("data", "indices", "indptr"))
        shape = tuple(int(s) for s in state.get("_shape", state.get("shape")))
        fmt = state.get("format", "csc")
    except (KeyError, TypeError) as exc:
        raise ModelFileError(f"{path}: key '{key}' is a malformed sparse matrix ({exc})") from None
    compressed, other = (shape[1], shape[0]) if fmt == "csc" else shape
    if len(indptr) != compressed + 1 or indptr[-1] != len(data) or (len(indices) and indices.max() >= other):
        raise ModelFileError(f"{path}: key '{key}' is a malformed sparse matrix (inconsistent index arrays)")
    dense = np.zeros((compressed, other), dtype=data.dtype)
    rows = np.repeat(np.arange(compressed), np.diff(indptr))
    np.add.at(dense, (rows, indices), data)
    return dense.T if fmt == "csc" else dense


def _read_pkl(path):
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), path).load()
    except ModelFileError:
        raise
    except Exception as exc:  # truncated or garbage bytes
        raise ModelFileError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: expected a dict of model arrays, found {type(obj).__name__}")
    return {k: _to_array(v, path, k) for k, v in obj.items()
            if isinstance(v, (np.ndarray, _StateHolder, list, tuple, int, float))}


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except ValueError as exc:
        raise ModelFileError(f"{path}: the .npz holds pickled objects or is corrupt ({exc}); "
                             "re-create it with python -m smpl_jax.convert") from None
    except Exception as exc:
        raise ModelFileError(f"{path}: not a readable .npz ({type(exc).__name__}: {exc})") from None


def _parents_from(value, path):
    value = np.asarray(value)
    parents = value[0] if value.ndim == 2 else value  # kintree_table is [2, J]: parents, then joint ids
    parents = parents.astype(np.int64)
    parents[parents >= len(parents)] = -1  # the root's parent is stored as uint32 -1
    if parents[0] != -1 or any(not (0 <= p < i) for i, p in enumerate(parents[1:], start=1)):
        raise ModelFileError(f"{path}: kinematic tree is not topologically ordered (parents={parents.tolist()})")
    return parents.astype(np.int32)


def _check_shapes(arrays, path):
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
    faces = arrays["faces"]
    if faces.size and (faces.min() < 0 or faces.max() >= v):
        raise ModelFileError(f"{path}: key 'faces' indexes vertices outside [0, {v})")


def read_model_arrays(path):
    """Read an SMPL-format file (.pkl or .npz) into a dict of clean numpy arrays with our key names.

    Returns float64 arrays for the geometry, int32 for parents and faces. Raises ModelFileError naming the file
    and the problem: missing file, unsafe or unreadable pickle, missing keys, wrong shapes.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ModelFileError(f"{path}: no such file. Pass the path of an SMPL model (.pkl or .npz), "
                             "or use smpl_jax.load('open') for the bundled open body.")
    reader = _read_npz if path.endswith(".npz") else _read_pkl
    return normalize_arrays(reader(path), path)


def normalize_arrays(raw, source="arrays"):
    """Map official key names (f, kintree_table) to ours, check keys and shapes, fix dtypes.

    raw: dict of array-likes. source: the file name (or a description) used in error messages.
    """
    raw = {_ALIASES.get(k, k): v for k, v in raw.items()}
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise ModelFileError(f"{source}: not an SMPL model file: missing key(s) {missing} "
                             f"(found {sorted(raw)[:12]})")
    arrays = {k: raw[k] for k in REQUIRED_KEYS + OPTIONAL_KEYS if raw.get(k) is not None}
    arrays["parents"] = _parents_from(arrays["parents"], source)
    for key in ("faces", "keypoint_vertex_ids", "part_labels"):
        if key in arrays:
            arrays[key] = np.asarray(arrays[key]).astype(np.int32)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "extra_regressor",
                "h36m_regressor"):
        if key in arrays:
            arrays[key] = np.asarray(arrays[key], dtype=np.float64)
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
