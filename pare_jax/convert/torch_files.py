"""Read PyTorch checkpoint files from users without running code from them.

A .pth / .ckpt is a pickle, and unpickling can call any importable function. We first ask torch itself with
weights_only=True (tensors and plain containers only). A PyTorch Lightning .ckpt usually also stores
hyper-parameters, callbacks or optimizer objects that weights_only refuses; for those we read the zip archive
with our own restricted unpickler: tensors are rebuilt from the raw storages with numpy, plain containers are
kept, and every other global (any class or function the pickle names, e.g. os.system) becomes an inert
Placeholder that records its arguments. No module named by the file is ever imported and nothing it names is
ever called.
"""
import collections
import io
import os
import pickle
import zipfile

import numpy as np


class CheckpointFileError(ValueError):
    """A checkpoint file is missing, unreadable, unsafe or not a state dict; the message names the file."""


# The largest tensor of the authors' models has about 2.4 million values; a crafted size/stride pair that claims
# vastly more (a zero stride repeats one stored value) would only exhaust memory when copied out.
MAX_TENSOR_VALUES = 10 ** 8


class Placeholder:
    """Stands in for a global the restricted unpickler refuses: absorbs construction arguments, state and items,
    and does nothing else. Each refused name gets its own subclass so the record says what was refused."""
    qualified_name = "?"

    def __new__(cls, *args, **kwargs):  # pickle's NEWOBJ calls cls.__new__(cls, *args) and skips __init__
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        self.__dict__["args"] = args

    def __setstate__(self, state):
        self.__dict__["state"] = state

    def __setitem__(self, key, value):
        self.__dict__.setdefault("items", []).append((key, value))

    def append(self, value):
        self.__dict__.setdefault("items", []).append(value)

    def extend(self, values):
        self.__dict__.setdefault("items", []).extend(values)

    def __repr__(self):
        return f"Placeholder({self.qualified_name})"


def _placeholder_class(qualified_name):
    return type("Placeholder", (Placeholder,), {"qualified_name": qualified_name})


_STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_, "BFloat16Storage": "bfloat16",
}


def _numpy_dtype(storage_name):
    dtype = _STORAGE_DTYPES.get(storage_name)
    if dtype is None:
        raise CheckpointFileError(f"unsupported tensor storage {storage_name} in the checkpoint")
    if dtype == "bfloat16":
        import ml_dtypes  # installed with jax
        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def _rebuild_tensor(storage, offset, size, stride, *unused):
    """torch._utils._rebuild_tensor_v2 with numpy: a strided view of the flat storage, copied. The view is
    bounds-checked first: as_strided would otherwise read whatever memory a crafted file points it at."""
    if not isinstance(storage, np.ndarray):
        raise CheckpointFileError("malformed checkpoint: a tensor without a storage")
    try:
        offset, size, stride = int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    except (TypeError, ValueError):
        raise CheckpointFileError("malformed checkpoint: a tensor with a non-integer offset, size or stride") from None
    if offset < 0 or len(size) != len(stride) or min(size + stride, default=0) < 0:
        raise CheckpointFileError(f"malformed checkpoint: tensor offset {offset}, size {size}, stride {stride}")
    numel = int(np.prod(size, dtype=object))
    if numel > MAX_TENSOR_VALUES:
        raise CheckpointFileError(f"malformed checkpoint: a tensor of size {size} ({numel:.1e} values)")
    if numel == 0:
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise CheckpointFileError(f"malformed checkpoint: tensor of size {size} runs past its storage")
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=tuple(s * itemsize for s in stride))
    return np.array(view)


def _rebuild_parameter(data, *unused):
    return data


_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, archive, prefix):
        super().__init__(file)
        self.archive, self.prefix = archive, prefix
        self.refused = set()
        self._storages = {}

    def find_class(self, module, name):
        if (module, name) in _SAFE_GLOBALS:
            return _SAFE_GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return name  # a storage type, resolved in persistent_load
        self.refused.add(f"{module}.{name}")
        return _placeholder_class(f"{module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], str)
                and isinstance(pid[2], str) and isinstance(pid[4], int) and pid[4] >= 0):
            raise CheckpointFileError(f"unexpected persistent id {str(pid)[:100]} in the checkpoint")
        _, storage_name, key, _location, numel = pid
        if key not in self._storages:
            dtype = _numpy_dtype(storage_name)
            name = f"{self.prefix}data/{key}"
            if name not in self.archive.namelist():
                raise CheckpointFileError(f"the checkpoint archive lacks the tensor storage {name}")
            raw = self.archive.read(name)
            if len(raw) < numel * dtype.itemsize:
                raise CheckpointFileError(f"the tensor storage {name} holds {len(raw)} bytes, fewer than its "
                                          f"{numel} values need (a truncated or corrupt file)")
            self._storages[key] = np.frombuffer(raw, dtype=dtype, count=numel)
        return self._storages[key]


def restricted_load(path):
    """Unpickle a zip-format torch file with the restricted unpickler. Returns (object, refused global names)."""
    if not zipfile.is_zipfile(path):
        raise CheckpointFileError(f"{path}: torch.load(weights_only=True) refused it and it is not a zip-format "
                                  "torch file, so it cannot be read safely; re-save its state_dict with a recent "
                                  "torch (torch.save(ckpt['state_dict'], 'weights.pth')) in a trusted environment")
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl")]
        if len(pickles) != 1:
            raise CheckpointFileError(f"{path}: expected one data.pkl in the archive, found {pickles}")
        prefix = pickles[0][:-len("data.pkl")]
        byteorder = f"{prefix}byteorder"
        if byteorder in archive.namelist() and archive.read(byteorder).strip() != b"little":
            raise CheckpointFileError(f"{path}: big-endian checkpoints are not supported")
        unpickler = _RestrictedUnpickler(io.BytesIO(archive.read(pickles[0])), archive, prefix)
        try:
            return unpickler.load(), sorted(unpickler.refused)
        except CheckpointFileError as exc:
            raise CheckpointFileError(f"{path}: {exc}") from None
        except Exception as exc:  # truncated or garbage bytes, a rebuild function fed the wrong arguments
            raise CheckpointFileError(f"{path}: not a readable torch checkpoint ({type(exc).__name__}: "
                                      f"{str(exc)[:200]})") from None


def _to_numpy(value):
    if hasattr(value, "detach"):  # a torch tensor from torch.load
        import torch
        tensor = value.detach().cpu()
        return tensor.float().numpy() if tensor.dtype == torch.bfloat16 else tensor.numpy()
    return value


def load_state_dict(path):
    """{name: numpy array} from a bare state dict (.pth) or a Lightning .ckpt (its 'state_dict'), loaded safely.

    Needs torch for the first attempt (weights_only=True); falls back to the restricted unpickler.
    """
    if not os.path.isfile(path):
        raise CheckpointFileError(f"{path}: no such file; pass the path of the authors' .ckpt or a state-dict .pth")
    if os.path.getsize(path) == 0:
        raise CheckpointFileError(f"{path}: the file is empty (an interrupted download?)")
    try:
        import torch  # only the converter needs torch
    except ImportError:
        raise CheckpointFileError("reading PyTorch checkpoints needs torch: pip install torch==2.13.0") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # weights_only refused a global (hyper-parameters, callbacks, ...)
        obj, refused = restricted_load(path)
        print(f"{path}: holds objects besides tensors, read with the restricted unpickler; inert placeholders "
              f"for: {', '.join(refused) or 'nothing'}")
    except Exception as exc:  # text, truncated archives, zips that are not torch files: torch's own errors
        first_line = (str(exc).splitlines() or ["unreadable"])[0][:200]
        raise CheckpointFileError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__}: {first_line}); "
                                  "pass the authors' .ckpt or a state dict saved with torch.save") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        raise CheckpointFileError(f"{path}: expected a state dict or a Lightning checkpoint with 'state_dict', "
                                  f"got {type(obj).__name__}")
    state = {k: _to_numpy(v) for k, v in obj.items()}
    bad = sorted(k for k, v in state.items() if not isinstance(v, np.ndarray))
    if bad:
        raise CheckpointFileError(f"{path}: state-dict entries that are not tensors: {bad[:10]}")
    return state
