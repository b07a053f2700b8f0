"""Building blocks shared by the backbones and heads. Layout: NHWC activations, HWIO kernels.

BatchNorm follows PyTorch's numerics (momentum 0.1 there == 0.9 here, epsilon 1e-5) so that converted
checkpoints give the authors' outputs. Under jit over a device mesh the batch statistics are computed over the
global batch (synchronised BN), unlike the authors' per-GPU BN.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pare_jax.models.initializers import HE_NORMAL, variance_scaling

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


class Buffer(nnx.Variable):
    """A constant carried with the weights (e.g. the mean SMPL parameters), never trained."""


class BatchNorm(nnx.BatchNorm):
    """nnx.BatchNorm with PyTorch's running-variance update (unbiased batch variance; normalisation uses the
    biased one) and statistics in float32.

    The running statistics are replaced with Variable.set_value(new): flax's `var[...] = new` asks the traced
    value for its sharding, and on a tracer jax answers with an error message that scans the whole trace, which
    made tracing HRNet-W32 in training mode quadratic (minutes) in this jax / flax version.
    """

    def __call__(self, x, use_running_average=None, *, mask=None):
        if mask is not None:
            raise NotImplementedError("masked batch statistics are not supported")
        running = self.use_running_average if use_running_average is None else use_running_average
        axes = tuple(range(x.ndim - 1))
        if running:
            mean, var = self.mean[...], self.var[...]
        else:
            xf = x.astype(jnp.float32)
            mean, var = xf.mean(axis=axes), xf.var(axis=axes)
            count = x.size // x.shape[-1]
            unbiased = var * (count / max(count - 1, 1))
            m = self.momentum
            self.mean.set_value(m * self.mean[...] + (1.0 - m) * mean)
            self.var.set_value(m * self.var[...] + (1.0 - m) * unbiased)
        gain = self.scale[...] * jax.lax.rsqrt(var + self.epsilon)
        shift = self.bias[...] - mean * gain
        return x * gain.astype(x.dtype) + shift.astype(x.dtype)


def block_output(x):
    """Materialise a residual block's output: XLA may not fuse elementwise work across this point.

    In HRNet the identity shortcuts make each branch one long elementwise chain (relu(bn(conv) + x) repeated
    through all stages). Without a boundary, XLA:CPU fused that whole chain into the transposes the backward
    convolutions need, recomputing it from every earlier convolution's output in each of them: quadratic in
    depth, 94% of the HRNet-W32 training step's op time (benchmarks/profile_train_step.py). Forward values
    are unchanged; the barrier only fixes where buffers are written."""
    return jax.lax.optimization_barrier(x)


def batch_norm(num_features, rngs):
    return BatchNorm(num_features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)


def conv(in_ch, out_ch, kernel, stride=1, *, bias=False, rngs, init=None):
    """A PyTorch-style convolution: symmetric padding kernel // 2 (SAME would pad stride-2 convs unevenly)."""
    pad = kernel // 2
    return nnx.Conv(in_ch, out_ch, (kernel, kernel), (stride, stride), padding=((pad, pad), (pad, pad)),
                    use_bias=bias, kernel_init=init or HE_NORMAL, rngs=rngs)


class ConvBN(nnx.Module):
    """conv -> BatchNorm -> optional ReLU; the authors' nn.Sequential(conv, bn[, relu]) (torch indices 0, 1)."""
    bn_pairs = (("conv", "bn"),)  # (conv, BatchNorm that follows it), for fold_batch_norm

    def __init__(self, in_ch, out_ch, kernel, stride=1, *, relu=True, rngs, init=None):
        self.conv = conv(in_ch, out_ch, kernel, stride, rngs=rngs, init=init)
        self.bn = batch_norm(out_ch, rngs)
        self.relu = relu

    def __call__(self, x):
        x = self.bn(self.conv(x))
        return jax.nn.relu(x) if self.relu else x


class TransposedConv(nnx.Module):
    """PyTorch's ConvTranspose2d(stride, padding, no bias) as the equivalent dilated convolution.

    A transposed convolution equals a convolution of the input dilated by `stride` (zeros between pixels), padded
    by kernel - 1 - padding, with the spatially flipped kernel and in/out channels swapped. `kernel` is stored in
    that convolution form, [kh, kw, in, out]; the converter does the flip and swap from torch's (in, out, kh, kw).
    Output size: (H - 1) * stride - 2 * padding + kernel.

    Computed without the dilation when the output is exactly stride x the input (kernel - 2 padding = stride, as
    in PARE's 4/2/1 deconvolutions): output pixel (s i + a, s j + b) only meets the kernel taps whose dilated
    input is not zero, so each of the stride^2 output phases is a small ordinary convolution of the undilated
    input (2 x 2 taps for 4/2/1), and the phases interleave. XLA:CPU has no fast path for input-dilated
    convolutions: their gradients ran in its naive loop emitter, 96% of a ResNet-50 PARE training step.
    """

    def __init__(self, in_ch, out_ch, kernel=4, stride=2, padding=1, *, rngs):
        self.kernel = nnx.Param(HE_NORMAL(rngs.params(), (kernel, kernel, in_ch, out_ch)))
        self.stride = stride
        self.padding = padding

    def __call__(self, x):
        kernel = self.kernel[...].astype(x.dtype)
        size, stride = kernel.shape[0], self.stride
        edge = size - 1 - self.padding
        if size - 2 * self.padding != stride:
            return jax.lax.conv_general_dilated(
                x, kernel, window_strides=(1, 1), padding=((edge, edge), (edge, edge)),
                lhs_dilation=(stride, stride), dimension_numbers=("NHWC", "HWIO", "NHWC"))
        # phase a takes taps t with (a + t - edge) % stride == 0, reading input pixel i + (a + t - edge) // stride
        taps = [[t for t in range(size) if (a + t - edge) % stride == 0] for a in range(stride)]
        first = [(a + phase[0] - edge) // stride for a, phase in enumerate(taps)]
        low = max(0, -min(first))
        high = max(0, max(f + len(phase) - 1 for f, phase in zip(first, taps)))
        padded = jnp.pad(x, ((0, 0), (low, high), (low, high), (0, 0)))
        n, h, w, _ = x.shape
        rows = []
        for a in range(stride):
            cols = []
            for b in range(stride):
                window = padded[:, low + first[a]:low + first[a] + h + len(taps[a]) - 1,
                                low + first[b]:low + first[b] + w + len(taps[b]) - 1]
                phase_kernel = kernel[np.array(taps[a])][:, np.array(taps[b])]
                cols.append(jax.lax.conv_general_dilated(window, phase_kernel, (1, 1), "VALID",
                                                         dimension_numbers=("NHWC", "HWIO", "NHWC")))
            rows.append(jnp.stack(cols, axis=3))  # [N, H, W, stride(b), C]
        out = jnp.stack(rows, axis=2)  # [N, H, stride(a), W, stride(b), C]
        return out.reshape(n, h * stride, w * stride, out.shape[-1])


class TransposedConvBN(nnx.Module):
    """transposed conv -> BatchNorm -> ReLU; torch indices 0, 1 of the authors' deconv Sequential."""
    bn_pairs = (("conv", "bn"),)

    def __init__(self, in_ch, out_ch, *, rngs):
        self.conv = TransposedConv(in_ch, out_ch, rngs=rngs)
        self.bn = batch_norm(out_ch, rngs)

    def __call__(self, x):
        return jax.nn.relu(self.bn(self.conv(x)))


class PerJointLinear(nnx.Module):
    """One bias-free linear map per joint: out[n, j, o] = sum_c x[n, j, c] weight[j, c, o].

    The authors' LocallyConnected2d stores this as [1, O, C, J, 1, 1]; ours is [J, C, O].
    """

    def __init__(self, num_joints, in_features, out_features, *, rngs):
        init = variance_scaling(1.0, "fan_in", "normal", in_axis=1, out_axis=2)
        self.weight = nnx.Param(init(rngs.params(), (num_joints, in_features, out_features)))

    def __call__(self, x):
        """x [N, J, C] -> [N, J, O]."""
        return jnp.einsum("njc,jco->njo", x, self.weight[...].astype(x.dtype))


@functools.lru_cache(maxsize=64)
def _align_corners_matrix(in_size, out_size):
    """[out, in] linear-interpolation weights with align_corners=True: output i samples input i (in-1)/(out-1)."""
    weights = np.zeros((out_size, in_size), np.float64)
    if out_size == 1 or in_size == 1:
        weights[:, 0] = 1.0
        return weights
    src = np.arange(out_size) * (in_size - 1) / (out_size - 1)
    low = np.clip(np.floor(src).astype(int), 0, in_size - 2)
    frac = src - low
    weights[np.arange(out_size), low] = 1.0 - frac
    weights[np.arange(out_size), low + 1] += frac
    return weights


def resize_bilinear_align_corners(x, size):
    """Bilinear resize with PyTorch's align_corners=True (corner pixels map to corner pixels), which
    jax.image.resize does not implement. Separable: two small matrix products. x [N, H, W, C] -> [N, h, w, C]."""
    out_h, out_w = size
    rows = jnp.asarray(_align_corners_matrix(x.shape[1], out_h), x.dtype)
    cols = jnp.asarray(_align_corners_matrix(x.shape[2], out_w), x.dtype)
    x = jnp.einsum("oh,nhwc->nowc", rows, x)
    return jnp.einsum("pw,nowc->nopc", cols, x)


def upsample_nearest(x, factor):
    """Nearest-neighbour upsampling by an integer factor. x [N, H, W, C] -> [N, H f, W f, C]."""
    n, h, w, c = x.shape
    x = jnp.broadcast_to(x[:, :, None, :, None, :], (n, h, factor, w, factor, c))
    return x.reshape(n, h * factor, w * factor, c)


def max_pool_3x3_stride2(x):
    """PyTorch's MaxPool2d(3, stride 2, padding 1): padding never wins the max. x [N, H, W, C]."""
    # A Python-scalar -inf init lets JAX recognise a max-pool, which is differentiable; an array init is not.
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1),
                                 ((0, 0), (1, 1), (1, 1), (0, 0)))


class FoldedBatchNorm(nnx.Module):
    """What remains of an inference-mode BatchNorm once its scale is folded into the preceding conv: a shift."""

    def __init__(self, shift):
        self.shift = nnx.Param(shift)

    def __call__(self, x):
        return x + self.shift[...].astype(x.dtype)


def fold_batch_norm(model):
    """Fold every BatchNorm that directly follows a conv (modules list such pairs in `bn_pairs`) into it, using
    the running statistics: kernel * g, shift = beta - mean * g with g = scale / sqrt(var + eps). In place; for
    inference only. It halves the elementwise kernels XLA has to generate and run after each convolution
    (compile time of HRNet-W32 on a CPU is dominated by them)."""
    for _, module in list(nnx.iter_modules(model)):
        for conv_name, bn_name in getattr(module, "bn_pairs", ()):
            conv_layer, bn = getattr(module, conv_name), getattr(module, bn_name)
            if not isinstance(bn, nnx.BatchNorm):
                continue
            gain = np.asarray(bn.scale[...]) / np.sqrt(np.asarray(bn.var[...], np.float64) + bn.epsilon)
            shift = np.asarray(bn.bias[...]) - np.asarray(bn.mean[...]) * gain
            if getattr(conv_layer, "bias", None) is not None:
                shift = shift + np.asarray(conv_layer.bias[...]) * gain
            kernel = np.asarray(conv_layer.kernel[...]) * gain  # HWIO: output channels last
            conv_layer.kernel.set_value(jnp.asarray(kernel, conv_layer.kernel[...].dtype))
            setattr(module, bn_name, FoldedBatchNorm(jnp.asarray(shift, jnp.float32)))
    return model
