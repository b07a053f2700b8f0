"""HRNet-W32 (pose-HRNet layout) with PARE's "-conv" head input.

Stem of two stride-2 3x3 convs, layer1 of bottlenecks, then stages of parallel branches at 1/4, 1/8, 1/16,
1/32 resolution that exchange information through fuse layers. The "-conv" output brings branches 2..4 to the
1/4 resolution by repeated [bilinear x2 (align_corners=True), 3x3 conv, BN, ReLU] and concatenates them with
branch 1: 32 + 64 + 128 + 256 = 480 channels at 56 x 56 for a 224 px input.

Attribute names mirror the authors' state-dict names (transition1, stage2[0].branches[1][0].conv1,
fuse_layers[i][j], upsample_stage_3, final_layer). Lists hold None where the authors' ModuleLists do.
"""
import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from pare_jax.models.conorm import CoNorm, require_context
from pare_jax.models.initializers import variance_scaling
from pare_jax.models.layers import (ConvBN, batch_norm, block_output, conv, resize_bilinear_align_corners,
                                    upsample_nearest)
from pare_jax.models.resnet import BasicBlock, Bottleneck

# HRNet's own code draws every conv from N(0, 0.001^2); through ~20 conv+BN layers with fresh running statistics
# that leaves an untrained model's eval-mode outputs at ~1e-9 (degenerate 6D rotations). Trained weights replace
# the initialisation anyway (PARE starts from COCO-pose HRNet), so we use torchvision's He fan_out like ResNet.
HRNET_INIT = variance_scaling(2.0, "fan_out", "normal")


@dataclasses.dataclass(frozen=True)
class HRNetSpec:
    stem_channels: int = 64
    layer1_planes: int = 64
    layer1_blocks: int = 4
    widths: tuple = (32, 64, 128, 256)
    modules: tuple = (1, 4, 3)          # stages 2, 3, 4
    blocks_per_branch: int = 4
    final_layer_channels: int = 24      # present in the checkpoints, unused by PARE

    @property
    def out_channels(self):
        return sum(self.widths)

    @property
    def stride(self):
        return 4


HRNET_SPECS = {
    "hrnet_w32": HRNetSpec(),
    # HRNet-W32's layout at a quarter of its widths and one block per stage: trains in minutes on a CPU
    # (configs/synthetic.py).
    "hrnet_w8": HRNetSpec(stem_channels=32, layer1_planes=16, layer1_blocks=1, widths=(8, 16, 32, 64),
                          modules=(1, 1, 1), blocks_per_branch=1),
    "hrnet_tiny": HRNetSpec(stem_channels=8, layer1_planes=4, layer1_blocks=1, widths=(4, 8, 8, 16),
                            modules=(1, 1, 1), blocks_per_branch=1),
}


def _make_transition(pre, cur, rngs):
    """Branches kept (a 3x3 conv only where the width changes, else None) and new branches (a chain of stride-2
    convs from the lowest-resolution previous branch)."""
    items = []
    for i, ch in enumerate(cur):
        if i < len(pre):
            items.append(ConvBN(pre[i], ch, 3, rngs=rngs, init=HRNET_INIT) if ch != pre[i] else None)
            continue
        steps = i + 1 - len(pre)
        chain = [ConvBN(pre[-1], ch if k == steps - 1 else pre[-1], 3, 2, rngs=rngs, init=HRNET_INIT)
                 for k in range(steps)]
        items.append(nnx.List(chain))
    return nnx.List(items)


def _apply_transition(transition, xs):
    out = []
    for i, layer in enumerate(transition):
        if i < len(xs):
            out.append(xs[i] if layer is None else layer(xs[i]))
        else:
            y = xs[-1]
            for step in layer:
                y = step(y)
            out.append(y)
    return out


def _fuse_layer(widths, i, j, rngs):
    """Branch j -> resolution and width of branch i."""
    if i == j:
        return None
    if j > i:  # 1x1 conv + BN, then nearest upsampling in __call__
        return ConvBN(widths[j], widths[i], 1, relu=False, rngs=rngs, init=HRNET_INIT)
    steps = i - j  # stride-2 3x3 convs; only the last changes the width and has no ReLU
    return nnx.List([ConvBN(widths[j], widths[i] if k == steps - 1 else widths[j], 3, 2, relu=k < steps - 1,
                            rngs=rngs, init=HRNET_INIT) for k in range(steps)])


class HighResolutionModule(nnx.Module):
    def __init__(self, widths, num_blocks, *, rngs):
        self.branches = nnx.List([nnx.List([BasicBlock(w, rngs=rngs, init=HRNET_INIT) for _ in range(num_blocks)])
                                  for w in widths])
        n = len(widths)
        self.fuse_layers = nnx.List([nnx.List([_fuse_layer(widths, i, j, rngs) for j in range(n)])
                                     for i in range(n)])

    def __call__(self, xs):
        xs = list(xs)
        for b, blocks in enumerate(self.branches):
            for block in blocks:
                xs[b] = block(xs[b])
        fused = []
        for i, row in enumerate(self.fuse_layers):
            total = None
            for j, layer in enumerate(row):
                if i == j:
                    y = xs[j]
                elif j > i:
                    y = upsample_nearest(layer(xs[j]), 2 ** (j - i))
                else:
                    y = xs[j]
                    for step in layer:
                        y = step(y)
                total = y if total is None else total + y
            fused.append(block_output(jax.nn.relu(total)))
        return fused


class HRNet(nnx.Module):
    """[N, H, W, 3] -> [N, H/4, W/4, sum(widths)] (480 x 56 x 56 for HRNet-W32 at 224 px).
    conorm: a models.conorm.CoNormSpec to modulate every branch after stage <stage> (1: after layer1) by the
    context maps, one block per branch, or None."""
    bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(self, spec: HRNetSpec, *, rngs, conorm=None):
        self.conv1 = conv(3, spec.stem_channels, 3, 2, rngs=rngs, init=HRNET_INIT)
        self.bn1 = batch_norm(spec.stem_channels, rngs)
        self.conv2 = conv(spec.stem_channels, spec.stem_channels, 3, 2, rngs=rngs, init=HRNET_INIT)
        self.bn2 = batch_norm(spec.stem_channels, rngs)
        blocks, in_ch = [], spec.stem_channels
        for _ in range(spec.layer1_blocks):
            blocks.append(Bottleneck(in_ch, spec.layer1_planes, rngs=rngs, init=HRNET_INIT))
            in_ch = spec.layer1_planes * Bottleneck.expansion
        self.layer1 = nnx.List(blocks)
        pre = [in_ch]
        for stage, num_modules in enumerate(spec.modules, start=2):
            cur = list(spec.widths[:stage])
            setattr(self, f"transition{stage - 1}", _make_transition(pre, cur, rngs))
            setattr(self, f"stage{stage}", nnx.List([HighResolutionModule(cur, spec.blocks_per_branch, rngs=rngs)
                                                     for _ in range(num_modules)]))
            pre = cur
        for branch in range(1, len(spec.widths)):
            setattr(self, f"upsample_stage_{branch + 1}", nnx.List(
                [ConvBN(spec.widths[branch], spec.widths[branch], 3, rngs=rngs, init=HRNET_INIT)
                 for _ in range(branch)]))
        self.final_layer = nnx.Conv(spec.widths[0], spec.final_layer_channels, (1, 1), kernel_init=HRNET_INIT,
                                    rngs=rngs)
        self.num_stages = len(spec.modules)
        self.out_channels = spec.out_channels
        self.conorm_stage = conorm.stage if conorm else 0
        if conorm:
            widths = [spec.layer1_planes * Bottleneck.expansion] if conorm.stage == 1 else spec.widths[:conorm.stage]
            self.conorm = nnx.List([CoNorm(w, conorm.hidden, conorm.form, rngs=rngs) for w in widths])
        else:
            self.conorm = None

    def __call__(self, x, context=None):
        """context [N, H, W, 2]: the local / global centre maps, needed (only) with CoNorm."""
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        x = jax.nn.relu(self.bn2(self.conv2(x)))
        for block in self.layer1:
            x = block(x)
        xs = self._conorm([x], 1, context)
        for stage in range(2, self.num_stages + 2):
            xs = _apply_transition(getattr(self, f"transition{stage - 1}"), xs)
            for module in getattr(self, f"stage{stage}"):
                xs = module(xs)
            xs = self._conorm(xs, stage, context)
        return self._concat_at_full_resolution(xs)

    def _conorm(self, xs, stage, context):
        if stage != self.conorm_stage:
            return xs
        require_context(context)
        return [block(x, context) for block, x in zip(self.conorm, xs)]

    def _concat_at_full_resolution(self, xs):
        out = [xs[0]]
        for branch in range(1, len(xs)):
            y = xs[branch]
            for layer in getattr(self, f"upsample_stage_{branch + 1}"):
                y = layer(resize_bilinear_align_corners(y, (2 * y.shape[1], 2 * y.shape[2])))
            out.append(y)
        return jnp.concatenate(out, axis=-1)
