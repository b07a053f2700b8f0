"""Inference images/s of PARE (HRNet-W32 and ResNet-50 backbones, full size, 224 px, random weights) in JAX,
side by side with the same architecture built from torch.nn in this script's process (the reference).

    python benchmarks/model_forward.py                 # CPU default: both backbones, batch 1, 8, 64, float32
    python benchmarks/model_forward.py --backbones resnet50 --batches 8 --repeats 5
    python benchmarks/model_forward.py --xla-flags=--xla_cpu_use_xnnpack=true    # XLA:CPU with XNNPACK
    python benchmarks/model_forward.py --batches 1,8,64,256 --dtypes float32,bfloat16          # on a GPU

Ours: pare_jax.models.predict (jitted, BatchNorm folded into the convolutions, ahead-of-time compiled; the
compile time is printed separately), the network only (body=None), as is the reference. Reference:
pare_jax.convert.torch_reference in eval mode under torch.inference_mode, NCHW, torch.set_num_threads = the
machine's cores; bfloat16 through torch.autocast. Each figure is the best of --repeats timed runs (after a
small warm-up for torch; ours is compiled ahead of time), ours and the reference timed in turns so that both see the
same background load. The authors' PyTorch model does about 5.4 img/s (HRNet-W32)
and 9.6 img/s (ResNet-50) at batch 8 on a 2-core CPU.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="hrnet_w32,resnet50")
    parser.add_argument("--batches", default=None, help="default 1,8,64 on a CPU, 1,8,64,256 on a GPU")
    parser.add_argument("--dtypes", default=None, help="default float32 on a CPU, float32,bfloat16 on a GPU")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 3, 1 for batch >= 64 on CPU)")
    parser.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS before jax starts")
    parser.add_argument("--no-reference", action="store_true", help="skip the PyTorch side")
    return parser.parse_args()


ARGS = parse_args()
if ARGS.xla_flags:
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + ARGS.xla_flags).strip()

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from pare_jax.models import build_model, inference_split  # noqa: E402
from timing import interleaved_best  # noqa: E402 (benchmarks/timing.py)
from pare_jax.models.pare import _predict  # noqa: E402


def ours(backbone, batch, dtype):
    """(run, compile seconds): a callable that runs the jitted predict once, and its compile time."""
    graphdef, state = inference_split(build_model(dict(backbone=backbone), rngs=nnx.Rngs(0)))
    images = jax.device_put(np.random.default_rng(0).normal(size=(batch, 224, 224, 3)).astype(np.float32))
    start = time.perf_counter()
    compiled = _predict.lower(graphdef, state, None, images, dtype).compile()
    compile_s = time.perf_counter() - start
    return (lambda: jax.block_until_ready(compiled(state, None, images))), compile_s


def reference(torch, backbone, batch, dtype):
    """A callable that runs the torch.nn model once (after a warm-up run on at most 2 images: it initialises
    the libraries; at batch 64 a full warm-up would double the benchmark's time)."""
    from pare_jax.convert.torch_reference import build_reference
    device = "cuda" if torch.cuda.is_available() else "cpu"
    net = build_reference(dict(backbone=backbone)).eval().to(device)
    images = torch.randn(batch, 3, 224, 224, device=device)
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=dtype == "bfloat16")

    def run(images=images):
        with torch.inference_mode(), autocast:
            net(images)["pred_pose"].sum().item()  # .item() waits for the device

    run(images[:2])
    return run


def main():
    on_cpu = jax.default_backend() == "cpu"
    batches = [int(b) for b in (ARGS.batches or ("1,8,64" if on_cpu else "1,8,64,256")).split(",")]
    dtypes = (ARGS.dtypes or ("float32" if on_cpu else "float32,bfloat16")).split(",")
    torch = None
    if not ARGS.no_reference:
        import torch
        torch.set_num_threads(os.cpu_count())
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"{os.cpu_count()} CPU cores, XLA_FLAGS={os.environ.get('XLA_FLAGS', '')!r}"
          + (f"; torch {torch.__version__}" if torch else "")
          + f"; load average {os.getloadavg()[0]:.1f}")
    print(f"{'model':10} {'batch':>5} {'dtype':>8} {'ours img/s':>11} {'torch img/s':>12} {'ratio':>6} "
          f"{'compile s':>10}")
    for backbone in ARGS.backbones.split(","):
        for dtype in dtypes:
            for batch in batches:
                repeats = ARGS.repeats or (1 if on_cpu and batch >= 64 else 3)
                run_ours, compile_s = ours(backbone, batch, jnp.dtype(dtype).name)
                runs = [run_ours] + ([reference(torch, backbone, batch, dtype)] if torch else [])
                seconds = interleaved_best(runs, repeats) + [float("nan")]
                ours_ips, ref_ips = batch / seconds[0], batch / seconds[1]
                print(f"{backbone:10} {batch:5d} {dtype:>8} {ours_ips:11.2f} {ref_ips:12.2f} "
                      f"{ours_ips / ref_ips:6.2f} {compile_s:10.1f}", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other processes share these cores)")


if __name__ == "__main__":
    main()
