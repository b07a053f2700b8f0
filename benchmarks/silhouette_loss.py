"""Cost of LASOR's silhouette term: the jitted train step of configs/synthetic.py-like settings (hrnet_w8 at
64 px, batch 32, the open body) without the term, and with it on the full mesh and on vertex-clustered meshes.

    python benchmarks/silhouette_loss.py [--steps 5] [--cells 0,0.02,0.03,0.05] [--samples 0,8]

--samples: loss.silhouette_samples values (0: the whole batch; configs/synthetic.py:lasor renders 8 of 32).
"""
import argparse
import os
import sys
import time

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import smpl_jax  # noqa: E402
from configs import synthetic  # noqa: E402
from pare_jax import losses, schedules  # noqa: E402
from pare_jax.models.pare import build_model  # noqa: E402
from pare_jax.train_step import init_train_state, make_train_step, silhouette_mesh  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_step import random_batch  # noqa: E402


def time_step(config, body, batch, silhouette, steps):
    tx = schedules.optimizer(config.optim, config.num_steps)
    graphdef, state = init_train_state(build_model(config.model, rngs=nnx.Rngs(0)), tx,
                                       losses.initial_log_variances(config.loss))
    step = jax.jit(make_train_step(graphdef, tx, config.loss, config.model.part_supervision, num_steps=100,
                                   silhouette=silhouette), donate_argnums=0)
    start = time.perf_counter()
    state, metrics = step(state, batch, body)
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        state, metrics = step(state, batch, body)
    jax.block_until_ready(metrics)
    return compile_s, (time.perf_counter() - start) / steps, float(metrics["loss"])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--cells", default="0,0.03,0.05")
    parser.add_argument("--samples", default="0", help="loss.silhouette_samples values, e.g. 0,8")
    args = parser.parse_args()
    config = synthetic.get_config("")
    body = smpl_jax.load("open")
    rng = np.random.default_rng(0)
    batch = random_batch(args.batch, 64, rng)
    sil = np.zeros((args.batch, 64, 64, 2), np.float32)
    sil[:, 8:56, 20:44] = 1.0
    batch |= {"silhouette": sil, "has_silhouette": np.ones(args.batch, np.float32)}
    batch = jax.device_put(batch)
    print(f"{jax.devices()[0].platform}, batch {args.batch}, hrnet_w8 at 64 px, {args.steps} timed steps")
    print(f"{'variant':46s} {'vertices':>8s} {'faces':>6s} {'compile s':>9s} {'step ms':>8s}")
    c, t, _ = time_step(config, body, batch, None, args.steps)
    print(f"{'ours without the silhouette term':46s} {'-':>8s} {'-':>6s} {c:9.1f} {t * 1e3:8.1f}")
    config.loss.weights.silhouette = 6.0
    config.loss.weighting = "uncertainty"
    for cell in (float(x) for x in args.cells.split(",")):
        ids, faces = silhouette_mesh(body, cell)
        for samples in (int(x) for x in args.samples.split(",")):
            config.loss.silhouette_samples = samples
            c, t, _ = time_step(config, body, batch, (ids, faces), args.steps)
            name = f"ours with it, cell {cell:g} m" + (" (full mesh)" if cell == 0 else "") + (
                f", {samples} samples" if samples else "")
            print(f"{name:46s} {len(ids):8d} {len(faces):6d} {c:9.1f} {t * 1e3:8.1f}")


if __name__ == "__main__":
    main()
