"""TensorFlow for tf.data only: import it from here so that it never claims accelerator memory.

    from pare_jax.data.tensorflow_cpu import tf

TensorFlow grabs every visible GPU at start-up by default, which would starve the JAX trainer that shares the
machine. Hiding GPUs must happen before TensorFlow initialises its devices, hence one import point for every
module of pare_jax.data that needs TensorFlow (smpl_jax never imports it).
"""
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

try:
    tf.config.set_visible_devices([], "GPU")
except RuntimeError:
    # Devices were already initialised by someone else's import; check that they did not take a GPU.
    if tf.config.get_visible_devices("GPU"):
        raise RuntimeError("TensorFlow was initialised with GPUs visible before pare_jax.data could hide them; "
                           "import pare_jax.data before any other TensorFlow use, or install tensorflow-cpu")

__all__ = ["tf"]
