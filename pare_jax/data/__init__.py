"""Datasets for PARE: tfds builders (SPIN/PARE-format datasets with offline part labels, and a synthetic dataset
that needs no download) and the tf.data training / evaluation pipeline.

Modules: schema (the stored example: keys and shapes), spin_format (reading and validating the SPIN/PARE npz,
cropping), offline_labels (camera translation from 2D keypoints, part maps of the ground-truth mesh),
builders (tfds builders), synthetic (scene sampler and renderer), poses (pose sampler with joint limits),
textures and occluders (procedural cut-outs, user occluder files), spin_export (synthetic scenes written in the
SPIN format), augment (PARE's augmentations in TensorFlow), pipeline (mixing, sharding, batching).
TensorFlow is imported only through pare_jax.data.tensorflow_cpu, which hides GPUs from it.
"""
