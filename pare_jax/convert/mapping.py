"""Which PyTorch tensor fills which Flax variable, and how its layout changes on the way.

The mapping is derived from the Flax model itself (an abstract one from jax.eval_shape is enough): every
variable's module path becomes a torch name by a few readable rules, and the module type decides the layout:

    nnx.Conv            kernel [kh, kw, in, out]  <- weight [out, in, kh, kw] (OIHW -> HWIO); bias
    TransposedConv      kernel [kh, kw, in, out]  <- weight [in, out, kh, kw], spatially flipped (see layers)
    nnx.BatchNorm       scale, bias, mean, var    <- weight, bias, running_mean, running_var
    nnx.Linear          kernel [in, out]          <- weight [out, in]; bias
    PerJointLinear      weight [J, C, O]          <- weight [1, O, C, J, 1, 1]
    Buffer              same name, same layout (temperature, init_pose, init_shape, init_cam)

Path rules: a ConvBN's conv / bn are the torch Sequential's 0 / 1; the head's k-th *_deconv_layers block is
torch 3k / 3k+1 (conv, BN, ReLU per block); HRNet's k-th upsample_stage block is 4k+1 / 4k+2 (Upsample, conv,
BN, ReLU). num_batches_tracked has no Flax counterpart and is ignored.
"""
import dataclasses
import re
from typing import Callable

import numpy as np
from flax import nnx

from pare_jax.models.layers import Buffer, PerJointLinear, TransposedConv


WEIGHT_VARIABLES = nnx.Any(nnx.Param, nnx.BatchStat, Buffer)  # what checkpoints carry (not RNG state)


@dataclasses.dataclass(frozen=True)
class Entry:
    flax_path: tuple        # path of the variable in nnx.state(model)
    torch_shape: tuple      # shape the torch tensor must have
    to_flax: Callable       # numpy torch-layout array -> numpy flax-layout array


def _identity(x):
    return x


_LAYOUTS = {
    # module type: {flax variable: (torch variable, flax shape -> torch shape, torch array -> flax array)}
    nnx.Conv: {"kernel": ("weight", lambda s: (s[3], s[2], s[0], s[1]), lambda w: w.transpose(2, 3, 1, 0)),
               "bias": ("bias", tuple, _identity)},
    TransposedConv: {"kernel": ("weight", lambda s: (s[2], s[3], s[0], s[1]),
                                lambda w: w.transpose(2, 3, 0, 1)[::-1, ::-1])},
    nnx.BatchNorm: {"scale": ("weight", tuple, _identity), "bias": ("bias", tuple, _identity),
                    "mean": ("running_mean", tuple, _identity), "var": ("running_var", tuple, _identity)},
    nnx.Linear: {"kernel": ("weight", lambda s: (s[1], s[0]), lambda w: w.T), "bias": ("bias", tuple, _identity)},
    PerJointLinear: {"weight": ("weight", lambda s: (1, s[2], s[1], s[0], 1, 1),
                                lambda w: w[0, :, :, :, 0, 0].transpose(2, 1, 0))},
}

_PATH_RULES = (
    (re.compile(r"(_deconv_layers)\.(\d+)\.(conv|bn)$"),
     lambda m: f"{m[1]}.{3 * int(m[2]) + (m[3] == 'bn')}"),
    (re.compile(r"(upsample_stage_\d+)\.(\d+)\.(conv|bn)$"),
     lambda m: f"{m[1]}.{4 * int(m[2]) + 1 + (m[3] == 'bn')}"),
    (re.compile(r"\.conv$"), lambda m: ".0"),
    (re.compile(r"\.bn$"), lambda m: ".1"),
)


def torch_module_name(module_path):
    """('backbone', 'layer1', 0, 'downsample', 'conv') -> 'backbone.layer1.0.downsample.0'."""
    name = ".".join(str(p) for p in module_path)
    for pattern, replace in _PATH_RULES:
        name, count = pattern.subn(replace, name)
        if count:
            break
    return name


def torch_mapping(model):
    """{torch state-dict key (no 'model.' prefix): Entry} for every Param, BatchStat and Buffer of the model
    (concrete or abstract). Variables of other kinds (dropout RNG state) have no torch counterpart."""
    modules = dict(nnx.iter_modules(model))
    mapping = {}
    for path, variable in nnx.to_flat_state(nnx.state(model, WEIGHT_VARIABLES)):
        module_path, name = path[:-1], path[-1]
        module = modules[module_path]
        shape = tuple(variable.shape)
        if isinstance(variable, Buffer):
            torch_name, shape_fn, to_flax = name, tuple, _identity
        else:
            layout = next((v for k, v in _LAYOUTS.items() if isinstance(module, k)), None)
            if layout is None or name not in layout:
                raise TypeError(f"no torch layout for {type(module).__name__}.{name} at {path}; add it to "
                                "pare_jax.convert.mapping._LAYOUTS")
            torch_name, shape_fn, to_flax = layout[name]
        prefix = torch_module_name(module_path)
        key = f"{prefix}.{torch_name}" if prefix else torch_name
        if key in mapping:
            raise AssertionError(f"two Flax variables map to {key}: {mapping[key].flax_path} and {path}")
        mapping[key] = Entry(path, tuple(shape_fn(shape)), to_flax)
    return mapping


def is_ignored_torch_key(key):
    """Torch bookkeeping with no Flax counterpart."""
    return key.endswith("num_batches_tracked")


def to_flax_array(entry, key, value):
    """Check the torch tensor's shape and return it in Flax layout (contiguous float32 / int copy)."""
    value = np.asarray(value)
    if tuple(value.shape) != entry.torch_shape:
        raise ValueError(f"{key}: checkpoint shape {tuple(value.shape)}, model expects {entry.torch_shape} "
                         f"(for {'/'.join(map(str, entry.flax_path))}); is the model config the checkpoint's?")
    if np.issubdtype(value.dtype, np.floating) or value.dtype.name == "bfloat16":
        value = value.astype(np.float32)
    return np.array(entry.to_flax(value), order="C")  # ascontiguousarray would make 0-d arrays 1-d
