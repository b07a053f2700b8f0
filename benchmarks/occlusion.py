"""Occlusion sensitivity speed: patch positions per second of pare_jax.analysis.occlusion (all positions of an
image through the network in equal jitted chunks) against the same model called once per position (the
authors' way: paint the patch, run one image, read the errors back, next position), in the same process.

    python benchmarks/occlusion.py                                          # CPU default: hrnet_w8, 64 px, dense
    python benchmarks/occlusion.py --backbone hrnet_w32 --image-size 224 --stride 40 --max-positions 36
    python benchmarks/occlusion.py                                          # on a GPU: HRNet-W32, 224 px, 28 x 28

Random weights (the speed does not depend on them), the bundled open body for the joints, one image. Defaults:
on a CPU hrnet_w8 at 64 px, on a GPU hrnet_w32 at 224 px; the patch is the paper's 40 px at 224 px scaled to the
image size, the stride the dense grid's 8 px at 224 px scaled (2 px at 64 px: 32 x 32 positions; 8 px at 224 px:
28 x 28). --max-positions times only the first N positions of the grid on both sides (a rate per position; the
per-position loop of HRNet-W32 over 784 positions takes minutes on a CPU). Both sides are compiled before timing
(compile seconds printed apart) and timed in turns, best of --repeats, so that both see the same background
load. On a GPU the script also prints the time of the whole dense grid for one image (target: under 1 s).
"""
import argparse
import os
import sys
import time
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import smpl_jax  # noqa: E402
from pare_jax.analysis import occlusion  # noqa: E402
from timing import interleaved_best  # noqa: E402 (benchmarks/timing.py)
from pare_jax.models import build_model, inference_split  # noqa: E402


def parse_args(on_cpu):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="hrnet_w8" if on_cpu else "hrnet_w32")
    parser.add_argument("--image-size", type=int, default=64 if on_cpu else 224)
    parser.add_argument("--patch-size", type=int, default=None, help="default: 40 px at 224 px, scaled")
    parser.add_argument("--stride", type=int, default=None, help="default: 8 px at 224 px, scaled")
    parser.add_argument("--chunk", type=int, default=64, help="positions per jitted call (ours)")
    parser.add_argument("--max-positions", type=int, default=0, help="time only the first N positions (0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    return parser.parse_args()


def main():
    on_cpu = jax.default_backend() == "cpu"
    args = parse_args(on_cpu)
    size = args.image_size
    patch = args.patch_size or occlusion.default_patch_size(size)
    stride = args.stride or max(1, round(8 * size / 224))
    boxes, grid = occlusion.patch_boxes(size, size, patch, stride)
    boxes = boxes[:args.max_positions] if args.max_positions else boxes
    graphdef, state = inference_split(build_model(dict(backbone=args.backbone), rngs=nnx.Rngs(0)))
    model = types.SimpleNamespace(graphdef=graphdef, state=state, body=smpl_jax.load("open"))
    image = np.random.default_rng(0).normal(size=(size, size, 3)).astype(np.float32)
    gt = np.zeros((14, 3), np.float32)

    def ours():
        occlusion.position_errors(model, image, gt, boxes, args.chunk, args.dtype)

    def one_per_position():
        for box in boxes:
            occlusion.position_errors(model, image, gt, box[None], 1, args.dtype)

    compile_s = []
    for run in (ours, lambda: occlusion.position_errors(model, image, gt, boxes[:1], 1, args.dtype)):
        start = time.perf_counter()
        run()  # compiles (and runs once)
        compile_s.append(time.perf_counter() - start)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), {os.cpu_count()} CPU "
          f"cores; load average {os.getloadavg()[0]:.1f}")
    print(f"{args.backbone} at {size} px, {args.dtype}, patch {patch} px, stride {stride} px: grid {grid[0]} x "
          f"{grid[1]}, timing {len(boxes)} positions; chunk {min(args.chunk, len(boxes))}")
    seconds = interleaved_best([ours, one_per_position], args.repeats)
    rates = [len(boxes) / s for s in seconds]
    print(f"{'':24} {'positions/s':>12} {'compile+1st s':>14}")
    print(f"{'ours (chunked, jitted)':24} {rates[0]:12.1f} {compile_s[0]:14.1f}")
    print(f"{'one call per position':24} {rates[1]:12.1f} {compile_s[1]:14.1f}")
    print(f"ratio ours / one per position: {rates[0] / rates[1]:.2f}")
    if not on_cpu:
        full = grid[0] * grid[1] / rates[0]
        print(f"whole {grid[0]} x {grid[1]} grid of one {size} px image: {full:.3f} s (target: under 1 s)")
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other processes share these cores)")


if __name__ == "__main__":
    main()
