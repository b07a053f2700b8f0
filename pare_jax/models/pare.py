"""Model assembly (backbone + PARE or HMR head), the SMPL outputs, and jitted inference.

Layouts: images [N, H, W, 3] float, ImageNet-normalised ((x/255 - mean) / std, see normalize_images); all
image-like outputs NHWC (pred_segm_mask [N, 56, 56, 25] logits at 224 px), because that is the compute layout
and what softmax / cross-entropy over the last axis expect (the authors' layout is NCHW [N, 25, 56, 56]).

    model = build_model(ModelConfig(backbone="hrnet_w32", head="pare"), rngs=nnx.Rngs(0))
    out = model(images, body)          # training-mode call (BatchNorm batch statistics); body optional
    out = predict(model, body, images) # jitted inference, BatchNorm running statistics, dtype="bfloat16" option

A model with CoNorm (config.conorm != "none", models/conorm.py) also takes context=[N, H, W, 2]: the local /
global body-centre maps of pare_jax/data/context.py at the image (any size: they are resized).
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pare_jax.models.config import ModelConfig, load_mean_params
from pare_jax.models.conorm import CONTEXT_CHANNELS, CoNormSpec
from pare_jax.models.hmr_head import HMRHead
from pare_jax.models.hrnet import HRNET_SPECS, HRNet
from pare_jax.models.initializers import shape_only_init
from pare_jax.models.layers import fold_batch_norm
from pare_jax.models.pare_head import PareHead
from pare_jax.models.resnet import RESNET_SPECS, ResNet
from smpl_jax import cameras

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def normalize_images(images):
    """RGB in [0, 1], [..., 3] -> ImageNet-normalised, the input the models expect."""
    return (images - IMAGENET_MEAN) / IMAGENET_STD


class PareModel(nnx.Module):
    """backbone -> head; `backbone` and `head` match the authors' state-dict prefixes."""

    def __init__(self, config: ModelConfig, *, rngs):
        self.config = config
        conorm = (CoNormSpec(config.conorm, config.conorm_stage, config.conorm_hidden)
                  if config.conorm != "none" else None)
        if config.backbone in HRNET_SPECS:
            self.backbone = HRNet(HRNET_SPECS[config.backbone], rngs=rngs, conorm=conorm)
        else:
            self.backbone = ResNet(RESNET_SPECS[config.backbone], rngs=rngs, conorm=conorm)
        upsampling = isinstance(self.backbone, ResNet)
        mean_params = load_mean_params(config.mean_params)
        if config.head == "pare":
            self.head = PareHead(config, self.backbone.out_channels, upsampling, mean_params, rngs=rngs)
        else:
            self.head = HMRHead(self.backbone.out_channels, mean_params, rngs=rngs)

    def __call__(self, images, body=None, dsed_labels=None, dsed_pretrain=False, context=None):
        """images [N, H, W, 3] ImageNet-normalised -> dict (see module docstring); with an SMPL body (loaded with
        the SPIN extra regressor) also smpl_vertices, smpl_joints3d [N, 49, 3], smpl_joints2d, pred_cam_t.
        dsed_labels, dsed_pretrain: the DSED teacher's training inputs (models/dsed.py); only training passes
        them, and only with config.dsed on. context [N, H, W, 2]: CoNorm's centre maps (config.conorm on)."""
        _check_images(images)
        features = self.backbone(images, **self._context_kwargs(images, context))
        out = self.head(features, dsed_labels, dsed_pretrain) if self.config.dsed != "none" else self.head(features)
        if body is not None:
            out |= smpl_outputs(body, out["pred_pose"], out["pred_shape"], out["pred_cam"])
        return out

    @property
    def uses_context(self):
        return self.config.conorm != "none"

    def _context_kwargs(self, images, context):
        """{} for a model without CoNorm (a context given to it is ignored), {"context": ...} after checking."""
        if not self.uses_context:
            return {}
        check_context(context, images, self.config.conorm)
        return {"context": context}


def check_context(context, images, conorm):
    """Refuse a missing or misshapen context for a CoNorm model (config.conorm = conorm)."""
    if context is None:
        raise ValueError(f"this model uses CoNorm (model.conorm={conorm!r}); pass context=[N, H, W, 2] "
                         "local/global centre maps, see pare_jax/data/context.py")
    shape = getattr(context, "shape", None)
    if shape is None or len(shape) != 4 or shape[-1] != CONTEXT_CHANNELS or shape[0] != images.shape[0]:
        raise ValueError(f"context must be [N, H, W, {CONTEXT_CHANNELS}] (local, global centre maps, N = "
                         f"{images.shape[0]} images; any H, W: they are resized), got "
                         f"{'no array' if shape is None else tuple(shape)}; see pare_jax/data/context.py")
    if not jnp.issubdtype(context.dtype, jnp.floating):
        raise TypeError(f"context has dtype {context.dtype}; it must be float maps in [0, 1]")


def build_model(config, *, rngs):
    """config: ModelConfig, dict or ConfigDict (see pare_jax.models.config); rngs: nnx.Rngs.
    Build eagerly (not under jit): the initializers then sample on the host, see layers.variance_scaling."""
    return PareModel(ModelConfig.from_mapping(config), rngs=rngs)


def abstract_model(config):
    """The model with jax.ShapeDtypeStruct leaves instead of arrays: for shapes, conversion, jax.eval_shape.
    Cached per config: treat it as read-only.

    Built eagerly with shape-only initializers (layers.shape_only_init), not under nnx.eval_shape: there, every
    nnx.Rngs draw updates a traced counter, and in this jax / flax version each such update builds an error
    message that scans the whole trace (11 s for HRNet-W32 instead of 0.5 s)."""
    return _abstract_model(ModelConfig.from_mapping(config))


@functools.lru_cache(maxsize=8)
def _abstract_model(config):
    with shape_only_init():
        graphdef, state = nnx.split(build_model(config, rngs=nnx.Rngs(0)))
    return nnx.merge(graphdef, jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state))


def _check_images(images):
    """Refuse what would give meaningless output or an obscure error deep inside the network."""
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        raise TypeError(f"images must be an array [N, H, W, 3] (numpy or jax), got a {type(images).__name__}; "
                        "e.g. np.stack(list_of_images)")
    if images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"images must be [N, H, W, 3] (NHWC, ImageNet-normalised RGB); got shape {images.shape}"
                         + (" - looks like NCHW: transpose with images.transpose(0, 2, 3, 1)"
                            if images.ndim == 4 and images.shape[1] == 3 else ""))
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise TypeError(f"images have dtype {images.dtype}; the network expects ImageNet-normalised floats: "
                        "convert uint8 pixels with pare_jax.models.normalize_images(images / 255.0)")
    if images.shape[0] == 0 or images.shape[1] == 0 or images.shape[2] == 0:
        raise ValueError(f"images has shape {images.shape}: no pixels to predict from (an empty batch?)")


def smpl_outputs(body, pred_pose, pred_shape, pred_cam, return_verts=True):
    """Pose the body. pred_pose [N, 24, 3, 3], pred_shape [N, 10], pred_cam [N, 3] (s, tx, ty) ->
    smpl_vertices [N, V, 3], smpl_joints3d [N, 49, 3] (SPIN's 49), smpl_joints2d [N, 49, 2] in [-1, 1] of the
    crop, pred_cam_t [N, 3] (focal length 5000 px, 224 px crop). return_verts=False leaves out smpl_vertices
    and skins only the vertices the 49 joints are regressed from: what training needs, at a tenth of the cost
    (the full mesh of the open body costs several times the forward pass of hrnet_w8 at 64 px)."""
    groups = dict(body.vertex_joint_groups)
    if "extra" not in groups or "keypoints" not in groups:
        raise ValueError("the SMPL body lacks the SPIN 49-joint regressors: load it with "
                         "smpl_jax.load(path, extra_regressor='J_regressor_extra.npy') (and keypoint vertex ids "
                         f"for a non-SMPL topology); it has {sorted(groups)}")
    dtype = body.dtype
    pose, shape, cam = (jnp.asarray(x, dtype) for x in (pred_pose, pred_shape, pred_cam))
    smpl = body(betas=shape, body_pose=pose[:, 1:], global_orient=pose[:, :1], joints="spin49",
                return_verts=return_verts)
    out = {"smpl_joints3d": smpl.joints, "smpl_joints2d": cameras.project_normalized(smpl.joints, cam),
           "pred_cam_t": cameras.weak_perspective_to_translation(cam)}
    return out | ({"smpl_vertices": smpl.vertices} if return_verts else {})


def inference_split(model, fold_bn=True):
    """(graphdef, state) of a copy of the model in inference mode: BatchNorm running statistics (folded into
    the convolutions unless fold_bn=False), no dropout. The model itself is left as it is."""
    model = nnx.clone(nnx.view(model, use_running_average=True, deterministic=True, raise_if_not_found=False))
    return nnx.split(fold_batch_norm(model) if fold_bn else model)


def predict(model, body, images, dtype="float32", context=None):
    """Jitted inference. model: a PareModel or inference_split(model); body: smpl_jax.SMPL with the SPIN
    extra regressor, or None for the head outputs only; images [N, H, W, 3] ImageNet-normalised.
    dtype="bfloat16" computes the network in bfloat16 (parameters stay float32; outputs are float32).
    context [N, H, W, 2]: the centre maps a CoNorm model needs (ignored by one without).
    Returns the dict of PareModel.__call__. Splitting (and folding) a model costs about a second for HRNet-W32:
    in a loop, call inference_split(model) once and pass its result."""
    graphdef, state = inference_split(model) if isinstance(model, nnx.Module) else model
    _check_images(images)
    return _predict(graphdef, state, body, images, jnp.dtype(dtype).name, context)


@functools.partial(jax.jit, static_argnums=(0, 4))
def _predict(graphdef, state, body, images, dtype_name, context=None):
    compute = jnp.dtype(dtype_name)
    state = jax.tree.map(lambda x: x.astype(compute) if jnp.issubdtype(x.dtype, jnp.floating) else x, state)
    # inference mode even for a (graphdef, state) split from a model in training mode
    model = nnx.view(nnx.merge(graphdef, state), use_running_average=True, deterministic=True,
                     raise_if_not_found=False)
    kwargs = model._context_kwargs(images, context)  # checked while tracing
    kwargs = {k: v.astype(compute) for k, v in kwargs.items()}
    out = model.head(model.backbone(images.astype(compute), **kwargs))
    out = {k: v.astype(jnp.float32) for k, v in out.items()}
    if body is not None:
        out |= smpl_outputs(body, out["pred_pose"], out["pred_shape"], out["pred_cam"])
    return out
