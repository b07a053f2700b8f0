"""ResNet-50 (torchvision layout, no avgpool/fc) and the residual blocks HRNet shares with it.

Attribute names mirror torchvision's state-dict names (conv1, bn1, layer1[0].conv2, downsample...), so the
converter maps them one to one. Stride sits on the 3x3 conv of a bottleneck ("ResNet v1.5"), as in torchvision.
"""
import dataclasses

import jax
from flax import nnx

from pare_jax.models.conorm import CoNorm, require_context
from pare_jax.models.initializers import variance_scaling
from pare_jax.models.layers import ConvBN, batch_norm, block_output, conv, max_pool_3x3_stride2

RESNET_INIT = variance_scaling(2.0, "fan_out", "normal")  # torchvision's kaiming fan_out


class Bottleneck(nnx.Module):
    """1x1 -> 3x3 (stride) -> 1x1 (x4 channels), identity or projected shortcut, ReLU after the sum."""
    expansion = 4
    bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(self, in_ch, planes, stride=1, *, rngs, init=RESNET_INIT):
        out_ch = planes * self.expansion
        self.conv1 = conv(in_ch, planes, 1, rngs=rngs, init=init)
        self.bn1 = batch_norm(planes, rngs)
        self.conv2 = conv(planes, planes, 3, stride, rngs=rngs, init=init)
        self.bn2 = batch_norm(planes, rngs)
        self.conv3 = conv(planes, out_ch, 1, rngs=rngs, init=init)
        self.bn3 = batch_norm(out_ch, rngs)
        needs_projection = stride != 1 or in_ch != out_ch
        self.downsample = (ConvBN(in_ch, out_ch, 1, stride, relu=False, rngs=rngs, init=init)
                           if needs_projection else None)

    def __call__(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = jax.nn.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return block_output(jax.nn.relu(y + shortcut))


class BasicBlock(nnx.Module):
    """3x3 -> 3x3 with an identity shortcut (HRNet's branches never change width inside a block)."""
    expansion = 1
    bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, channels, *, rngs, init):
        self.conv1 = conv(channels, channels, 3, rngs=rngs, init=init)
        self.bn1 = batch_norm(channels, rngs)
        self.conv2 = conv(channels, channels, 3, rngs=rngs, init=init)
        self.bn2 = batch_norm(channels, rngs)

    def __call__(self, x):
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return block_output(jax.nn.relu(y + x))


@dataclasses.dataclass(frozen=True)
class ResNetSpec:
    stem_channels: int = 64
    planes: tuple = (64, 128, 256, 512)
    blocks: tuple = (3, 4, 6, 3)

    @property
    def out_channels(self):
        return self.planes[-1] * Bottleneck.expansion

    @property
    def stride(self):
        return 32


RESNET_SPECS = {
    "resnet50": ResNetSpec(),
    "resnet_tiny": ResNetSpec(stem_channels=8, planes=(4, 8, 8, 16), blocks=(1, 1, 1, 1)),
}


class ResNet(nnx.Module):
    """[N, H, W, 3] -> [N, H/32, W/32, 4 planes[-1]] (2048 x 7 x 7 for ResNet-50 at 224 px).
    conorm: a models.conorm.CoNormSpec to modulate layer<stage>'s output by the context maps, or None."""
    bn_pairs = (("conv1", "bn1"),)

    def __init__(self, spec: ResNetSpec, *, rngs, conorm=None):
        self.conv1 = nnx.Conv(3, spec.stem_channels, (7, 7), (2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                              kernel_init=RESNET_INIT, rngs=rngs)
        self.bn1 = batch_norm(spec.stem_channels, rngs)
        in_ch = spec.stem_channels
        for index, (planes, blocks) in enumerate(zip(spec.planes, spec.blocks)):
            stride = 1 if index == 0 else 2
            layer = []
            for block in range(blocks):
                layer.append(Bottleneck(in_ch, planes, stride if block == 0 else 1, rngs=rngs))
                in_ch = planes * Bottleneck.expansion
            setattr(self, f"layer{index + 1}", nnx.List(layer))
        self.num_layers = len(spec.planes)
        self.out_channels = in_ch
        self.conorm_stage = conorm.stage if conorm else 0
        self.conorm = (CoNorm(spec.planes[conorm.stage - 1] * Bottleneck.expansion, conorm.hidden, conorm.form,
                              rngs=rngs) if conorm else None)

    def __call__(self, x, context=None):
        """context [N, H, W, 2]: the local / global centre maps, needed (only) with CoNorm."""
        x = max_pool_3x3_stride2(jax.nn.relu(self.bn1(self.conv1(x))))
        for index in range(self.num_layers):
            for block in getattr(self, f"layer{index + 1}"):
                x = block(x)
            if index + 1 == self.conorm_stage:
                x = self.conorm(x, require_context(context))
        return x
