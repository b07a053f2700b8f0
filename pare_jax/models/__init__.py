"""PARE and HMR-EFT models in Flax NNX (HRNet-W32 / ResNet-50 backbones, tiny variants for tests).

    from pare_jax.models import ModelConfig, build_model, predict
    model = build_model(ModelConfig(backbone="resnet50", head="pare"), rngs=nnx.Rngs(0))
    out = predict(model, body, images)   # images [N, 224, 224, 3] ImageNet-normalised; outputs NHWC
"""
from pare_jax.models.config import CHOICES, ModelConfig, default_mean_params, load_mean_params
from pare_jax.models.pare import (PareModel, abstract_model, build_model, inference_split, normalize_images,
                                  predict, smpl_outputs)

__all__ = ["CHOICES", "ModelConfig", "PareModel", "abstract_model", "build_model", "default_mean_params",
           "inference_split", "load_mean_params", "normalize_images", "predict", "smpl_outputs"]
