"""Training images/s of PARE (HRNet-W32 by default, 224 px) in JAX next to the same network trained in PyTorch.

    python benchmarks/train_step.py                          # CPU: batch 8, float32
    python benchmarks/train_step.py --batch 256 --dtype bfloat16 --steps 20     # on a GPU

Ours: the full jitted train step of pare_jax.train_step (network, SMPL with the 49 joints, all PARE losses, Adam).
Reference: the same architecture in torch.nn (pare_jax.convert.torch_reference) with Adam on the network-level
terms (part cross-entropy at 224 px, squared errors on pose, shape and camera); it lacks the SMPL forward, which
costs well under 1% of the step at this size, so the comparison slightly favours the reference.
Also prints the model FLOP utilisation of our step on a GPU (XLA's flop count / step time / peak).
"""
import argparse
import os
import resource
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import nnx

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import smpl_jax  # noqa: E402
from pare_jax import schedules  # noqa: E402
from pare_jax.models.pare import build_model  # noqa: E402
from pare_jax.train_step import init_train_state, make_train_step  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0}


def random_batch(batch, size, rng):
    return {
        "img": rng.normal(size=(batch, size, size, 3)).astype(np.float32),
        "keypoints": np.concatenate([rng.uniform(-1, 1, (batch, 49, 2)), np.ones((batch, 49, 1))], -1)
        .astype(np.float32),
        "joints3d": np.concatenate([rng.normal(size=(batch, 24, 3)) * 0.3, np.ones((batch, 24, 1))], -1)
        .astype(np.float32),
        "has_joints3d": np.ones(batch, np.float32), "has_smpl": np.ones(batch, np.float32),
        "pose": (rng.normal(size=(batch, 72)) * 0.2).astype(np.float32),
        "betas": np.zeros((batch, 10), np.float32),
        "part_map": rng.integers(0, 25, (batch, size, size)).astype(np.int32),
        "has_part_map": np.ones(batch, np.float32),
    }


def loss_config():
    return ml_collections.ConfigDict(dict(weights=dict(keypoints_2d=300.0, keypoints_3d=300.0, pose=60.0,
                                                       betas=0.06, camera=60.0, part=60.0), part_until_step=-1))


def ours(backbone, batch, size, dtype, steps):
    optim = ml_collections.ConfigDict(dict(lr=1e-4, schedule="constant", warmup_steps=0, b1=0.9, b2=0.999,
                                           grad_clip_norm=0.0))
    tx = schedules.optimizer(optim, 1000)
    graphdef, state = init_train_state(build_model(dict(backbone=backbone, head="pare"), rngs=nnx.Rngs(0)), tx)
    body = smpl_jax.load("open")
    data = jax.device_put(random_batch(batch, size, np.random.default_rng(0)))
    step = jax.jit(make_train_step(graphdef, tx, loss_config(), "parts", dtype), donate_argnums=0)
    compiled = step.lower(state, data, body).compile()
    flops = (compiled.cost_analysis() or {}).get("flops", float("nan"))
    state, metrics = step(state, data, body)  # warm-up
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        state, metrics = step(state, data, body)
        jax.block_until_ready(metrics["loss"])
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), flops


def reference(backbone, batch, size, steps):
    import torch
    import torch.nn.functional as F

    from pare_jax.convert.torch_reference import build_reference
    from pare_jax.models.config import ModelConfig
    net = build_reference(ModelConfig(backbone=backbone)).train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-4)
    rng = np.random.default_rng(0)
    images = torch.tensor(rng.normal(size=(batch, 3, size, size)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 25, (batch, size, size)), dtype=torch.long)

    def step():
        out = net(images)
        logits = F.interpolate(out["pred_segm_mask"], size=(size, size), mode="bilinear", align_corners=False)
        loss = 60 * F.cross_entropy(logits, labels) + 60 * out["pred_pose"].square().mean() \
            + 0.06 * out["pred_shape"].square().mean() + 60 * torch.exp(-10 * out["pred_cam"][:, 0]).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="hrnet_w32", choices=["hrnet_w32", "resnet50", "hrnet_w8", "hrnet_tiny"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--no-reference", action="store_true")
    args = parser.parse_args()
    seconds, flops = ours(args.backbone, args.batch, args.size, args.dtype, args.steps)
    kind = jax.devices()[0].device_kind
    print(f"device: {kind} ({jax.default_backend()}), {args.backbone}, {args.size} px, batch {args.batch}, "
          f"{args.dtype}; training images/s (higher is better)")
    ref = float("nan") if args.no_reference or jax.default_backend() != "cpu" else \
        args.batch / reference(args.backbone, args.batch, args.size, args.steps)
    rate = args.batch / seconds
    print(f"{'torch':>10} {'pare_jax':>10} {'ratio':>7}")
    print(f"{ref:>10.2f} {rate:>10.2f} {rate / ref:>6.2f}x")
    peak = next((v for k, v in PEAK_BF16_TFLOPS.items() if k in kind), None)
    if peak and flops == flops:
        print(f"model FLOP utilisation: {flops / seconds / (peak * 1e12):.1%} of {peak:.0f} TFLOP/s "
              f"({flops / 1e12:.2f} TFLOP per step)")
    # The allocator's high-water mark over the whole run (model, optimizer state, batch, step); CPUs report none.
    memory = (jax.devices()[0].memory_stats() or {}).get("peak_bytes_in_use")
    print(f"peak device memory: {memory / 2**30:.2f} GiB" if memory else "peak device memory: n/a")
    print(f"peak host memory (max RSS of this process, both sides): "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    main()
