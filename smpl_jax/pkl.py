"""Reading the official SMPL .pkl files without running code from them and without trusting their bytes.

The official SMPL .pkl files are Python 2 pickles holding numpy arrays, chumpy arrays and a scipy sparse
matrix. Unpickling runs whatever callables the file names, so a .pkl from the internet could run code. We never
use pickle's default class lookup: `_SafeUnpickler` knows the handful of globals such files need and maps every
one of them (numpy arrays and dtypes included) to inert stand-ins that only collect their arguments and state;
any other global is refused. Arrays are built afterwards by `as_array`, from the recorded bytes and a dtype
rebuilt from its type string alone: numpy's own unpickling would honour a crafted dtype state (an object dtype
whose flags deny that it holds objects makes numpy read the data bytes as pointers and crash), so only numeric
and boolean dtypes (kinds b, i, u, f, c) are ever created.
"""
import io
import pickle

import numpy as np

NUMERIC_KINDS = "biufc"
# An SMPL file's largest dense array is posedirs [6890, 3, 207] (4.3 million values); a sparse matrix that
# claims vastly more would only exhaust memory when densified.
MAX_DENSE_VALUES = 10 ** 8
# How many chumpy wrappers may stand between a key and its values (real files: one).
MAX_CHUMPY_DEPTH = 8


class ModelFileError(ValueError):
    """A model file is missing, unreadable, unsafe or not an SMPL-format body."""


class _StateHolder:
    """Inert stand-in for a pickled object: keeps the constructor arguments and the pickled state, nothing else."""
    args = ()
    state = None

    def __setstate__(self, state):
        self.state = state

    def __reduce__(self):  # never re-pickle a stand-in as if it were the real class
        raise TypeError("stand-in objects from SMPL files cannot be pickled")


class _Chumpy(_StateHolder):
    kind = "chumpy"


class _SparseMatrix(_StateHolder):
    kind = "sparse"


class _ArraySpec(_StateHolder):
    """numpy.ndarray as pickled: state (version, shape, dtype, is_fortran, data)."""


class _DtypeSpec(_StateHolder):
    """numpy.dtype as pickled: args (type string, align, copy), state (version, byteorder, subarray, names,
    fields, elsize, alignment, flags)."""


def _reconstructor(cls, base, state):
    """Safe replacement for copyreg._reconstructor: only ever builds our stand-ins."""
    if not (isinstance(cls, type) and issubclass(cls, _StateHolder)) or base is not object:
        raise pickle.UnpicklingError(f"refused to construct {cls!r}")
    return object.__new__(cls)


def _array_reconstruct(cls, shape, typecode):
    """numpy.core.multiarray._reconstruct(ndarray, (0,), b'b'): the empty array that BUILD then fills."""
    if cls is not _ArraySpec:
        raise pickle.UnpicklingError(f"refused to reconstruct {cls!r} as an array")
    return _ArraySpec()


def _dtype(*args):
    spec = _DtypeSpec()
    spec.args = args
    return spec


def _scalar(dtype_spec, data=b""):
    """numpy.core.multiarray.scalar(dtype, bytes): a numpy scalar, e.g. a float64 stored in a chumpy state."""
    array = _ArraySpec()
    array.state = (1, (), dtype_spec, False, data)
    return array


def _latin1_encode(text, encoding="latin1"):
    """Python 3 writes bytes in protocol-2 pickles as _codecs.encode(text, 'latin1'); allow only that."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refused _codecs.encode with unexpected arguments")
    return text.encode("latin1")


def _empty_bytes(*args):
    """Protocol-2 pickles write b'' (the data of an empty array) as bytes(); allow only that call."""
    if args:
        raise pickle.UnpicklingError("refused bytes() with arguments")
    return b""


def _allowed_globals():
    allowed = {
        ("__builtin__", "bytes"): _empty_bytes,
        ("builtins", "bytes"): _empty_bytes,
        ("copy_reg", "_reconstructor"): _reconstructor,
        ("copyreg", "_reconstructor"): _reconstructor,
        ("__builtin__", "object"): object,
        ("builtins", "object"): object,
        ("numpy", "ndarray"): _ArraySpec,
        ("numpy", "dtype"): _dtype,
        ("_codecs", "encode"): _latin1_encode,
    }
    # Plain containers that chumpy objects keep in their state; building them runs no user code.
    for mod in ("__builtin__", "builtins"):
        for kind in (set, frozenset, slice):
            allowed[(mod, kind.__name__)] = kind
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(mod, "_reconstruct")] = _array_reconstruct
        allowed[(mod, "scalar")] = _scalar
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


def read_pickle(raw, path):
    """Unpickle the bytes of an SMPL .pkl into a dict {key: value} with stand-ins for arrays and objects
    (convert values with `as_array`)."""
    try:
        obj = _SafeUnpickler(io.BytesIO(raw), path).load()
    except ModelFileError:
        raise
    except Exception as exc:  # truncated or garbage bytes, a stand-in fed the wrong arguments, deep nesting
        raise ModelFileError(f"{path}: not a readable pickle ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise ModelFileError(f"{path}: expected a dict of model arrays, found {type(obj).__name__}")
    return obj


def _numeric_dtype(spec, where):
    """The dtype a _DtypeSpec describes, rebuilt from its type string; anything but a plain numeric or boolean
    dtype (object, structured, strings, subarrays) is refused."""
    if not isinstance(spec, _DtypeSpec) or not spec.args or not isinstance(spec.args[0], str):
        raise ModelFileError(f"{where} has a malformed dtype")
    try:
        dtype = np.dtype(spec.args[0])
    except TypeError:
        raise ModelFileError(f"{where} has an unknown dtype {spec.args[0]!r}") from None
    state = spec.state if isinstance(spec.state, tuple) else ()
    if dtype.kind not in NUMERIC_KINDS or any(part is not None for part in state[2:5]):
        raise ModelFileError(f"{where} has dtype {spec.args[0]!r} (kind {dtype.kind!r}); SMPL files hold only "
                             "numeric and boolean arrays, so the file is corrupt or crafted")
    if len(state) > 1 and state[1] in ("<", ">"):
        dtype = dtype.newbyteorder(state[1])
    return dtype


def _array_from_spec(spec, where):
    state = spec.state
    if isinstance(state, tuple) and len(state) == 4:  # version-0 layout without the version number
        state = (0,) + state
    if not (isinstance(state, tuple) and len(state) == 5):
        raise ModelFileError(f"{where} is a malformed numpy array")
    _, shape, dtype_spec, fortran, data = state
    dtype = _numeric_dtype(dtype_spec, where)
    if isinstance(data, str):  # Python 2 pickles store the bytes as a str, read back as latin-1
        data = data.encode("latin1")
    try:
        shape = tuple(int(n) for n in shape)
    except (TypeError, ValueError):
        raise ModelFileError(f"{where} is a numpy array with a malformed shape") from None
    if not isinstance(data, bytes) or min(shape, default=0) < 0 or \
            len(data) != int(np.prod(shape, dtype=object)) * dtype.itemsize:
        raise ModelFileError(f"{where} is a numpy array whose data does not match its shape {list(shape)} "
                             f"and dtype {dtype}")
    return np.frombuffer(data, dtype).reshape(shape, order="F" if fortran else "C").copy()


def as_array(value, path, key):
    """A loaded value (array stand-in, chumpy stand-in, sparse stand-in, number or list) -> a numeric (or, from
    a list of strings, unicode) numpy array. Raises ModelFileError naming the key."""
    where = f"{path}: key '{key}'"
    for _ in range(MAX_CHUMPY_DEPTH):
        if not isinstance(value, _Chumpy):
            break
        state = value.state if isinstance(value.state, dict) else {}
        if "x" not in state:
            raise ModelFileError(f"{where} is a derived chumpy expression, not stored values")
        value = state["x"]
    else:
        raise ModelFileError(f"{where} nests chumpy objects more than {MAX_CHUMPY_DEPTH} deep (or refers to "
                             "itself); the file is corrupt or crafted")
    if isinstance(value, _ArraySpec):
        return _array_from_spec(value, where)
    if isinstance(value, _SparseMatrix):
        return _sparse_to_dense(value.state, where)
    if isinstance(value, _StateHolder):
        raise ModelFileError(f"{where} holds a {type(value).__name__.strip('_')} where values were expected")
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, RecursionError) as exc:  # ragged or absurdly deep lists
        raise ModelFileError(f"{where} is not an array of numbers ({type(exc).__name__}: {exc})"[:300]) from None
    if array.dtype.kind not in NUMERIC_KINDS + "U":
        raise ModelFileError(f"{where} is not an array of numbers (it holds {array.dtype} values)")
    return array


def _sparse_to_dense(state, where):
    """A csc / csr matrix from its pickled state, checked before anything is allocated."""
    try:
        data, indices, indptr = (as_array(state[k], where, k) for k in ("data", "indices", "indptr"))
        shape = tuple(int(s) for s in state.get("_shape", state.get("shape")))
        fmt = state.get("format", "csc")
        compressed, other = (shape[1], shape[0]) if fmt == "csc" else shape
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ModelFileError(f"{where} is a malformed sparse matrix ({type(exc).__name__}: {exc})") from None
    if compressed < 0 or other < 0 or compressed * other > MAX_DENSE_VALUES:
        raise ModelFileError(f"{where} is a sparse matrix of shape {list(shape)}, more than the "
                             f"{MAX_DENSE_VALUES:.0e} values any SMPL matrix has; the file is corrupt or crafted")
    integral = all(a.dtype.kind in "iu" and a.ndim == 1 for a in (indices, indptr))
    if (not integral or data.ndim != 1 or data.dtype.kind not in NUMERIC_KINDS or len(indptr) != compressed + 1
            or len(indices) != len(data) or (len(indptr) and (indptr[0] != 0 or indptr[-1] != len(data)))
            or np.any(np.diff(indptr) < 0) or (len(indices) and (indices.min() < 0 or indices.max() >= other))):
        raise ModelFileError(f"{where} is a malformed sparse matrix (inconsistent index arrays)")
    dense = np.zeros((compressed, other), dtype=data.dtype)
    rows = np.repeat(np.arange(compressed), np.diff(indptr))
    np.add.at(dense, (rows, indices), data)
    return dense.T if fmt == "csc" else dense


def model_values(obj, path):
    """{key: array} of the values of an unpickled SMPL dict that can be arrays (other entries, e.g. the
    training metadata dicts of the official files, are skipped)."""
    kinds = (_StateHolder, list, tuple, int, float, np.ndarray)
    return {k: as_array(v, path, k) for k, v in obj.items() if isinstance(k, str) and isinstance(v, kinds)}
