"""pare_jax: PARE (Part Attention Regressor, Kocabas et al. ICCV 2021) in JAX/Flax."""
