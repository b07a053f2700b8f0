"""Write synthetic scenes in the SPIN/PARE format (an npz plus full-frame images), so that the SPIN builder's
code path runs on data we make: for tests, and to try the pipeline without the real datasets.

    python -m pare_jax.data.spin_export --out /tmp/spin_mock --num 16 [--style plain] [--width 96 --height 80]

Writes <out>/<name>_<split>.npz and <out>/<name>/images/<split>_000000.jpg, ... The person stands somewhere in a
width x height frame, its box 60-90 % of the shorter side. style "textured": the synthetic dataset's look
(clothing colours, procedural backgrounds); "plain": a flat light-grey body (value ~217) on a flat dark
background (value 26), so that tests can tell body pixels from background pixels after augmentation.
"""
import argparse
import io
import os
import sys

import numpy as np

from pare_jax.data import synthetic
from pare_jax.data.schema import encode_jpeg
from pare_jax.files import write_atomic

PLAIN_BODY, PLAIN_BACKGROUND = 0.85, 0.1


def frame_box(rng, width, height):
    """Box side and centre (x, y) in frame pixels: 60-90 % of the shorter side, fully inside the frame."""
    side = rng.uniform(0.6, 0.9) * min(width, height)
    centre = (rng.uniform(side / 2, width - side / 2), rng.uniform(side / 2, height - side / 2))
    return side, centre


def export(out_dir, body, num, seed=0, width=96, height=96, style="textured", name="mock", split="train",
           chunk=8):
    """Render `num` scenes and write them in the SPIN format. Returns the npz path."""
    from pare_jax.data import occluders
    if style not in ("textured", "plain"):
        raise ValueError(f"style must be 'textured' or 'plain', got {style!r}")
    scenes_renderer = synthetic.SceneRenderer(body, occluders.make_occluder_bank(32, 48, seed=seed + 1), chunk)
    os.makedirs(os.path.join(out_dir, name, "images"), exist_ok=True)
    rows = []
    for start in range(0, num, chunk):
        indices = list(range(start, min(start + chunk, num)))
        rows.extend(_export_chunk(scenes_renderer, out_dir, name, split, indices, seed, width, height, style))
    arrays = {key: np.stack([r[key] for r in rows]) for key in rows[0]}
    path = os.path.join(out_dir, f"{name}_{split}.npz")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())
    return path


def _export_chunk(scenes_renderer, out_dir, name, split, indices, seed, width, height, style):
    rngs = [synthetic.sample_rng(seed, split, i) for i in indices]
    scenes = [synthetic.sample_scene(rng) for rng in rngs]
    if style == "plain":
        for scene in scenes:
            scene.update(colors=np.full((24, 3), PLAIN_BODY, np.float32), ambient=np.float32(1.0))
    frames = [frame_box(rng, width, height) for rng in rngs]
    posed = scenes_renderer.pose(scenes)
    boxes = [synthetic.person_box(v, rng) for v, rng in zip(np.asarray(posed[0]), rngs)]
    K = np.stack([synthetic.box_camera(c, s, width, height, centre, side)
                  for (c, s), (side, centre) in zip(boxes, frames)])
    rgb, alpha, _, _, joints = scenes_renderer.render(scenes, posed, K, height, width)
    rows = []
    for i, index in enumerate(indices):
        if style == "plain":
            image = np.clip(np.round((PLAIN_BACKGROUND * (1 - alpha[i][..., None]) + rgb[i]) * 255), 0, 255)
            image = image.astype(np.uint8)
        else:
            image, _ = scenes_renderer.compose(rngs[i], rgb[i], alpha[i], synthetic.occluder_plan(
                rngs[i], split, np.zeros((0, 2)), np.asarray(frames[i][1]), frames[i][0]))
        imgname = f"images/{split}_{index:06d}.jpg"
        write_atomic(os.path.join(out_dir, name, imgname), encode_jpeg(image))
        rows.append(_annotation(scenes[i], joints[i], K[i], frames[i], width, height, imgname, index))
    return rows


def _annotation(scene, joints, K, frame, width, height, imgname, index):
    pixels = joints @ K.T
    pixels = pixels[:, :2] / pixels[:, 2:3]
    inside = (pixels[:, 0] >= 0) & (pixels[:, 0] < width) & (pixels[:, 1] >= 0) & (pixels[:, 1] < height)
    keypoints = np.concatenate([pixels, inside[:, None]], -1).astype(np.float32)
    side, centre = frame
    return {"imgname": imgname, "center": np.asarray(centre, np.float32), "scale": np.float32(side / 200.0),
            "part": keypoints[25:], "openpose": keypoints[:25],
            "S": np.concatenate([joints[25:], np.ones((24, 1))], -1).astype(np.float32),
            "pose": scene["pose"], "shape": scene["betas"], "has_smpl": np.float32(1.0),
            "gender": "m" if index % 2 == 0 else "f"}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pare_jax.data.spin_export", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--num", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--style", default="textured", choices=("textured", "plain"))
    parser.add_argument("--name", default="mock")
    parser.add_argument("--model", default="open", help="'open' (bundled) or an SMPL file with the extra regressor")
    args = parser.parse_args(argv)
    import smpl_jax
    os.makedirs(args.out, exist_ok=True)
    path = export(args.out, smpl_jax.load(args.model), args.num, args.seed, args.width, args.height, args.style,
                  args.name)
    print(f"wrote {path} and {args.num} images under {os.path.join(args.out, args.name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
