"""Self-attention across PARE's part maps (the ETH report, paper 004 of reference/): H' = H + gamma * MHSA(H).

What the report describes ("pixel" mode): flatten the part maps H to an (HW) x J matrix, Q = H W_q and
K = H W_k (HW x D_k each), A = softmax(Q K^T / sqrt(D_k)) (HW x HW), and the corrected maps H~ = A H, with the
maps themselves as the values (no value projection); H~ then replaces the part maps in PARE's spatial-softmax
attention, the losses unchanged. The report writes H~ = A (elementwise product) H, but A is HW x HW and H is
HW x J: an elementwise product of the two is not defined, and the only product that gives corrected maps of H's
shape (each pixel's part scores a mixture of the scores at the pixels it attends to) is the matrix product A H.

Added here: the residual form H + gamma * A H with gamma a learned scalar initialised to 0 (as in SAGAN),
so that a converted or trained PARE is exactly unchanged at step 0; several heads (the report does not say how
many), whose outputs are averaged since the values have no projection; and a pooling factor: 56 x 56 maps are
3,136 tokens, a 9.8M-entry attention matrix per head and image; average-pooled by 2 they are 784 tokens (16x
less). The attention runs through jax.nn.dot_product_attention, which on a GPU can take the memory-efficient
(cuDNN) path that never stores A; on a CPU it is the plain XLA implementation.

"part" mode (not in the report, offered for comparison): the 24 maps are the tokens, so A is 24 x 24 and
H~_j = sum_k A_jk H_k. Queries and keys are projected from each map resized to PART_GRID x PART_GRID (so the
parameters do not depend on the map size); the values are the full maps.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from pare_jax.models.initializers import LECUN_NORMAL
from pare_jax.models.layers import upsample_nearest

PART_GRID = 8


def pool_maps(maps, factor):
    """Average-pool [N, H, W, J] by an integer factor that divides H and W -> [N, H / f, W / f, J]."""
    n, h, w, j = maps.shape
    if h % factor or w % factor:
        raise ValueError(f"model.part_self_attention_pool={factor} must divide the part maps' size {h}x{w}")
    return maps.reshape(n, h // factor, factor, w // factor, factor, j).mean(axis=(2, 4))


class PartSelfAttention(nnx.Module):
    """maps [N, H, W, J] (the part logits that drive the attention, background dropped) -> [N, H, W, J]."""

    def __init__(self, num_maps, mode, heads, dim, pool, *, rngs):
        if mode not in ("pixel", "part"):
            raise ValueError(f"part self-attention mode must be 'pixel' or 'part', got {mode!r}")
        self.mode, self.heads, self.dim, self.pool = mode, heads, dim, pool
        features = num_maps if mode == "pixel" else PART_GRID * PART_GRID
        self.query = nnx.Linear(features, heads * dim, use_bias=False, kernel_init=LECUN_NORMAL, rngs=rngs)
        self.key = nnx.Linear(features, heads * dim, use_bias=False, kernel_init=LECUN_NORMAL, rngs=rngs)
        self.gamma = nnx.Param(jnp.zeros((), jnp.float32))

    def __call__(self, maps):
        corrected = self._pixel(maps) if self.mode == "pixel" else self._part(maps)
        return maps + self.gamma[...].astype(maps.dtype) * corrected.astype(maps.dtype)

    def _pixel(self, maps):
        """A H over the pooled pixels: [N, H, W, J] -> [N, H, W, J] (nearest upsampling back to H x W)."""
        n, _, _, j = maps.shape
        pooled = pool_maps(maps.astype(jnp.float32), self.pool)
        ph, pw = pooled.shape[1:3]
        tokens = pooled.reshape(n, ph * pw, j)  # [N, T, J]
        q = self.query(tokens).reshape(n, -1, self.heads, self.dim)
        k = self.key(tokens).reshape(n, -1, self.heads, self.dim)
        v = jnp.broadcast_to(tokens[:, :, None, :], (n, ph * pw, self.heads, j))
        # dot_product_attention wants one feature size for queries, keys and values: zero-pad the smaller side
        # (zero columns change neither Q K^T nor the values); the scale stays 1 / sqrt(D_k).
        width = max(self.dim, j)
        pad = lambda x: jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, width - x.shape[-1])))  # noqa: E731
        out = jax.nn.dot_product_attention(pad(q), pad(k), pad(v), scale=self.dim ** -0.5)[..., :j]
        out = out.mean(axis=2).reshape(n, ph, pw, j)  # heads averaged: the values carry no projection
        return upsample_nearest(out, self.pool) if self.pool > 1 else out

    def _part(self, maps):
        """A H between the J maps: [N, H, W, J] -> [N, H, W, J]."""
        n, h, w, j = maps.shape
        maps = maps.astype(jnp.float32)
        small = jax.image.resize(maps, (n, PART_GRID, PART_GRID, j), "linear", antialias=True)
        tokens = jnp.swapaxes(small.reshape(n, PART_GRID * PART_GRID, j), 1, 2)  # [N, J, 64]
        q = self.query(tokens).reshape(n, j, self.heads, self.dim)
        k = self.key(tokens).reshape(n, j, self.heads, self.dim)
        weights = jax.nn.softmax(jnp.einsum("nihd,nkhd->nhik", q, k) * self.dim ** -0.5, axis=-1)
        mixed = jnp.einsum("nik,nkyx->niyx", weights.mean(axis=1), jnp.moveaxis(maps, -1, 1))
        return jnp.moveaxis(mixed, 1, -1)
