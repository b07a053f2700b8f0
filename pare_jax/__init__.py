"""pare_jax: PARE (Part Attention Regressor, Kocabas et al. ICCV 2021) in JAX/Flax."""
from pare_jax import xla_flags as _xla_flags

_xla_flags.apply()  # before jax starts a backend: XLA reads XLA_FLAGS once
