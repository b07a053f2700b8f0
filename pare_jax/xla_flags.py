"""XLA settings that make the convolutional networks train and infer faster on the CPU, applied when pare_jax is
imported (XLA reads XLA_FLAGS once, when jax starts its first backend).

Measured on the project's 2-core AMD EPYC (AVX-512) with jax 0.10.2 (benchmarks/profile_train_step.py,
benchmarks/README.md):
- `--xla_cpu_experimental_ynn_fusion_type=-individual_convolution`: jaxlib 0.10 hands every convolution to
  YNNPACK by default; XLA's own Eigen convolutions are 1.2-2.5x faster here, forward and both gradients
  (HRNet-W32's 3x3 convolutions at 56 x 56: 19.7 -> 11.6 ms forward, 22.5 -> 15.9 ms kernel gradient, batch 8).
- `--xla_disable_hlo_passes=cse_barrier_expander`: keeps the optimization barriers of
  pare_jax.models.layers.block_output until fusion, so that XLA cannot fuse a residual stream's whole
  elementwise chain into every backward convolution (in HRNet-W32 that recomputation was 94% of the op time
  of a training step, and doubled its compile time). Applied only where no GPU or TPU plugin is installed,
  since the flag reaches every backend.

Set PARE_JAX_XLA_FLAGS=0 to leave XLA_FLAGS alone. Flags already named in XLA_FLAGS are not repeated or
overridden. XLA rejects flags it does not know (the process aborts), so the flags are added only for the jaxlib
versions they were checked with.
"""
import importlib.util
import logging
import os

CPU_FLAGS = ("--xla_cpu_experimental_ynn_fusion_type=-individual_convolution",)
GENERIC_FLAGS = ("--xla_disable_hlo_passes=cse_barrier_expander",)
CHECKED_JAXLIB = ("0.10.",)
ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin",
                       "libtpu")


def _jaxlib_version():
    try:
        from jaxlib import version
        return version.__version__
    except ImportError:
        return ""


def _has_accelerator_plugin():
    return any(importlib.util.find_spec(name) is not None for name in ACCELERATOR_PLUGINS)


def _backends_started():
    try:
        from jax._src import xla_bridge
        return bool(getattr(xla_bridge, "_backends", {}))
    except ImportError:  # a jax without that module: assume it has not started, the flags are then harmless
        return False


def wanted_flags(existing, accelerator):
    """The flags to add to an XLA_FLAGS value `existing`: ours minus those whose name it already sets."""
    named = {flag.split("=")[0] for flag in existing.split()}
    flags = CPU_FLAGS + (() if accelerator else GENERIC_FLAGS)
    return [flag for flag in flags if flag.split("=")[0] not in named]


def apply():
    """Add the flags to os.environ["XLA_FLAGS"] (see the module docstring). Returns the flags added."""
    if os.environ.get("PARE_JAX_XLA_FLAGS", "1").strip().lower() in ("0", "false", "off", "no"):
        return []
    if not _jaxlib_version().startswith(CHECKED_JAXLIB):
        return []
    existing = os.environ.get("XLA_FLAGS", "")
    flags = wanted_flags(existing, _has_accelerator_plugin())
    if not flags:
        return []
    if _backends_started():
        logging.getLogger(__name__).warning(
            "jax started before pare_jax was imported, so the faster CPU settings %s are not in effect "
            "(training runs about 2x slower on the CPU): import pare_jax before running any jax computation, or "
            "set XLA_FLAGS yourself", " ".join(flags))
        return []
    os.environ["XLA_FLAGS"] = " ".join([existing.strip()] + flags).strip()
    return flags
