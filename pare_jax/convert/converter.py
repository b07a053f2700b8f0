"""Turn a PyTorch state dict into Flax weights: the authors' PARE / HMR checkpoints, or backbone initialisations.

Sources:
    "pare"             the authors' checkpoint (Lightning .ckpt with 'model.'-prefixed keys, or a bare state
                       dict with 'backbone.' / 'head.' keys): every network tensor must be used and every variable
                       filled. Not network weights, and skipped with a logged list: keys outside 'model.' in a
                       Lightning checkpoint, and SMPL body-model buffers ('smpl.*': the body is passed to the
                       model separately, see smpl_jax).
    "hrnet_coco"       pose_hrnet_w32_256x192.pth (keys without 'backbone.'): the backbone only; its COCO
                       final_layer (17 joints) is skipped, PARE's upsample_stage_* and final_layer keep their init.
    "resnet_imagenet"  torchvision's ResNet-50 ImageNet weights: the backbone only; fc is skipped.
Anything else unused or missing is an error that names the keys.
"""
import functools
import logging
import re

import numpy as np

from pare_jax.convert.mapping import is_ignored_torch_key, to_flax_array, torch_mapping
from pare_jax.models import ModelConfig, abstract_model

SOURCES = ("pare", "hrnet_coco", "resnet_imagenet")
_BACKBONE_ONLY = {
    # source: (default backbone, checkpoint keys to skip, model keys allowed to keep their initialisation);
    # the backbone family must match (the tiny variants are accepted so that tests can exercise the mapping)
    "hrnet_coco": ("hrnet_w32", re.compile(r"final_layer\."), re.compile(r"backbone\.(upsample_stage_|final_layer)")),
    "resnet_imagenet": ("resnet50", re.compile(r"fc\."), None),
}


def default_backbone(source):
    """The backbone a backbone-only source holds."""
    return _BACKBONE_ONLY[source][0]


def _family(backbone):
    return "hrnet" if backbone.startswith("hrnet") else "resnet"


def strip_prefix(state_dict):
    """Lightning stores the model under 'model.' (other attributes of the LightningModule, e.g. a loss with
    buffers, sit beside it and are dropped); DataParallel adds 'module.' to every key."""
    if any(k.startswith("model.") for k in state_dict):
        state_dict = {k[len("model."):]: v for k, v in state_dict.items() if k.startswith("model.")}
    if state_dict and all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    return state_dict


def _network_tensors(state_dict):
    """The checkpoint's network tensors; logs what is skipped (see the module docstring)."""
    network = strip_prefix(state_dict)
    lightning = any(k.startswith("model.") for k in state_dict)
    outside = sorted(k for k in state_dict if lightning and not k.startswith("model."))
    body = sorted(k for k in network if k.startswith("smpl."))
    for what, keys in (("outside 'model.'", outside), ("SMPL body-model buffers", body)):
        if keys:
            logging.getLogger(__name__).warning("skipped %d checkpoint tensors %s: %s", len(keys), what,
                                                ", ".join(keys[:8]) + (" ..." if len(keys) > 8 else ""))
    return {k: v for k, v in network.items() if not k.startswith("smpl.") and not is_ignored_torch_key(k)}


def infer_config(state_dict, **overrides):
    """The ModelConfig of an authors' checkpoint, read off its keys and shapes; overrides win."""
    state_dict = strip_prefix(state_dict)
    keys = set(state_dict)
    values = {}
    stem = state_dict.get("backbone.conv1.weight")
    size = "full" if stem is not None and np.shape(stem)[0] == 64 else "tiny"
    if any(k.startswith("backbone.stage4.") for k in keys):
        values["backbone"] = {"full": "hrnet_w32", "tiny": "hrnet_tiny"}[size]
    elif any(k.startswith("backbone.layer4.") for k in keys):
        values["backbone"] = {"full": "resnet50", "tiny": "resnet_tiny"}[size]
    values["head"] = "hmr" if "head.fc1.weight" in keys else "pare"
    maps = state_dict.get("head.keypoint_final_layer.weight")
    if maps is not None and np.shape(maps)[0] == 25:
        values["part_supervision"] = "parts"
    values.update({k: v for k, v in overrides.items() if v is not None})
    if "backbone" not in values:
        raise ValueError("cannot tell the backbone from the checkpoint keys; pass --backbone")
    if values["head"] == "pare" and "part_supervision" not in values:
        raise ValueError("the checkpoint has 24 part maps (joint heatmaps or unsupervised maps); pass "
                         "--part-supervision joints or none")
    return ModelConfig.from_mapping(values)


@functools.lru_cache(maxsize=8)
def mapping_for(config: ModelConfig):
    """torch_mapping of the abstract model of `config` (cached: mapping HRNet-W32 takes a second)."""
    return torch_mapping(abstract_model(config))


def convert_state_dict(state_dict, config, source="pare"):
    """state_dict {torch key: numpy array} -> {flax variable path: numpy array} for the model of `config`.

    Shapes are checked against an abstract model (jax.eval_shape: no weights allocated)."""
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}; choose one of {SOURCES}")
    config = ModelConfig.from_mapping(config)
    mapping = mapping_for(config)
    state_dict = _network_tensors(state_dict) if source == "pare" else {
        k: v for k, v in strip_prefix(state_dict).items() if not is_ignored_torch_key(k)}
    may_keep_init = None
    if source != "pare":
        backbone, skip, may_keep_init = _BACKBONE_ONLY[source]
        if _family(config.backbone) != _family(backbone):
            raise ValueError(f"source {source!r} holds a {backbone} backbone, but the model config has "
                             f"backbone={config.backbone!r}")
        state_dict = {f"backbone.{k}": v for k, v in state_dict.items() if not skip.match(k)}
        mapping = {k: e for k, e in mapping.items() if k.startswith("backbone.")}
    unused = sorted(set(state_dict) - set(mapping))
    missing = sorted(k for k in set(mapping) - set(state_dict) if not (may_keep_init and may_keep_init.match(k)))
    if unused or missing:
        raise ValueError(f"checkpoint does not match the model ({config}): "
                         f"unused checkpoint tensors ({len(unused)}): {unused[:20]}; "
                         f"model variables without a tensor ({len(missing)}): {missing[:20]}; "
                         "is it the checkpoint of this --source, or do --backbone/--head need setting?")
    return {mapping[k].flax_path: to_flax_array(mapping[k], k, v) for k, v in state_dict.items()}
