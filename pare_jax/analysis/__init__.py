"""Analyses of trained models (they read models through pare_jax.trained; training never imports them).

    occlusion: the paper's occlusion sensitivity analysis (python -m pare_jax.analysis.occlusion)
    pictures:  the heatmaps and body pictures it draws
"""
