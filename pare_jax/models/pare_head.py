"""PARE's head: a 2D part branch and a 3D body branch on the same backbone features, joined by part attention.

    part branch:  features -> keypoint_deconv_layers -> keypoint_final_layer -> P   [N, H, W, 25 | 24] logits
    body branch:  features -> smpl_deconv_layers -> F [N, H, W, C];  smpl_final_layer(F) -> G [N, H, W, 64]
    options:      P -> DSED completion (config.dsed, models/dsed.py) -> P + gamma MHSA(P) (config.part_self_attention,
                  models/part_self_attention.py) -> attention; both off by default, which is PARE
    attention:    A = softmax over the H*W pixels of each part map (background dropped);  F'_j = sum_p A_pj F_p
    regressors:   pose_mlp: per joint C -> 6D -> rotation;  shape_mlp, cam_mlp: G' flattened channel-major

HRNet features (480 x 56 x 56) go through 2 x [3x3 conv 128, BN, ReLU] per branch; ResNet features
(2048 x 7 x 7) through 3 x [4x4 stride-2 transposed conv 256, BN, ReLU] (7 -> 56). Names follow the authors'.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from pare_jax.models.config import ModelConfig
from pare_jax.models.dsed import Dsed
from pare_jax.models.initializers import LECUN_NORMAL
from pare_jax.models.layers import Buffer, ConvBN, PerJointLinear, TransposedConvBN
from pare_jax.models.part_self_attention import PartSelfAttention
from smpl_jax.rotations import rot6d_to_matrix

NUM_JOINTS = 24
CAM_SHAPE_CHANNELS = 64


def part_attention(maps, features):
    """Soft part attention: F'[n, j, c] = sum_p softmax_p(maps[n, :, j])[p] features[n, p, c].

    maps [N, H, W, J] logits (no background), features [N, H, W, C] -> [N, J, C]. The softmax runs in float32:
    sums over thousands of pixels are too coarse in bfloat16.
    """
    n, h, w, j = maps.shape
    weights = jax.nn.softmax(maps.reshape(n, h * w, j).astype(jnp.float32), axis=1)
    return jnp.einsum("npj,npc->njc", weights, features.reshape(n, h * w, -1).astype(jnp.float32))


def part_pooling(all_maps, features, drop_background):
    """The paper's pooling ablation: average the features over the pixels whose argmax map is the part (a part
    with no pixel gets zeros). all_maps [N, H, W, M] (with background if drop_background), features
    [N, H, W, C] -> [N, J, C]. The hard masks carry no gradient back to the part branch."""
    n, h, w, m = all_maps.shape
    masks = jax.nn.one_hot(jnp.argmax(all_maps.reshape(n, h * w, m), axis=-1), m, dtype=jnp.float32)
    masks = masks[..., 1:] if drop_background else masks
    weights = masks / jnp.maximum(masks.sum(axis=1, keepdims=True), 1.0)
    return jnp.einsum("npj,npc->njc", weights, features.reshape(n, h * w, -1).astype(jnp.float32))


def _branch(in_channels, channels, num_layers, upsampling, rngs):
    if upsampling:
        return nnx.List([TransposedConvBN(in_channels if k == 0 else channels, channels, rngs=rngs)
                         for k in range(num_layers)])
    return nnx.List([ConvBN(in_channels if k == 0 else channels, channels, 3, rngs=rngs)
                     for k in range(num_layers)])


class PareHead(nnx.Module):
    """Backbone features [N, h, w, Cin] -> dict of pred_pose [N, 24, 3, 3], pred_shape [N, 10], pred_cam [N, 3]
    and the part-branch logits pred_segm_mask [N, H, W, M], NHWC; M = 25 (24 parts + background) with part
    supervision, else 24 maps (joint heatmaps, or free maps), under the same name so losses need no branching."""

    def __init__(self, config: ModelConfig, in_channels, upsampling, mean_params, *, rngs):
        channels, num_layers = (256, 3) if upsampling else (128, 2)
        self.config = config
        self.keypoint_deconv_layers = _branch(in_channels, channels, num_layers, upsampling, rngs)
        self.smpl_deconv_layers = _branch(in_channels, channels, num_layers, upsampling, rngs)
        self.keypoint_final_layer = nnx.Conv(channels, config.num_part_maps, (1, 1), kernel_init=LECUN_NORMAL,
                                             rngs=rngs)
        self.smpl_final_layer = nnx.Conv(channels, CAM_SHAPE_CHANNELS, (1, 1), kernel_init=LECUN_NORMAL, rngs=rngs)
        self.pose_mlp = PerJointLinear(NUM_JOINTS, channels, 6, rngs=rngs)
        flat = CAM_SHAPE_CHANNELS * NUM_JOINTS
        self.shape_mlp = nnx.Linear(flat, 10, kernel_init=LECUN_NORMAL, rngs=rngs)
        self.cam_mlp = nnx.Linear(flat, 3, kernel_init=LECUN_NORMAL, rngs=rngs)
        # Carried so that the authors' checkpoints map completely; temperature is unused (no temperature in
        # the release model), the means only with config.mean_offset.
        self.temperature = Buffer(jnp.ones((), jnp.float32))
        self.init_pose = Buffer(jnp.asarray(mean_params["pose"], jnp.float32).reshape(1, -1))
        self.init_shape = Buffer(jnp.asarray(mean_params["shape"], jnp.float32).reshape(1, -1))
        self.init_cam = Buffer(jnp.asarray(mean_params["cam"], jnp.float32).reshape(1, -1))
        # Only with the options on, so that with both off the variables are exactly the authors'.
        if config.dsed != "none":
            self.dsed = Dsed(config.dsed, config.num_part_maps, config.dsed_width, config.dsed_blocks, rngs=rngs)
        if config.part_self_attention != "none":
            self.part_self_attention = PartSelfAttention(
                NUM_JOINTS, config.part_self_attention, config.part_self_attention_heads,
                config.part_self_attention_dim, config.part_self_attention_pool, rngs=rngs)

    def __call__(self, features, dsed_labels=None, dsed_pretrain=False):
        """features [N, h, w, Cin]; dsed_labels / dsed_pretrain: training inputs of the DSED teacher (see
        models/dsed.py), ignored without config.dsed; inference needs neither."""
        part_feats = features
        for layer in self.keypoint_deconv_layers:
            part_feats = layer(part_feats)
        part_logits = self.keypoint_final_layer(part_feats)
        body_feats = features
        for layer in self.smpl_deconv_layers:
            body_feats = layer(body_feats)
        cam_shape_feats = self.smpl_final_layer(body_feats)
        # One einsum for both feature sets: concatenate along channels, split after.
        both = jnp.concatenate([body_feats, cam_shape_feats.astype(body_feats.dtype)], axis=-1)
        with_background = self.config.part_supervision == "parts"
        extra, attention_logits = {}, part_logits
        if self.config.dsed != "none":
            extra = self.dsed(part_logits, dsed_labels, dsed_pretrain)
            attention_logits = extra.pop("completed")
        if self.config.attention == "softmax":
            maps = attention_logits[..., 1:] if with_background else attention_logits
            if self.config.part_self_attention != "none":
                maps = self.part_self_attention(maps)
            sampled = part_attention(maps, both)
        else:
            sampled = part_pooling(attention_logits, both, with_background)
        sampled = sampled.astype(features.dtype)
        pose_feats, cam_shape_sampled = sampled[..., :-CAM_SHAPE_CHANNELS], sampled[..., -CAM_SHAPE_CHANNELS:]
        return self._regress(pose_feats, cam_shape_sampled) | {"pred_segm_mask": part_logits} | extra

    def _regress(self, pose_feats, cam_shape_feats):
        """pose_feats [N, 24, C], cam_shape_feats [N, 24, 64] -> pose, shape, camera."""
        n = pose_feats.shape[0]
        flat = jnp.swapaxes(cam_shape_feats, 1, 2).reshape(n, -1)  # channel-major: index c * 24 + j
        pose6d = self.pose_mlp(pose_feats)
        shape, cam = self.shape_mlp(flat), self.cam_mlp(flat)
        if self.config.mean_offset != "none":
            shape = shape + self.init_shape[...].astype(shape.dtype)
            cam = cam + self.init_cam[...].astype(cam.dtype)
        if self.config.mean_offset == "pose_shape_cam":
            pose6d = pose6d + self.init_pose[...].reshape(1, NUM_JOINTS, 6).astype(pose6d.dtype)
        return {"pred_pose": rot6d_to_matrix(pose6d.astype(jnp.float32)),
                "pred_pose_6d": pose6d, "pred_shape": shape, "pred_cam": cam}
