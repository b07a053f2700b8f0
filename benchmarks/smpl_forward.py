"""Bodies per second of smpl_jax next to smplx (PyTorch), in one run on the same machine.

    python benchmarks/smpl_forward.py                 # batch 1, 64, 512 (and 4096 on a GPU)
    python benchmarks/smpl_forward.py --batches 512 --repeats 20

Both run a random SMPL-format body with the official sizes (6890 vertices, 13776 faces, 10 betas, 207 pose
correctives), axis-angle poses, float32. smplx runs under torch.no_grad() with torch's default threads; smpl_jax
runs jitted on jax's default device. "joints only" is smpl_jax with return_verts=False and the 24 SMPL joints
(smplx has no such path, so its ratio is against smplx's full forward). smplx is needed only here and in tests.
"""
import argparse
import os
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import smpl_jax  # noqa: E402
from smpl_fixtures import random_smpl_arrays, write_npz  # noqa: E402


def time_interleaved(fns, repeats):
    """Median seconds per call of each function, calling them in turn each round so that all of them see the
    same machine load (other processes, frequency changes)."""
    for fn in fns.values():
        fn()  # warm-up: compilation, allocator
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def smpl_jax_forward(body, batch, return_verts):
    rng = np.random.default_rng(0)
    args = [jnp.asarray(rng.normal(size=s) * 0.3, jnp.float32) for s in ((batch, 10), (batch, 69), (batch, 3))]

    @jax.jit
    def forward(body, betas, pose, orient):
        out = body(betas=betas, body_pose=pose, global_orient=orient, return_verts=return_verts)
        return out.vertices if return_verts else out.joints

    return lambda: forward(body, *args).block_until_ready()


def smplx_forward(arrays, batch):
    import smplx
    import torch
    from smplx.utils import Struct

    model = smplx.SMPL("unused", data_struct=Struct(**arrays), num_betas=10, batch_size=batch)
    rng = np.random.default_rng(0)
    betas, pose, orient = (torch.tensor(rng.normal(size=s) * 0.3, dtype=torch.float32)
                           for s in ((batch, 10), (batch, 69), (batch, 3)))

    def run():
        with torch.no_grad():
            model(betas=betas, body_pose=pose, global_orient=orient)

    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="*", default=None)
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds at batch >= 64 (10x at smaller)")
    parser.add_argument("--no-smplx", action="store_true", help="skip the reference (e.g. where torch is absent)")
    args = parser.parse_args()
    on_gpu = jax.default_backend() != "cpu"
    batches = args.batches or ([1, 64, 512, 4096] if on_gpu else [1, 64, 512])
    arrays = random_smpl_arrays(0)
    with tempfile.TemporaryDirectory() as tmp:
        write_npz(os.path.join(tmp, "body.npz"), arrays)
        body = smpl_jax.load(os.path.join(tmp, "body.npz"))
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), float32, bodies/s (higher is better)")
    print(f"{'batch':>6} {'smplx':>10} {'smpl_jax':>10} {'ratio':>7} {'joints only':>12} {'ratio':>7}")
    for batch in batches:
        fns = {"ours": smpl_jax_forward(body, batch, True), "joints": smpl_jax_forward(body, batch, False)}
        if not args.no_smplx:
            fns["smplx"] = smplx_forward(arrays, batch)
        repeats = args.repeats if batch >= 64 else 10 * args.repeats
        rate = {name: batch / sec for name, sec in time_interleaved(fns, repeats).items()}
        ref = rate.get("smplx", float("nan"))
        print(f"{batch:>6} {ref:>10.0f} {rate['ours']:>10.0f} {rate['ours'] / ref:>6.1f}x {rate['joints']:>12.0f} "
              f"{rate['joints'] / ref:>6.1f}x", flush=True)


if __name__ == "__main__":
    main()
