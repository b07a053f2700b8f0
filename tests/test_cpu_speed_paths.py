"""The CPU speed paths (benchmarks/README.md): the phase-decomposed deconvolution, the block-output barriers and
the XLA flags that `import pare_jax` sets. Values must not change; only how XLA computes them."""
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pare_jax import xla_flags
from pare_jax.models import layers


def _dilated_reference(x, kernel, stride, padding):
    edge = kernel.shape[0] - 1 - padding
    return jax.lax.conv_general_dilated(x, kernel, (1, 1), ((edge, edge), (edge, edge)), lhs_dilation=(stride, stride),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=jax.lax.Precision.HIGHEST)


@pytest.mark.parametrize("kernel, stride, padding", [(4, 2, 1), (2, 2, 0), (3, 1, 1), (6, 2, 2), (5, 3, 1),
                                                     (3, 2, 0)])  # the last: output not stride x input, fallback
def test_transposed_conv_equals_the_input_dilated_convolution_with_its_gradients(kernel, stride, padding):
    layer = layers.TransposedConv(3, 4, kernel, stride, padding, rngs=nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 5, 7, 3)), jnp.float32)
    w = layer.kernel[...]
    ours = lambda x, w: layer.__class__.__call__(_with_kernel(layer, w), x)  # noqa: E731
    ref = lambda x, w: _dilated_reference(x, w, stride, padding)  # noqa: E731
    with jax.default_matmul_precision("highest"):
        np.testing.assert_allclose(ours(x, w), ref(x, w), atol=1e-5)
        assert ours(x, w).shape == ((x.shape[0], (5 - 1) * stride - 2 * padding + kernel,
                                     (7 - 1) * stride - 2 * padding + kernel, 4))
        cotangent = jnp.asarray(np.random.default_rng(2).normal(size=ref(x, w).shape), jnp.float32)
        grads = jax.vjp(ours, x, w)[1](cotangent)
        ref_grads = jax.vjp(ref, x, w)[1](cotangent)
    for got, want in zip(grads, ref_grads):
        np.testing.assert_allclose(got, want, atol=1e-4)


def _with_kernel(layer, kernel):
    clone = nnx.clone(layer)
    clone.kernel.set_value(kernel)
    return clone


def test_pare_deconvolutions_compile_without_input_dilation():
    """The point of the decomposition: no input-dilated convolution (XLA:CPU's slow path) in the forward pass."""
    layer = layers.TransposedConv(3, 4, rngs=nnx.Rngs(0))
    text = jax.jit(lambda x: layer(x)).lower(jnp.zeros((1, 4, 4, 3))).as_text()
    dilations = re.findall(r"lhs_dilate = \[([0-9, ]+)\]", text)
    assert dilations and set(dilations) == {"1, 1"}, dilations


def test_block_output_is_the_identity_for_values_and_gradients():
    x = jnp.linspace(-2.0, 2.0, 12).reshape(3, 4)
    np.testing.assert_array_equal(layers.block_output(x), x)
    np.testing.assert_array_equal(jax.grad(lambda x: jnp.sum(layers.block_output(x) ** 2))(x), 2 * x)


def test_the_flags_are_in_effect_in_this_process_and_keep_the_barriers():
    """conftest imports nothing of jax before pare_jax, so the flags must be set, and XLA must keep the barrier
    (without the flag it expands it away before fusion)."""
    for flag in xla_flags.CPU_FLAGS + xla_flags.GENERIC_FLAGS:
        assert flag in os.environ.get("XLA_FLAGS", ""), flag
    compiled = jax.jit(lambda x: layers.block_output(jnp.sin(x)) * 2).lower(jnp.ones(4)).compile().as_text()
    assert "opt-barrier" in compiled


def test_wanted_flags_keeps_what_the_user_set_and_spares_accelerators():
    assert xla_flags.wanted_flags("", accelerator=False) == list(xla_flags.CPU_FLAGS + xla_flags.GENERIC_FLAGS)
    assert xla_flags.wanted_flags("", accelerator=True) == list(xla_flags.CPU_FLAGS)
    mine = "--xla_cpu_experimental_ynn_fusion_type=dot --xla_disable_hlo_passes=foo"
    assert xla_flags.wanted_flags(mine, accelerator=False) == []


def test_apply_can_be_switched_off_and_never_repeats_a_flag(monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "--xla_force_host_platform_device_count=2")
    monkeypatch.setenv("PARE_JAX_XLA_FLAGS", "0")
    assert xla_flags.apply() == []
    assert os.environ["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    monkeypatch.setenv("PARE_JAX_XLA_FLAGS", "1")
    monkeypatch.setattr(xla_flags, "_backends_started", lambda: False)
    monkeypatch.setattr(xla_flags, "_has_accelerator_plugin", lambda: False)
    added = xla_flags.apply()
    assert added == list(xla_flags.CPU_FLAGS + xla_flags.GENERIC_FLAGS)
    assert os.environ["XLA_FLAGS"].startswith("--xla_force_host_platform_device_count=2 ")
    assert xla_flags.apply() == []  # already there


def test_apply_after_jax_started_warns_instead_of_changing_nothing_silently(monkeypatch, caplog):
    monkeypatch.setenv("XLA_FLAGS", "")
    monkeypatch.setattr(xla_flags, "_backends_started", lambda: True)
    monkeypatch.setattr(xla_flags, "_has_accelerator_plugin", lambda: False)
    assert xla_flags.apply() == []
    assert os.environ["XLA_FLAGS"] == ""
    assert "import pare_jax before" in caplog.text
