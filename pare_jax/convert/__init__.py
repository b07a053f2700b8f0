"""Conversion of PyTorch checkpoints (the authors' PARE / HMR models, HRNet COCO and torchvision ResNet-50
backbone initialisations) to Flax weights in an Orbax checkpoint, and the functions that load them.

    python -m pare_jax.convert pare_w_3dpw_checkpoint.ckpt pare_hrnet_w32_flax
    python -m pare_jax.convert pose_hrnet_w32_256x192.pth hrnet_coco_init --source hrnet_coco

    from pare_jax.convert import load_model, restore_into
    model = load_model("pare_hrnet_w32_flax")

torch is imported only while reading a checkpoint file (pare_jax.convert.torch_files.load_state_dict).
"""
from pare_jax.convert.converter import SOURCES, convert_state_dict, infer_config, strip_prefix
from pare_jax.convert.mapping import torch_mapping, torch_module_name
from pare_jax.convert.torch_files import CheckpointFileError, load_state_dict, restricted_load
from pare_jax.convert.weights import (assign_weights, load_model, model_weights, read_config, read_weights,
                                      restore_into, save_model, save_weights)

__all__ = ["SOURCES", "CheckpointFileError", "assign_weights", "convert_state_dict", "infer_config",
           "load_model", "load_state_dict", "model_weights", "read_config", "read_weights", "restore_into",
           "restricted_load", "save_model", "save_weights", "strip_prefix", "torch_mapping", "torch_module_name"]
