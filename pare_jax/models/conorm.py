"""OCHMR's CoNorm (Khirodkar et al., CVPR 2022, supplement listing 1): a backbone feature map modulated by the
local / global body-centre context maps (pare_jax/data/context.py).

    c      = bilinear_resize(context, X's H x W)        half-pixel sampling (PyTorch align_corners=False), no
                                                        antialiasing (F.interpolate does none)
    latent = ReLU(Conv3x3(2 -> K)(c))                   phi_latent, K = conorm_hidden (128 in the paper)
    scale  = Conv3x3(K -> C)(latent)                    phi_scale
    bias   = Conv3x3(K -> C)(latent)                    phi_bias

    "scale_bias": X' = X * scale + bias                 the supplement's form; PyTorch's default conv init
                                                        (weights and biases U(+-1/sqrt(fan_in)))
    "residual":   X' = X * (1 + scale) + bias           phi_scale and phi_bias start at zero, so X' = X at
                                                        step 0: converted PARE weights are undisturbed

Placement (config.conorm_stage, OCHMR's Table 3 varies it for ResNet): ResNet, after layer<stage> (1..4; 2 is
the paper's best: 512 channels at 28 x 28 for ResNet-50 at 224 px); HRNet, after stage <stage> (1 = after
layer1, one branch; 2..4 = after the stage's last module), one CoNorm per branch at its own resolution and
width (HRNet-W32 after stage 2: 32 and 64 channels). The blocks live in the backbone's attribute `conorm`, a
name the authors' state dicts never use, and exist only when config.conorm is on.
"""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pare_jax.models.initializers import _host_initializer, variance_scaling

FORMS = ("none", "scale_bias", "residual")
CONTEXT_CHANNELS = 2  # local, global
# PyTorch's nn.Conv2d default (kaiming_uniform with a = sqrt(5)): weights and biases U(-1/sqrt(fan_in), +).
TORCH_DEFAULT_INIT = variance_scaling(1.0 / 3.0, "fan_in", "uniform")


@dataclasses.dataclass(frozen=True)
class CoNormSpec:
    form: str          # "scale_bias" or "residual"
    stage: int         # where in the backbone (see the module docstring)
    hidden: int = 128  # K


def _torch_bias_init(fan_in):
    """PyTorch's conv bias default U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in = in_channels * kh * kw."""
    bound = 1.0 / np.sqrt(fan_in)
    return _host_initializer(lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound),
                             lambda rng, shape: rng.uniform(-bound, bound, shape))


def _conv3x3(in_ch, out_ch, zero, rngs):
    if zero:
        init = bias_init = nnx.initializers.zeros_init()
    else:
        init, bias_init = TORCH_DEFAULT_INIT, _torch_bias_init(in_ch * 9)
    return nnx.Conv(in_ch, out_ch, (3, 3), padding=((1, 1), (1, 1)), use_bias=True, kernel_init=init,
                    bias_init=bias_init, rngs=rngs)


def resize_half_pixel(x, size):
    """Bilinear resize [N, H, W, C] -> [N, h, w, C] with half-pixel centres and no antialiasing: PyTorch's
    F.interpolate(mode='bilinear', align_corners=False)."""
    n, _, _, c = x.shape
    if tuple(x.shape[1:3]) == tuple(size):
        return x
    return jax.image.resize(x, (n, size[0], size[1], c), "bilinear", antialias=False)


class CoNorm(nnx.Module):
    """One CoNorm block for a feature map of `channels` channels."""

    def __init__(self, channels, hidden, form, *, rngs):
        if form not in ("scale_bias", "residual"):
            raise ValueError(f"CoNorm form {form!r} is not 'scale_bias' or 'residual'")
        self.form = form
        self.phi_latent = _conv3x3(CONTEXT_CHANNELS, hidden, False, rngs)
        self.phi_scale = _conv3x3(hidden, channels, form == "residual", rngs)
        self.phi_bias = _conv3x3(hidden, channels, form == "residual", rngs)

    def __call__(self, x, context):
        """x [N, h, w, C], context [N, H, W, 2] (any H, W) -> X' [N, h, w, C]."""
        c = resize_half_pixel(context.astype(x.dtype), x.shape[1:3])
        latent = jax.nn.relu(self.phi_latent(c))
        scale, bias = self.phi_scale(latent), self.phi_bias(latent)
        if self.form == "residual":
            scale = 1.0 + scale
        return x * scale + bias


def check_stage(backbone_kind, stage):
    """The valid conorm_stage values: 1..4 for both backbones (see the module docstring)."""
    valid = range(1, 5)
    if not isinstance(stage, int) or isinstance(stage, bool) or stage not in valid:
        raise ValueError(f"model config: conorm_stage={stage!r} is out of range for a {backbone_kind} backbone: "
                         f"use one of {list(valid)} (after layer<stage> for ResNet, after stage <stage> for HRNet; "
                         "OCHMR's best is 2)")


def require_context(context, where="the backbone"):
    if context is None:
        raise ValueError(f"{where} has CoNorm blocks and needs context=[N, H, W, 2] local/global centre maps "
                         "(see pare_jax/data/context.py)")
    return context
