"""The HMR / HMR-EFT baseline head: global average pooling, then an iterative error-feedback regressor.

Starting from the mean parameters, each of 3 iterations feeds [pooled features, pose 6D (144), shape (10),
cam (3)] through fc1 -> dropout -> fc2 -> dropout (SPIN's regressor has no nonlinearity between them) and adds
the outputs of decpose / decshape / deccam to the current estimate. Names follow SPIN's regressor.
"""
import jax.numpy as jnp
from flax import nnx

from pare_jax.models.initializers import LECUN_NORMAL, variance_scaling
from pare_jax.models.layers import Buffer
from smpl_jax.rotations import rot6d_to_matrix

NUM_ITERATIONS = 3
HIDDEN = 1024
DROPOUT = 0.5
_SMALL_INIT = variance_scaling(0.01 ** 2, "fan_avg", "uniform")  # xavier_uniform, gain 0.01


class HMRHead(nnx.Module):
    """Backbone features [N, h, w, Cin] -> pred_pose [N, 24, 3, 3], pred_shape [N, 10], pred_cam [N, 3]."""

    def __init__(self, in_channels, mean_params, *, rngs):
        params_size = 24 * 6 + 10 + 3
        self.fc1 = nnx.Linear(in_channels + params_size, HIDDEN, kernel_init=LECUN_NORMAL, rngs=rngs)
        self.drop1 = nnx.Dropout(DROPOUT, rngs=rngs)
        self.fc2 = nnx.Linear(HIDDEN, HIDDEN, kernel_init=LECUN_NORMAL, rngs=rngs)
        self.drop2 = nnx.Dropout(DROPOUT, rngs=rngs)
        self.decpose = nnx.Linear(HIDDEN, 24 * 6, kernel_init=_SMALL_INIT, rngs=rngs)
        self.decshape = nnx.Linear(HIDDEN, 10, kernel_init=_SMALL_INIT, rngs=rngs)
        self.deccam = nnx.Linear(HIDDEN, 3, kernel_init=_SMALL_INIT, rngs=rngs)
        self.init_pose = Buffer(jnp.asarray(mean_params["pose"], jnp.float32).reshape(1, -1))
        self.init_shape = Buffer(jnp.asarray(mean_params["shape"], jnp.float32).reshape(1, -1))
        self.init_cam = Buffer(jnp.asarray(mean_params["cam"], jnp.float32).reshape(1, -1))

    def __call__(self, features):
        n = features.shape[0]
        pooled = features.mean(axis=(1, 2))
        pose, shape, cam = (jnp.broadcast_to(b[...].astype(pooled.dtype), (n, b.shape[1]))
                            for b in (self.init_pose, self.init_shape, self.init_cam))
        for _ in range(NUM_ITERATIONS):
            x = jnp.concatenate([pooled, pose, shape, cam], axis=-1)
            x = self.drop2(self.fc2(self.drop1(self.fc1(x))))
            pose = pose + self.decpose(x)
            shape = shape + self.decshape(x)
            cam = cam + self.deccam(x)
        pose6d = pose.reshape(n, 24, 6)
        return {"pred_pose": rot6d_to_matrix(pose6d.astype(jnp.float32)), "pred_pose_6d": pose6d,
                "pred_shape": shape, "pred_cam": cam}
