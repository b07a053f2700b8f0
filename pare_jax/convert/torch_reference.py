"""The same architectures in PyTorch (torch.nn only, NCHW), with the authors' state-dict names and shapes.

Written from the facts in PARE_SPEC.md, not from the authors' code. It exists to prove the converter (tests load
its state dict into the Flax model and compare outputs) and as the speed reference in benchmarks/. Imports
torch at module level: import it only where torch is installed (tests, benchmarks), never from the models.

    net = build_reference(ModelConfig(backbone="hrnet_tiny")).eval()
    out = net(images_nchw)   # pred_pose [N, 24, 3, 3], pred_shape, pred_cam, pred_segm_mask [N, 25, H, W]
"""
import torch
import torch.nn.functional as F
from torch import nn

from pare_jax.models.config import ModelConfig, load_mean_params
from pare_jax.models.hrnet import HRNET_SPECS
from pare_jax.models.resnet import RESNET_SPECS


def _conv_bn(in_ch, out_ch, kernel, stride=1, relu=True):
    layers = [nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(out_ch)]
    return nn.Sequential(*layers, nn.ReLU()) if relu else nn.Sequential(*layers)


class Bottleneck(nn.Module):
    def __init__(self, in_ch, planes, stride=1):
        super().__init__()
        out_ch = planes * 4
        self.conv1, self.bn1 = nn.Conv2d(in_ch, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = nn.Conv2d(planes, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch)
        self.downsample = (_conv_bn(in_ch, out_ch, 1, stride, relu=False)
                           if stride != 1 or in_ch != out_ch else None)

    def forward(self, x):
        shortcut = x if self.downsample is None else self.downsample(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + shortcut)


class BasicBlock(nn.Module):
    def __init__(self, ch):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch)
        self.conv2, self.bn2 = nn.Conv2d(ch, ch, 3, 1, 1, bias=False), nn.BatchNorm2d(ch)

    def forward(self, x):
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))) + x)


class ResNet(nn.Module):
    def __init__(self, spec):
        super().__init__()
        self.conv1 = nn.Conv2d(3, spec.stem_channels, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(spec.stem_channels)
        in_ch = spec.stem_channels
        for i, (planes, blocks) in enumerate(zip(spec.planes, spec.blocks)):
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(in_ch, planes, (1 if i == 0 else 2) if b == 0 else 1))
                in_ch = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.num_layers = len(spec.planes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(self.num_layers):
            x = getattr(self, f"layer{i + 1}")(x)
        return x


def _fuse(widths, i, j):
    if i == j:
        return None
    if j > i:
        return nn.Sequential(nn.Conv2d(widths[j], widths[i], 1, bias=False), nn.BatchNorm2d(widths[i]),
                             nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
    steps = i - j
    return nn.Sequential(*[_conv_bn(widths[j], widths[i] if k == steps - 1 else widths[j], 3, 2, k < steps - 1)
                           for k in range(steps)])


class HRModule(nn.Module):
    def __init__(self, widths, blocks):
        super().__init__()
        self.branches = nn.ModuleList([nn.Sequential(*[BasicBlock(w) for _ in range(blocks)]) for w in widths])
        n = len(widths)
        self.fuse_layers = nn.ModuleList([nn.ModuleList([_fuse(widths, i, j) for j in range(n)]) for i in range(n)])

    def forward(self, xs):
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            total = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, len(xs)):
                total = total + (xs[j] if i == j else row[j](xs[j]))
            out.append(F.relu(total))
        return out


class HRNet(nn.Module):
    def __init__(self, spec):
        super().__init__()
        s = spec.stem_channels
        self.conv1, self.bn1 = nn.Conv2d(3, s, 3, 2, 1, bias=False), nn.BatchNorm2d(s)
        self.conv2, self.bn2 = nn.Conv2d(s, s, 3, 2, 1, bias=False), nn.BatchNorm2d(s)
        blocks, in_ch = [], s
        for _ in range(spec.layer1_blocks):
            blocks.append(Bottleneck(in_ch, spec.layer1_planes))
            in_ch = spec.layer1_planes * 4
        self.layer1 = nn.Sequential(*blocks)
        pre = [in_ch]
        for stage, modules in enumerate(spec.modules, start=2):
            cur = list(spec.widths[:stage])
            setattr(self, f"transition{stage - 1}", self._transition(pre, cur))
            setattr(self, f"stage{stage}", nn.Sequential(*[HRModule(cur, spec.blocks_per_branch)
                                                           for _ in range(modules)]))
            pre = cur
        for b in range(1, len(spec.widths)):
            w, layers = spec.widths[b], []
            for _ in range(b):
                layers += [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
                           nn.Conv2d(w, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            setattr(self, f"upsample_stage_{b + 1}", nn.Sequential(*layers))
        self.final_layer = nn.Conv2d(spec.widths[0], spec.final_layer_channels, 1)
        self.num_stages = len(spec.modules)

    @staticmethod
    def _transition(pre, cur):
        items = []
        for i, ch in enumerate(cur):
            if i < len(pre):
                items.append(_conv_bn(pre[i], ch, 3) if ch != pre[i] else None)
            else:
                steps = i + 1 - len(pre)
                items.append(nn.Sequential(*[_conv_bn(pre[-1], ch if k == steps - 1 else pre[-1], 3, 2)
                                             for k in range(steps)]))
        return nn.ModuleList(items)

    def forward(self, x):
        x = F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))
        xs = [self.layer1(x)]
        for stage in range(2, self.num_stages + 2):
            transition = getattr(self, f"transition{stage - 1}")
            xs = [(xs[i] if t is None else t(xs[i])) if i < len(xs) else t(xs[-1]) for i, t in enumerate(transition)]
            xs = getattr(self, f"stage{stage}")(xs)
        ups = [getattr(self, f"upsample_stage_{b + 1}")(xs[b]) for b in range(1, len(xs))]
        return torch.cat([xs[0]] + ups, dim=1)


def rot6d_to_matrix(x):
    """[..., 6] -> [..., 3, 3]: the 6 numbers as a 3x2 matrix of columns a1, a2; Gram-Schmidt; b3 = b1 x b2."""
    m = x.reshape(*x.shape[:-1], 3, 2)
    b1 = F.normalize(m[..., 0], dim=-1, eps=1e-8)
    a2 = m[..., 1]
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=1e-8)
    return torch.stack([b1, b2, torch.cross(b1, b2, dim=-1)], dim=-1)


def _branch(in_ch, channels, layers, upsampling):
    modules = []
    for k in range(layers):
        cin = in_ch if k == 0 else channels
        conv = (nn.ConvTranspose2d(cin, channels, 4, 2, 1, bias=False) if upsampling
                else nn.Conv2d(cin, channels, 3, 1, 1, bias=False))
        modules += [conv, nn.BatchNorm2d(channels), nn.ReLU()]
    return nn.Sequential(*modules)


class PareHead(nn.Module):
    def __init__(self, config, in_ch, upsampling, mean):
        super().__init__()
        channels, layers = (256, 3) if upsampling else (128, 2)
        self.config = config
        self.keypoint_deconv_layers = _branch(in_ch, channels, layers, upsampling)
        self.smpl_deconv_layers = _branch(in_ch, channels, layers, upsampling)
        self.keypoint_final_layer = nn.Conv2d(channels, config.num_part_maps, 1)
        self.smpl_final_layer = nn.Conv2d(channels, 64, 1)
        self.pose_mlp = nn.Module()
        self.pose_mlp.weight = nn.Parameter(torch.randn(1, 6, channels, 24, 1, 1) * channels ** -0.5)
        self.shape_mlp, self.cam_mlp = nn.Linear(64 * 24, 10), nn.Linear(64 * 24, 3)
        self.register_buffer("temperature", torch.ones(()))
        for name in ("pose", "shape", "cam"):
            self.register_buffer(f"init_{name}", torch.as_tensor(mean[name]).reshape(1, -1))

    def _sample(self, logits, feats):
        """logits [N, M, H, W], feats [N, C, H, W] -> [N, C, 24]."""
        n, c = feats.shape[:2]
        maps = logits[:, 1:] if self.config.part_supervision == "parts" else logits
        if self.config.attention == "softmax":
            weights = F.softmax(maps.flatten(2), dim=-1)                     # [N, 24, HW]
        else:
            labels = logits.flatten(2).argmax(1)                             # [N, HW]
            onehot = F.one_hot(labels, logits.shape[1]).float().transpose(1, 2)
            onehot = onehot[:, 1:] if self.config.part_supervision == "parts" else onehot
            weights = onehot / onehot.sum(-1, keepdim=True).clamp(min=1.0)
        return torch.matmul(weights, feats.reshape(n, c, -1).transpose(1, 2)).transpose(1, 2)

    def forward(self, features):
        logits = self.keypoint_final_layer(self.keypoint_deconv_layers(features))
        smpl_feats = self.smpl_deconv_layers(features)
        cam_shape = self.smpl_final_layer(smpl_feats)
        pose_feats, cam_shape = self._sample(logits, smpl_feats), self._sample(logits, cam_shape)
        pose6d = (pose_feats[:, None] * self.pose_mlp.weight[0, :, :, :, 0, 0][None]).sum(2)  # [N, 6, 24]
        pose6d = pose6d.transpose(1, 2)
        flat = cam_shape.flatten(1)
        shape, cam = self.shape_mlp(flat), self.cam_mlp(flat)
        if self.config.mean_offset != "none":
            shape, cam = shape + self.init_shape, cam + self.init_cam
        if self.config.mean_offset == "pose_shape_cam":
            pose6d = pose6d + self.init_pose.reshape(1, 24, 6)
        return {"pred_pose": rot6d_to_matrix(pose6d), "pred_shape": shape, "pred_cam": cam, "pred_segm_mask": logits}


class HMRHead(nn.Module):
    def __init__(self, in_ch, mean):
        super().__init__()
        self.fc1, self.drop1 = nn.Linear(in_ch + 157, 1024), nn.Dropout()
        self.fc2, self.drop2 = nn.Linear(1024, 1024), nn.Dropout()
        self.decpose, self.decshape, self.deccam = nn.Linear(1024, 144), nn.Linear(1024, 10), nn.Linear(1024, 3)
        for name in ("pose", "shape", "cam"):
            self.register_buffer(f"init_{name}", torch.as_tensor(mean[name]).reshape(1, -1))

    def forward(self, features):
        n = features.shape[0]
        x0 = features.mean((2, 3))
        pose, shape, cam = (b.expand(n, -1) for b in (self.init_pose, self.init_shape, self.init_cam))
        for _ in range(3):
            x = self.drop2(self.fc2(self.drop1(self.fc1(torch.cat([x0, pose, shape, cam], 1)))))
            pose, shape, cam = pose + self.decpose(x), shape + self.decshape(x), cam + self.deccam(x)
        return {"pred_pose": rot6d_to_matrix(pose.reshape(n, 24, 6)), "pred_shape": shape, "pred_cam": cam}


class PareReference(nn.Module):
    def __init__(self, config):
        super().__init__()
        hrnet = config.backbone in HRNET_SPECS
        spec = HRNET_SPECS[config.backbone] if hrnet else RESNET_SPECS[config.backbone]
        self.backbone = HRNet(spec) if hrnet else ResNet(spec)
        mean = load_mean_params(config.mean_params)
        in_ch = spec.out_channels
        self.head = PareHead(config, in_ch, not hrnet, mean) if config.head == "pare" else HMRHead(in_ch, mean)

    def forward(self, images):
        """images [N, 3, H, W] ImageNet-normalised."""
        return self.head(self.backbone(images))


def build_reference(config):
    return PareReference(ModelConfig.from_mapping(config))
