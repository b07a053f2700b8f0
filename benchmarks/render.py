"""Part-label maps per second of pare_jax.render next to a brute-force reference, in one run on the same machine.

    python benchmarks/render.py                          # batch 64 on the CPU (512 on an accelerator)
    python benchmarks/render.py --batch 256 --repeats 7 --reference-rows 16

Meshes: "body-like", ten capsules placed like a standing person 1.8 m tall with SMPL's sizes (6890 vertices,
13776 faces; pare_jax.render.shapes.body_like_mesh), and the bundled open body (smpl_jax.load("open"), 13492
vertices, 26972 faces) when present, in its rest pose turned to camera axes. Each map of the batch turns the
body by a random yaw in +-30 deg and places it at a random depth of 40-50 m (filling about 180-220 px of the
224 px crop with PARE's label camera: focal 5000, centre 112, R = I) with a small random shift.
Ours: render_part_labels_batch, jitted, median of --repeats timed calls after a warm-up. Reference: the numpy
float64 every-pixel-against-every-face rasterizer (pare_jax.render.reference) on --reference-rows evenly spaced
rows of the first map, timed once and extrapolated to 224 rows; our labels are compared with it on those rows.
Also reported, ours only: full Fragments (depth and barycentrics too) and the soft silhouette (sigma 1 px^2),
forward and forward + gradient, on the first 8 maps.
"""
import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pare_jax import render  # noqa: E402
from pare_jax.render import reference, shapes  # noqa: E402

SIZE = 224


def posed_batch(vertices, batch, seed=0):
    """vertices [V, 3] (camera axes, centred) -> [B, V, 3] turned by random yaws, translations [B, 3]."""
    rng = np.random.default_rng(seed)
    yaw = rng.uniform(-np.pi / 6, np.pi / 6, batch)
    cos, sin, zero, one = np.cos(yaw), np.sin(yaw), np.zeros(batch), np.ones(batch)
    turn = np.stack([np.stack([cos, zero, sin], 1), np.stack([zero, one, zero], 1),
                     np.stack([-sin, zero, cos], 1)], 1)
    translation = np.stack([rng.normal(0, 0.03, batch), rng.normal(0, 0.03, batch),
                            rng.uniform(40.0, 50.0, batch)], 1)
    return (jnp.asarray(np.einsum("bij,vj->bvi", turn, vertices), jnp.float32),
            jnp.asarray(translation, jnp.float32))


def open_body():
    """The bundled open body in its rest pose, y down (camera axes), centred; None when not installed."""
    try:
        import smpl_jax
        body = smpl_jax.load("open")
    except Exception as error:  # the open body is optional here
        print(f"(open body not measured: {error})")
        return None
    out = body(betas=jnp.zeros((1, 10)), body_pose=jnp.zeros((1, 69)), global_orient=jnp.zeros((1, 3)))
    vertices = np.asarray(out.vertices[0]) * np.array([1.0, -1.0, -1.0])  # SMPL y up -> image y down
    vertices -= (vertices.max(0) + vertices.min(0)) / 2
    return vertices.astype(np.float32), np.asarray(body.faces), np.asarray(body.vertex_parts())


def median_seconds(fn, repeats):
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def measure(name, vertices, faces, parts, args):
    batch_vertices, translation = posed_batch(vertices, args.batch)
    faces_j, parts_j = jnp.asarray(faces), jnp.asarray(parts)
    K = render.pare_label_camera()
    eye = jnp.eye(3)
    # faces and labels go in as arguments: closed-over arrays become constants that XLA folds into slower code.
    labels_fn = jax.jit(lambda v, t, f, p: render.render_part_labels_batch(v, f, p, t))
    frags_fn = jax.jit(lambda v, t, f: render.rasterize_batch(v, f, K, eye, t, SIZE, SIZE).depth)
    soft_fn = jax.jit(jax.vmap(lambda v, t, f: render.soft_silhouette(v, f, K, eye, t, SIZE, SIZE, sigma=1.0),
                               in_axes=(0, 0, None)))
    soft_grad_fn = jax.jit(jax.grad(lambda v, t, f: jnp.sum(soft_fn(v, t, f) ** 2)))
    ours = median_seconds(lambda: labels_fn(batch_vertices, translation, faces_j, parts_j), args.repeats) / args.batch
    frags = median_seconds(lambda: frags_fn(batch_vertices, translation, faces_j),
                           max(args.repeats // 2, 1)) / args.batch
    few = slice(0, min(args.batch, 8))
    soft = median_seconds(lambda: soft_fn(batch_vertices[few], translation[few], faces_j), 1) / (few.stop - few.start)
    soft_grad = median_seconds(lambda: soft_grad_fn(batch_vertices[few], translation[few], faces_j), 1) / (
        few.stop - few.start)

    rows = np.linspace(0, SIZE - 1, args.reference_rows).round().astype(int)
    start = time.perf_counter()
    face_index, _, ambiguous = reference.rasterize_reference(
        np.asarray(batch_vertices[0]), faces, np.asarray(K), np.eye(3), np.asarray(translation[0]), SIZE, SIZE,
        rows=rows, pixel_chunk=128)
    reference_per_map = (time.perf_counter() - start) * SIZE / len(rows)
    expected = np.where(face_index >= 0, parts[faces].min(1)[np.maximum(face_index, 0)] + 1, 0)[rows]
    got = np.asarray(labels_fn(batch_vertices, translation, faces_j, parts_j))[0][rows]
    checked = ~ambiguous[rows]

    print(f"{name}: {len(vertices)} vertices, {len(faces)} faces, {SIZE}x{SIZE}, batch {args.batch}, "
          f"{jax.devices()[0].platform}; body covers {np.mean(got > 0):.0%} of the reference rows")
    print(f"  pare_jax.render part labels  {1 / ours:10.1f} maps/s  ({ours * 1e3:.2f} ms/map)")
    print(f"  brute-force numpy reference  {1 / reference_per_map:10.4f} maps/s  ({reference_per_map:.1f} s/map, "
          f"timed on {len(rows)} of {SIZE} rows of one map, extrapolated)")
    print(f"  ratio ours / reference       {reference_per_map / ours:10.0f}x")
    print(f"  agreement on those rows      {np.sum((got == expected) & checked)}/{checked.sum()} pixels "
          f"({(~checked).sum()} within 1e-3 px of an edge or tied in depth, not compared)")
    print(f"  full Fragments (depth, bary) {1 / frags:10.1f} maps/s")
    print(f"  soft silhouette, sigma 1 px^2 {1 / soft:9.1f} maps/s forward, {1 / soft_grad:.1f} maps/s forward + "
          f"gradient (batch of {few.stop})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    accelerator = jax.default_backend() != "cpu"
    parser.add_argument("--batch", type=int, default=512 if accelerator else 64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--reference-rows", type=int, default=8)
    args = parser.parse_args()
    measure("body-like mesh", *shapes.body_like_mesh(), args)
    body = open_body()
    if body is not None:
        measure("open body", *body, args)


if __name__ == "__main__":
    main()
