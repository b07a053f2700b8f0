"""Model configuration (one string per choice, validated) and the mean SMPL parameters.

The keys of ModelConfig are what a config file's `config.model` holds, e.g.
    config.model = ml_collections.ConfigDict(dict(backbone="hrnet_w32", head="pare", part_supervision="parts",
                                                  attention="softmax", mean_offset="none", mean_params=""))
"""
import dataclasses
import os

import jax
import numpy as np

from pare_jax.models.conorm import check_stage
from smpl_jax.rotations import axis_angle_to_matrix, matrix_to_rot6d

CHOICES = {
    "backbone": ("hrnet_w32", "resnet50", "hrnet_w8", "hrnet_tiny", "resnet_tiny"),
    "head": ("pare", "hmr"),
    # Table 3 of the paper: what supervises the part branch. "parts": 25 maps (24 parts + background, the
    # background map is dropped before the attention); "joints": 24 joint heatmaps; "none": 24 free maps.
    # "Parts, then unsupervised" is a loss schedule, not a model change.
    "part_supervision": ("parts", "joints", "none"),
    # "softmax": F' = softmax_spatial(P)^T F; "pool": average F over the pixels whose argmax map is the part
    # (hard masks; the part branch then learns from its supervision only).
    "attention": ("softmax", "pool"),
    # Whether the PARE head adds the mean parameters to its regressed values (the release model does not).
    "mean_offset": ("none", "shape_cam", "pose_shape_cam"),
    # HUPOR's DSED completion of the part branch's maps before they drive the attention (models/dsed.py):
    # "part_maps" needs part_supervision="parts", "joint_heatmaps" needs part_supervision="joints".
    "dsed": ("none", "part_maps", "joint_heatmaps"),
    # Self-attention across the part maps, H' = H + gamma MHSA(H) (models/part_self_attention.py): "pixel"
    # attends between the (pooled) pixels of the maps, "part" between the 24 maps.
    "part_self_attention": ("none", "pixel", "part"),
    # OCHMR's CoNorm (models/conorm.py): the backbone's features modulated by the local / global body-centre
    # context maps, X' = X * scale(c) + bias(c) ("scale_bias", the paper's), or X * (1 + scale) + bias with
    # zero-initialised scale / bias convs ("residual": converted PARE weights give unchanged outputs at step 0).
    "conorm": ("none", "scale_bias", "residual"),
}
DSED_INPUT_SUPERVISION = {"part_maps": "parts", "joint_heatmaps": "joints"}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    backbone: str = "hrnet_w32"
    head: str = "pare"
    part_supervision: str = "parts"
    attention: str = "softmax"
    mean_offset: str = "none"
    mean_params: str = ""  # SPIN's smpl_mean_params.npz; "" = identity pose, zero shape, cam (0.9, 0, 0)
    dsed: str = "none"
    dsed_width: int = 64  # channels of the first encoder stage (x1, x2, x4, x8): 64 with 2 blocks ~ ResNet-18
    dsed_blocks: int = 2  # basic residual blocks per encoder stage
    part_self_attention: str = "none"
    part_self_attention_heads: int = 1
    part_self_attention_dim: int = 32  # D_k of queries and keys
    part_self_attention_pool: int = 2  # "pixel": average-pool the maps by this factor (56x56 -> 784 tokens)
    conorm: str = "none"
    conorm_stage: int = 2  # ResNet: after layer<stage>; HRNet: per branch after stage <stage>; 1..4
    conorm_hidden: int = 128  # K, the latent channels of the CoNorm block

    def __post_init__(self):
        for key, allowed in CHOICES.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"model config: {key}={getattr(self, key)!r} is not one of {allowed}")
        if self.attention == "pool" and self.part_supervision == "none":
            raise ValueError("model config: attention='pool' takes hard masks from the part maps, which need "
                             "supervision; use part_supervision='parts' or 'joints', or attention='softmax'")
        for key in ("dsed_width", "dsed_blocks", "part_self_attention_heads", "part_self_attention_dim",
                    "part_self_attention_pool", "conorm_hidden"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"model config: {key}={value!r} must be a positive integer")
        if self.head != "pare" and (self.dsed != "none" or self.part_self_attention != "none"):
            raise ValueError(f"model config: dsed={self.dsed!r} / part_self_attention={self.part_self_attention!r} "
                             "act on PARE's part maps; head='hmr' has none: set them to 'none' or use head='pare'")
        needed = DSED_INPUT_SUPERVISION.get(self.dsed)
        if needed and self.part_supervision != needed:
            raise ValueError(f"model config: dsed={self.dsed!r} completes the maps of part_supervision={needed!r}, "
                             f"but part_supervision={self.part_supervision!r}; set part_supervision={needed!r} "
                             "or choose the other dsed input")
        check_stage("ResNet" if self.backbone.startswith("resnet") else "HRNet", self.conorm_stage)
        if self.part_self_attention != "none" and self.attention != "softmax":
            raise ValueError(f"model config: part_self_attention={self.part_self_attention!r} corrects the maps of "
                             "the soft attention; it needs attention='softmax'")

    @classmethod
    def from_mapping(cls, mapping):
        """From a dict or ml_collections.ConfigDict; unknown keys are an error, missing keys take defaults."""
        if isinstance(mapping, cls):
            return mapping
        items = dict(mapping.items()) if hasattr(mapping, "items") else dict(mapping)
        unknown = sorted(set(items) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"model config: unknown keys {unknown}; known: {[f.name for f in dataclasses.fields(cls)]}")
        return cls(**items)

    def to_dict(self):
        return dataclasses.asdict(self)

    @property
    def num_part_maps(self):
        return 25 if self.part_supervision == "parts" else 24


IDENTITY_6D = np.tile(np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], np.float32), 24)  # I[:, :2] row-major, per joint


def default_mean_params():
    """pose [144] (24 x 6D, SPIN layout), shape [10], cam [3]."""
    return {"pose": IDENTITY_6D.copy(), "shape": np.zeros(10, np.float32),
            "cam": np.array([0.9, 0.0, 0.0], np.float32)}


def load_mean_params(path):
    """Mean SMPL parameters from a SPIN-style npz: 'pose' as 144 6D values or 72 axis-angle values, 'shape'
    [10], 'cam' [3]. "" gives the defaults. Returns float32 arrays pose [144], shape [10], cam [3]."""
    if not path:
        return default_mean_params()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"mean parameters file {path!r} not found; set model.mean_params='' for the "
                                "defaults (identity pose, zero shape, cam (0.9, 0, 0))")
    with np.load(path, allow_pickle=False) as data:
        missing = {"pose", "shape", "cam"} - set(data.files)
        if missing:
            raise ValueError(f"{path}: missing arrays {sorted(missing)} (expected pose, shape, cam as in SPIN's "
                             f"smpl_mean_params.npz); found {data.files}")
        pose, shape, cam = (np.asarray(data[k], np.float32).reshape(-1) for k in ("pose", "shape", "cam"))
    if pose.size == 72:  # one jitted call: op by op, each op would compile on its own
        to_6d = jax.jit(lambda aa: matrix_to_rot6d(axis_angle_to_matrix(aa)))
        pose = np.asarray(to_6d(pose.reshape(24, 3)), np.float32).reshape(-1)
    if pose.size != 144 or shape.size != 10 or cam.size != 3:
        raise ValueError(f"{path}: pose must have 144 (6D) or 72 (axis-angle) values, shape 10, cam 3; got "
                         f"{pose.size}, {shape.size}, {cam.size}")
    return {"pose": pose, "shape": shape, "cam": cam}
