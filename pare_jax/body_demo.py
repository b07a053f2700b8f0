"""Pose an SMPL-format body and write it as a mesh (.obj) and pictures (shaded overlay, part labels).

    python -m pare_jax.body_demo --out out/                      # the bundled open body, no download
    python -m pare_jax.body_demo --out out/ --model SMPL_NEUTRAL.pkl --pose sit

Writes out/body_<pose>.obj, out/body_<pose>.png (shaded, composited over a backdrop) and
out/parts_<pose>.png (the 24-part label map PARE supervises its part branch with). Every file is written to a
temporary name first and renamed, so an interrupted run leaves no half-written output.
"""
import argparse
import colorsys
import os
import sys

import jax.numpy as jnp
import numpy as np

import smpl_jax
from pare_jax import render
from pare_jax.files import write_obj, write_png

# Canonical poses as {SMPL joint name: axis-angle}; the rest stay at zero.
POSES = {
    "rest": {},
    "walk": {"left_hip": (-0.5, 0, 0), "right_hip": (0.4, 0, 0), "left_knee": (0.6, 0, 0),
             "left_shoulder": (0, 0, -1.2), "right_shoulder": (0, 0, 1.2), "left_elbow": (0, -0.5, 0),
             "right_elbow": (0, 0.5, 0)},
    "sit": {"left_hip": (-1.5, 0, 0.1), "right_hip": (-1.5, 0, -0.1), "left_knee": (1.5, 0, 0),
            "right_knee": (1.5, 0, 0), "left_shoulder": (0, 0, -1.1), "right_shoulder": (0, 0, 1.1)},
    "wave": {"left_shoulder": (0, 0, -1.2), "right_shoulder": (0, 0, 0.3), "right_elbow": (0, 1.6, 0),
             "neck": (0.2, 0.3, 0)},
}


def pose_vector(name):
    """Axis-angle body pose [1, 69] for a canonical pose name."""
    if name not in POSES:
        raise ValueError(f"unknown pose {name!r}; choose one of {sorted(POSES)}")
    aa = np.zeros((24, 3), np.float32)
    for joint, value in POSES[name].items():
        aa[smpl_jax.joints.SMPL_JOINT_NAMES.index(joint)] = value
    return aa[1:].reshape(1, 69)


def part_palette(num_labels=25):
    """[num_labels, 3] uint8 colours: black background, then evenly spread hues."""
    hues = [colorsys.hsv_to_rgb(i / (num_labels - 1), 0.65, 0.95) for i in range(num_labels - 1)]
    return np.concatenate([[[0, 0, 0]], np.round(np.asarray(hues) * 255)]).astype(np.uint8)


def framing_camera(vertices, size, focal_length=5000.0, fill=0.85):
    """K [3, 3] and t [3] that put the whole body in a square image of `size` pixels. vertices [V, 3]."""
    lo, hi = vertices.min(0), vertices.max(0)
    centre, extent = (lo + hi) / 2, float(np.max(hi[:2] - lo[:2]))
    depth = focal_length * extent / (fill * size)
    t = np.array([-centre[0], -centre[1], depth - centre[2]], np.float32)
    K = np.array([[focal_length, 0, size / 2], [0, focal_length, size / 2], [0, 0, 1]], np.float32)
    return K, t


def render_views(body, vertices, size):
    """Shaded picture [size, size, 3] uint8 and part-label picture [size, size, 3] uint8 of one posed body."""
    # SMPL is y-up and faces +z; the camera looks down +z with image y pointing down: rotate 180 deg about x.
    R = np.diag([1.0, -1.0, -1.0]).astype(np.float32)
    K, t = framing_camera(vertices @ R.T, size)
    verts, faces = jnp.asarray(vertices), body.faces
    frags = render.rasterize(verts, faces, jnp.asarray(K), jnp.asarray(R), jnp.asarray(t), size, size)
    rgb, alpha = render.shade(frags, verts, faces, jnp.asarray(R), jnp.asarray(t))
    rows = np.linspace(0.85, 0.55, size, dtype=np.float32)[:, None, None]
    backdrop = np.broadcast_to(rows * np.array([0.75, 0.82, 0.9], np.float32), (size, size, 3))
    shaded = np.asarray(render.overlay(jnp.asarray(backdrop), rgb, alpha, 1.0))
    labels = np.asarray(render.part_labels(frags, faces, body.vertex_parts()))
    to_uint8 = lambda x: np.clip(np.round(x * 255), 0, 255).astype(np.uint8)  # noqa: E731
    return to_uint8(shaded), part_palette()[labels]


def run(out_dir, model="open", pose="walk", size=512):
    """Pose `model` and write the .obj and the two pictures into out_dir. Returns the paths written."""
    body = smpl_jax.load(model)
    os.makedirs(out_dir, exist_ok=True)
    out = body(body_pose=pose_vector(pose))
    vertices, faces = np.asarray(out.vertices[0]), np.asarray(body.faces)
    shaded, parts = render_views(body, vertices, size)
    paths = [os.path.join(out_dir, f"{stem}_{pose}.{ext}") for stem, ext in
             (("body", "obj"), ("body", "png"), ("parts", "png"))]
    write_obj(paths[0], vertices, faces)
    write_png(paths[1], shaded)
    write_png(paths[2], parts)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pare_jax.body_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--model", default="open", help="'open' (bundled) or an SMPL .pkl/.npz path")
    parser.add_argument("--pose", default="walk", choices=sorted(POSES))
    parser.add_argument("--size", type=int, default=512, help="picture size in pixels")
    args = parser.parse_args(argv)
    try:
        paths = run(args.out, args.model, args.pose, args.size)
    except (smpl_jax.ModelFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("wrote " + ", ".join(paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
