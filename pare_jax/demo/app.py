"""The demo's driver: input -> people -> crops -> one jitted model call per batch -> image camera -> outputs."""
import argparse
import logging
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

import smpl_jax
from pare_jax import trained as trained_models
from pare_jax.demo import geometry, media, outputs, people, tracking
from pare_jax.files import write_png
from pare_jax.models import normalize_images

NO_WEIGHTS = ("no trained weights given: pass --weights with a training workdir (the README's synthetic run: "
              "python run.py --config=configs/synthetic.py --workdir=runs/synthetic) or converted authors' weights "
              "(python -m pare_jax.convert pare_w_3dpw_checkpoint.ckpt weights/pare_hrnet_w32)")


class DemoError(ValueError):
    """Bad demo input: printed as one `error:` line, exit code 2."""


def parse_args(argv):
    p = argparse.ArgumentParser(prog="python -m pare_jax.demo", description="3D bodies from images and videos.")
    p.add_argument("--input", required=True, help="an image, a folder of images, or a video (.mp4, ...)")
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--weights", help="a training workdir or converted weights (python -m pare_jax.convert)")
    p.add_argument("--boxes", help="JSON of boxes or OpenPose keypoints per image/frame, or an OpenPose folder")
    p.add_argument("--detector", choices=("hog", "none"), default="hog",
                   help="without --boxes: OpenCV's people detector, or none (the whole image is one person)")
    p.add_argument("--batch-size", type=int, default=8, help="images (or frames) per model call")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="bfloat16 for GPUs")
    p.add_argument("--focal-length", type=float, help="of the image camera in pixels (default: image diagonal)")
    p.add_argument("--box-scale", type=float, default=geometry.BOX_SCALE, help="crop side / longer box side")
    p.add_argument("--config", help="configs/NAME.py[:variant] of a workdir from before runs saved config.json")
    p.add_argument("--body", help="SMPL file for the meshes (default: the run's body, or the open body)")
    p.add_argument("--extra-regressor", help="SPIN's J_regressor_extra.npy, needed with an official SMPL --body")
    p.add_argument("--smooth", action="store_true", help="video: One-Euro smoothing of pose, shape, position")
    args = p.parse_args(argv)
    if args.batch_size <= 0:
        raise DemoError(f"--batch-size must be positive, got {args.batch_size}")
    if args.box_scale <= 0 or (args.focal_length is not None and args.focal_length <= 0):
        raise DemoError("--box-scale and --focal-length must be positive")
    if args.boxes and not os.path.exists(args.boxes):
        raise DemoError(f"--boxes {args.boxes} does not exist")
    return args


def load_model(args):
    if not args.weights:
        raise DemoError(NO_WEIGHTS)
    body = None
    if args.body:
        body = smpl_jax.load(args.body, extra_regressor=args.extra_regressor)
    try:
        config = trained_models.config_from_file(args.config) if args.config else None
        return trained_models.load(args.weights, config=config, body=body)
    except trained_models.ModelSourceError:
        raise
    except (ValueError, KeyError, OSError) as e:  # weights that do not fit their model, unreadable files
        raise trained_models.ModelSourceError(f"{args.weights}: cannot load the model ({e})") from e


NPZ_KEYS = ("pred_pose", "pred_shape", "pred_cam", "translation", "vertices", "joints3d", "joints2d", "boxes",
            "reprojection_px")


class Predictor:
    """Bodies for all people of a batch of images in one jitted call (crops padded to a power of two, so
    few shapes compile)."""

    def __init__(self, model, dtype="float32", focal_length=None, box_scale=geometry.BOX_SCALE):
        self.model, self.dtype, self.focal_length, self.box_scale = model, dtype, focal_length, box_scale
        self.faces = np.asarray(model.body.faces)
        self._pose_body = jax.jit(lambda body, pose, shape: body(
            betas=shape, body_pose=pose[:, 1:], global_orient=pose[:, :1], joints="spin49"))

    def __call__(self, images, boxes):
        """images: list of [H, W, 3] uint8; boxes: list of [P_i, 4] -> list of per-image dicts of arrays
        [P_i, ...] (NPZ_KEYS, plus crops and pred_segm_mask for the pictures)."""
        squares = [geometry.square_boxes(b, self.box_scale) for b in boxes]
        size = self.model.image_size
        crops = [geometry.crop_images(im, sq, size) for im, sq in zip(images, squares)]
        # A CoNorm model also sees where every person of the image lies in each crop (pare_jax.data.context).
        contexts = ([geometry.crop_context_maps(sq, size) for sq in squares]
                    if getattr(self.model, "uses_context", False) else None)
        results = (self._predict(np.concatenate(crops), None if contexts is None else np.concatenate(contexts))
                   if sum(map(len, crops)) else {})
        found, start = [], 0
        for image, box, square, crop in zip(images, boxes, squares, crops):
            pred = {k: v[start:start + len(crop)] for k, v in results.items()}
            start += len(crop)
            if len(crop):
                translation, focal, residual = geometry.crop_to_image_translation(
                    pred["smpl_vertices"], pred["pred_cam"], square, image.shape[:2], self.focal_length)
            else:
                pred = {"pred_pose": np.zeros((0, 24, 3, 3)), "pred_shape": np.zeros((0, 10)),
                        "pred_cam": np.zeros((0, 3))}
                translation, residual = np.zeros((0, 3)), np.zeros(0)
                focal = self.focal_length or geometry.default_focal_length(image.shape[:2])
            found.append(self.posed(pred["pred_pose"], pred["pred_shape"], translation, focal, image.shape[:2]) | {
                "pred_cam": np.float32(pred["pred_cam"]), "boxes": np.float32(box).reshape(-1, 4),
                "reprojection_px": np.float32(residual), "crops": crop, "pred_segm_mask": pred.get("pred_segm_mask")})
        return found

    def _predict(self, crops, contexts=None):
        n = len(crops)
        batch = np.zeros((1 << (n - 1).bit_length(),) + crops.shape[1:], np.float32)
        batch[:n] = normalize_images(crops)
        kwargs = {}
        if contexts is not None:
            padded = np.zeros(batch.shape[:3] + (2,), np.float32)
            padded[:n] = contexts
            kwargs["context"] = jnp.asarray(padded)
        out = self.model.predict(jnp.asarray(batch), dtype=self.dtype, **kwargs)
        keep = ("pred_pose", "pred_shape", "pred_cam", "smpl_vertices", "pred_segm_mask")
        return {k: np.asarray(out[k][:n], np.float32) for k in keep if k in out}

    def posed(self, pose, shape, translation, focal, image_hw):
        """Vertices and joints (camera axes) and 2D joints (image pixels) of bodies pose [P, 24, 3, 3], shape
        [P, 10] at translation [P, 3]."""
        num_vertices = int(self.model.body.v_template.shape[0])
        if len(pose) == 0:
            vertices, joints = np.zeros((0, num_vertices, 3)), np.zeros((0, 49, 3))
        else:
            smpl = self._pose_body(self.model.body, jnp.asarray(pose, jnp.float32), jnp.asarray(shape, jnp.float32))
            vertices = np.asarray(smpl.vertices, np.float64) + translation[:, None]
            joints = np.asarray(smpl.joints, np.float64) + translation[:, None]
        joints2d = geometry.image_camera_pixels(joints, np.zeros((len(joints), 3)), focal, image_hw)
        return {"pred_pose": np.float32(pose).reshape(-1, 24, 3, 3), "pred_shape": np.float32(shape).reshape(-1, 10),
                "translation": np.float32(translation).reshape(-1, 3), "vertices": np.float32(vertices),
                "joints3d": np.float32(joints), "joints2d": np.float32(joints2d).reshape(-1, 49, 2),
                "focal_length": np.float32(focal)}


def write_image_outputs(out_dir, stem, image, people_found, faces):
    """Pictures, arrays and meshes of one image (every file atomically)."""
    path = lambda suffix: os.path.join(out_dir, stem + suffix)  # noqa: E731
    vertices, focal = people_found["vertices"], float(people_found["focal_length"])
    colors = outputs.person_colors(len(vertices))
    write_png(path("_overlay.png"), outputs.overlay_picture(image, vertices, faces, focal, colors))
    write_png(path("_side.png"), outputs.side_picture(vertices, faces, focal, image.shape[:2], colors))
    if people_found.get("pred_segm_mask") is not None and len(vertices):
        tiles = [outputs.attention_picture(c, m) for c, m in zip(people_found["crops"],
                                                                    people_found["pred_segm_mask"])]
        write_png(path("_attention.png"), np.concatenate(tiles, axis=1))
    outputs.write_npz(path(".npz"), {k: people_found[k] for k in NPZ_KEYS} | {
        "focal_length": np.float32(focal), "image_size": np.int32(image.shape[:2])})
    if len(vertices):
        outputs.write_meshes([path(f"_person{i}.obj") for i in range(len(vertices))], path(".glb"), vertices,
                             faces, colors)


def _stems(paths, root):
    """Output stems that stay unique for images of the same name in different sub-folders."""
    base = root if os.path.isdir(root) else os.path.dirname(root)
    return [os.path.splitext(os.path.relpath(p, base))[0].replace(os.sep, "__") for p in paths]


def run_images(args, predictor, boxes, paths):
    from tqdm import tqdm
    stems = _stems(paths, args.input)
    done, skipped = 0, []
    with tqdm(total=len(paths), unit="image", disable=len(paths) < 2) as bar:
        for start in range(0, len(paths), args.batch_size):
            batch = []
            for path, stem in zip(paths[start:start + args.batch_size], stems[start:start + args.batch_size]):
                try:
                    image = media.read_image(path)
                except OSError as e:
                    logging.warning("skipped: %s", e)
                    skipped.append(path)
                    continue
                found, source = boxes.boxes_for(os.path.relpath(path, args.input) if os.path.isdir(args.input)
                                                else os.path.basename(path), image)
                if source == "whole image":
                    logging.info("%s: nobody detected (or --detector none): the whole image is one person", path)
                batch.append((stem, image, geometry.check_boxes(found, image.shape[:2], path)))
            results = predictor([b[1] for b in batch], [b[2] for b in batch]) if batch else []
            for (stem, image, _), found in zip(batch, results):
                write_image_outputs(args.out, stem, image, found, predictor.faces)
                done += 1
            bar.update(min(args.batch_size, len(paths) - start))
    return done, skipped


def run_video(args, predictor, boxes, path):
    from tqdm import tqdm
    fps, frames = media.video_frames(path)
    stem = os.path.splitext(os.path.basename(path))[0]
    writer = media.VideoWriter(os.path.join(args.out, stem + "_overlay.mp4"), fps)
    tracker, smoothers, tracks = tracking.IoUTracker(), {}, {}
    try:
        pending = []
        for index, frame in tqdm(frames, unit="frame"):
            found, _ = boxes.boxes_for(str(index), frame, openpose_stem=f"{stem}_{index:012d}")
            pending.append((index, frame, geometry.check_boxes(found, frame.shape[:2], f"{path} frame {index}")))
            if len(pending) == args.batch_size:
                _video_batch(args, predictor, pending, tracker, smoothers, tracks, writer, fps)
                pending = []
        if pending:
            _video_batch(args, predictor, pending, tracker, smoothers, tracks, writer, fps)
        written = writer.close()
    except BaseException:
        writer.abort()
        raise
    if written is None:
        raise DemoError(f"{path}: no frame could be read")
    stacked = {}
    for tid, rows in sorted(tracks.items()):
        for key in ("frame",) + NPZ_KEYS:
            stacked[f"track{tid}_{key}"] = np.stack([row[key] for row in rows])
    outputs.write_npz(os.path.join(args.out, stem + "_tracks.npz"), stacked | {"fps": np.float32(fps)})
    return len(tracks)


def _video_batch(args, predictor, pending, tracker, smoothers, tracks, writer, fps):
    results = predictor([f for _, f, _ in pending], [b for _, _, b in pending])
    for (index, frame, box), found in zip(pending, results):
        ids = tracker.update(index, box)
        if args.smooth and len(ids):
            smoothed = [smoothers.setdefault(int(t), tracking.BodySmoother(fps))(
                found["pred_pose"][i], found["pred_shape"][i], found["translation"][i]) for i, t in enumerate(ids)]
            pose, shape, translation = (np.stack(x) for x in zip(*smoothed))
            found |= predictor.posed(pose, shape, translation, float(found["focal_length"]), frame.shape[:2])
        for i, tid in enumerate(ids):
            tracks.setdefault(int(tid), []).append({"frame": np.int32(index), **{k: found[k][i] for k in NPZ_KEYS}})
        colors = outputs.person_colors(int(ids.max()) + 1 if len(ids) else 0)[ids] if len(ids) else np.zeros((0, 3))
        focal = float(found["focal_length"])
        overlay = outputs.overlay_picture(frame, found["vertices"], predictor.faces, focal, colors)
        side = outputs.side_picture(found["vertices"], predictor.faces, focal, frame.shape[:2], colors)
        writer.append(np.concatenate([overlay, side], axis=1))


def run(args):
    kind, what = media.describe_input(args.input)
    model = load_model(args)
    boxes = people.BoxSource(args.boxes, args.detector)
    os.makedirs(args.out, exist_ok=True)
    predictor = Predictor(model, args.dtype, args.focal_length, args.box_scale)
    logging.info("model: %s (%s, input %d px)", model.source, model.model_config.backbone, model.image_size)
    if kind == "video":
        tracks = run_video(args, predictor, boxes, what)
        print(f"wrote the overlay video and {tracks} tracks of {args.input} to {args.out}")
        return 0
    done, skipped = run_images(args, predictor, boxes, what)
    if not done:
        raise DemoError(f"no image could be read ({', '.join(skipped)}): check the files or pass other ones")
    print(f"wrote results for {done} image(s) to {args.out}" + (f"; skipped {len(skipped)} unreadable: "
                                                                 + ", ".join(skipped) if skipped else ""))
    return 0


def main(argv=None):
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
        return run(args)
    except (DemoError, media.InputError, geometry.BoxError, trained_models.ModelSourceError,
            smpl_jax.ModelFileError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
