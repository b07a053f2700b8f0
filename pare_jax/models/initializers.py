"""Parameter initializers that sample on the host, and a shape-only mode for abstract models.

On a CPU every distinct jax.random call compiles an XLA program (~0.3-0.8 s each on a 2-core machine), so
building HRNet-W32 eagerly took minutes and under jit nearly two; sampling with numpy makes it a second. When
the key is a tracer (a jitted or eval_shape'd constructor) the jax initializer runs instead, so a model built
under a transform still gets proper random weights. The numpy stream is seeded from the key: a seed still fixes
the weights (they are not bit-equal to jax's draws).
"""
import contextlib
import contextvars

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

_SHAPE_ONLY = contextvars.ContextVar("shape_only", default=False)


@contextlib.contextmanager
def shape_only_init():
    """Within this context the host initializers return jax.ShapeDtypeStructs, not arrays: for building a model
    only to read its shapes (pare.abstract_model)."""
    token = _SHAPE_ONLY.set(True)
    try:
        yield
    finally:
        _SHAPE_ONLY.reset(token)


def _fans(shape, in_axis, out_axis):
    receptive = int(np.prod([d for i, d in enumerate(shape) if i not in (in_axis % len(shape),
                                                                          out_axis % len(shape))]))
    return shape[in_axis] * receptive, shape[out_axis] * receptive


def _host_initializer(jax_init, sample):
    """init(key, shape, dtype): sample(numpy Generator, shape) for a concrete key, jax_init under tracing."""

    def init(key, shape, dtype=jnp.float32):
        if isinstance(key, jax.core.Tracer):
            return jax_init(key, shape, dtype)
        if _SHAPE_ONLY.get():
            return jax.ShapeDtypeStruct(tuple(shape), dtype)
        rng = np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())
        return jnp.asarray(sample(rng, tuple(shape)), dtype)

    return init


def variance_scaling(scale, mode, distribution, in_axis=-2, out_axis=-1):
    """jax's variance_scaling with an untruncated "normal" or a "uniform" distribution."""

    def sample(rng, shape):
        fan_in, fan_out = _fans(shape, in_axis, out_axis)
        variance = scale / {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        if distribution == "uniform":
            limit = np.sqrt(3.0 * variance)
            return rng.uniform(-limit, limit, shape)
        return rng.normal(0.0, np.sqrt(variance), shape)

    jax_init = nnx.initializers.variance_scaling(scale, mode, distribution, in_axis=in_axis, out_axis=out_axis)
    return _host_initializer(jax_init, sample)


HE_NORMAL = variance_scaling(2.0, "fan_in", "normal")
LECUN_NORMAL = variance_scaling(1.0, "fan_in", "normal")
