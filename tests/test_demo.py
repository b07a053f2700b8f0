"""The demo: camera geometry without any network, then the command end to end on images, a folder and a video.

The model of these tests is the tiny smoke model with its regressors zeroed, so it predicts the mean pose,
shape and camera (0.9, 0, 0) whatever the image: a body centred in every crop, which the tests can locate.
"""
import json
import logging
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import smpl_jax
from configs import synthetic
from pare_jax import checkpoint, render, schedules, trained
from pare_jax.convert import save_model
from pare_jax.data.offline_labels import estimate_translation
from pare_jax.demo import app, geometry, people, tracking
from pare_jax.models import build_model
from pare_jax.train_step import init_train_state


@pytest.fixture(scope="module")
def body():
    return smpl_jax.load("open")


def posed_vertices(body, seed=0):
    """A random pose facing the camera, in camera axes (y down), without translation: [V, 3] float64."""
    rng = np.random.default_rng(seed)
    out = body(body_pose=rng.normal(0, 0.25, (1, 69)).astype(np.float32),
               global_orient=np.array([[np.pi, 0, 0]], np.float32))
    return np.asarray(out.vertices[0], np.float64)


def true_crop_camera(vertices, pixels, square):
    """The crop camera (s, tx, ty) a perfect model would predict: the translation with focal 5000 at 224 px
    that best puts the vertices where the image shows them."""
    offsets = (pixels - square[:2]) * 224 / square[2] / 112
    t, valid = estimate_translation(vertices[None], np.concatenate([offsets, np.ones((len(pixels), 1))], -1)[None])
    assert valid.all()
    return np.array([[2 * 5000 / (224 * t[0, 2]), t[0, 0], t[0, 1]]])


@pytest.mark.parametrize("image_hw,translation,focal,mean_px,max_px", [
    ((480, 640), (0.0, 0.1, 12.0), None, 0.05, 0.1),  # far, near the axis: PARE's crop camera is all but exact
    # A metre off the axis of a wide-angle camera at 6 m: the body leans in the image by a pixel at its ends,
    # which no crop camera of PARE's kind models (geometry's docstring).
    ((720, 1280), (1.0, 0.2, 6.0), None, 1.0, 1.5),
    ((600, 800), (0.0, 0.0, 40.0), 5000.0 * 180 / 224 * 3, 0.02, 0.05),  # telephoto, centred on the person
])
def test_crop_camera_lands_on_the_rendered_body(body, image_hw, translation, focal, mean_px, max_px):
    vertices = posed_vertices(body)
    focal = focal or geometry.default_focal_length(image_hw)
    pixels = geometry.image_camera_pixels(vertices[None], np.asarray([translation]), focal, image_hw)[0]
    box = np.concatenate([pixels.min(0), pixels.max(0)])
    square = geometry.square_boxes(box[None])
    cam = true_crop_camera(vertices, pixels, square[0])
    fitted, used_focal, residual = geometry.crop_to_image_translation(vertices[None], cam, square, image_hw, focal)
    error = np.linalg.norm(geometry.image_camera_pixels(vertices[None], fitted, used_focal, image_hw)[0] - pixels,
                           axis=-1)
    assert error.mean() < mean_px and error.max() < max_px, (error.mean(), error.max())
    assert np.allclose(fitted[0], translation, rtol=0.01, atol=0.01)
    assert residual.shape == (1,) and np.isfinite(residual).all()


def test_crop_of_the_rendered_image_is_what_the_crop_camera_sees(body):
    """Render the body into a large image, crop it as the demo does, and compare with rendering the body
    straight into the crop through the crop's own pinhole (focal F * 224 / side, principal point moved)."""
    image_hw, size = (420, 400), 64  # the whole square crop inside the image
    vertices = posed_vertices(body, seed=1)
    focal, translation = 700.0, np.array([0.4, 0.2, 5.0])
    K = geometry.image_camera(focal, image_hw)
    t = jnp.asarray(translation, jnp.float32)
    verts, eye = jnp.asarray(vertices, jnp.float32), jnp.eye(3)
    full = np.asarray(render.silhouette(render.rasterize_face_index(verts, body.faces, jnp.asarray(K), eye, t,
                                                                    *image_hw)))
    pixels = geometry.image_camera_pixels(vertices[None], translation[None], focal, image_hw)[0]
    cx, cy, side = geometry.square_boxes(np.concatenate([pixels.min(0), pixels.max(0)])[None])[0]
    crop = geometry.crop_images(np.uint8(np.repeat(full[..., None], 3, -1) * 255), [(cx, cy, side)], size)[0, ..., 0]
    k = size / side
    K_crop = np.array([[focal * k, 0, (image_hw[1] / 2 - cx) * k + size / 2],
                       [0, focal * k, (image_hw[0] / 2 - cy) * k + size / 2], [0, 0, 1]], np.float32)
    direct = np.asarray(render.silhouette(render.rasterize_face_index(verts, body.faces, jnp.asarray(K_crop), eye,
                                                                      t, size, size)))
    # Resampling blurs the edge; the masks agree to a fraction of a crop pixel.
    centroid = lambda m: np.array(np.nonzero(m > 0.5)).mean(1)  # noqa: E731
    assert np.abs(centroid(crop) - centroid(direct)).max() < 0.3
    overlap = ((crop > 0.5) & (direct > 0.5)).sum() / ((crop > 0.5) | (direct > 0.5)).sum()
    assert overlap > 0.9


@pytest.fixture(scope="module")
def mean_model(tmp_path_factory):
    """(workdir, weights dir) of the smoke model whose regressors are zeroed: it predicts the mean body."""
    root = tmp_path_factory.mktemp("mean_model")
    config = synthetic.get_config("smoke")
    model = build_model(config.model, rngs=nnx.Rngs(0))
    for layer in (model.head.pose_mlp, model.head.shape_mlp, model.head.cam_mlp):
        for name in ("kernel", "bias", "weight"):
            if hasattr(layer, name) and getattr(layer, name) is not None:
                getattr(layer, name).set_value(jnp.zeros_like(getattr(layer, name).get_value()))
    weights = save_model(os.path.join(root, "weights"), model)
    workdir = os.path.join(root, "run")
    tx = schedules.optimizer(config.optim, config.num_steps)
    _, state = init_train_state(model, tx)
    ckpt = checkpoint.Checkpoints(workdir, 1, 1)
    ckpt.save(0, state, {"step": 0}, force=True)
    ckpt.close()
    trained.save_run_config(config, workdir)
    return workdir, weights


def scene_image(seed, hw=(96, 128)):
    return np.random.default_rng(seed).integers(0, 255, hw + (3,), np.uint8)


def write_image(path, pixels):
    from PIL import Image
    Image.fromarray(pixels).save(path)


def test_demo_on_a_folder(mean_model, tmp_path, caplog):
    workdir, _ = mean_model
    folder = tmp_path / "photos"
    (folder / "sub").mkdir(parents=True)
    write_image(folder / "a.png", scene_image(0))
    write_image(folder / "sub" / "b.jpg", scene_image(1, (80, 60)))
    (folder / "broken.png").write_bytes(b"not an image")
    boxes = {"a.png": [[20, 10, 60, 90], [70, 20, 120, 80]], "sub/b.jpg": [[5, 5, 50, 70]]}
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING):
        code = app.main(["--input", str(folder), "--out", str(out), "--weights", workdir, "--boxes",
                         str(tmp_path / "boxes.json"), "--batch-size", "2"])
    assert code == 0
    assert "broken.png" in caplog.text
    names = sorted(os.listdir(out))
    for stem, count in (("a", 2), ("sub__b", 1)):
        for suffix in ("_overlay.png", "_side.png", "_attention.png", ".npz", ".glb"):
            assert stem + suffix in names
        assert [n for n in names if n.startswith(stem + "_person")] == [f"{stem}_person{i}.obj" for i in range(count)]
        result = np.load(out / f"{stem}.npz")
        assert result["pred_pose"].shape == (count, 24, 3, 3) and result["joints2d"].shape == (count, 49, 2)
        assert result["vertices"].shape[:2] == (count, 13492)
        # The mean body sits in the middle of its crop: the projected vertices stay inside the square crop
        # and the crop camera's projection is reproduced in the image camera.
        for box, projected in zip(boxes[stem.replace("__", "/") + (".png" if stem == "a" else ".jpg")],
                                  result["joints2d"]):
            (cx, cy, side), = geometry.square_boxes(np.asarray([box]))
            assert np.abs(projected - [cx, cy]).max() < side / 2
        assert (result["reprojection_px"] < 1.0).all()
    assert not [n for n in names if n.startswith(".tmp")]


def test_demo_on_a_video_with_converted_weights(mean_model, tmp_path):
    import imageio.v2 as imageio
    _, weights = mean_model
    video = tmp_path / "clip.mp4"
    with imageio.get_writer(video, format="FFMPEG", fps=10, codec="libx264", macro_block_size=2) as writer:
        for i in range(5):
            writer.append_data(scene_image(i % 2))
    out = tmp_path / "out"
    assert app.main(["--input", str(video), "--out", str(out), "--weights", weights, "--detector", "none",
                     "--smooth", "--batch-size", "2"]) == 0
    frames = [f for f in imageio.get_reader(out / "clip_overlay.mp4", format="FFMPEG")]
    assert len(frames) == 5 and frames[0].shape[:2] == (96, 256)  # overlay | side view
    tracks = np.load(out / "clip_tracks.npz")
    assert list(tracks["track0_frame"]) == [0, 1, 2, 3, 4]
    assert tracks["track0_vertices"].shape == (5, 13492, 3)
    assert "track1_frame" not in tracks


def test_whole_image_when_nobody_is_found(mean_model, tmp_path, caplog):
    workdir, _ = mean_model
    write_image(tmp_path / "noise.png", scene_image(3))
    with caplog.at_level(logging.INFO):
        assert app.main(["--input", str(tmp_path / "noise.png"), "--out", str(tmp_path / "out"),
                         "--weights", workdir]) == 0
    assert "whole image is one person" in caplog.text
    assert np.load(tmp_path / "out" / "noise.npz")["boxes"].tolist() == [[0, 0, 128, 96]]


@pytest.mark.parametrize("case,expected", [
    ("missing_input", "does not exist"), ("empty_folder", "holds no images"), ("no_weights", "no trained weights"),
    ("not_a_model", "holds no trained model"), ("zero_box", "has zero size"), ("outside_box", "outside the"),
    ("bad_boxes_file", "cannot read boxes"), ("unreadable_image", "no image could be read"),
    ("unreadable_video", "cannot open the video"), ("mismatched_weights", "cannot load the model"),
])
def test_bad_input_is_one_error_line(mean_model, tmp_path, capsys, case, expected):
    workdir, weights = mean_model
    image = tmp_path / "photo.png"
    write_image(image, scene_image(0))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00 not a video")
    mismatched = tmp_path / "mismatched"
    shutil.copytree(weights, mismatched)
    meta = json.loads((mismatched / "model_config.json").read_text())
    meta["model"]["backbone"] = "hrnet_w8"
    (mismatched / "model_config.json").write_text(json.dumps(meta))
    (tmp_path / "empty").mkdir()
    boxes = tmp_path / "boxes.json"
    boxes.write_text({"zero_box": '{"photo.png": [[10, 10, 10, 50]]}', "outside_box": '{"photo.png": '
                      '[[500, 10, 600, 50]]}', "bad_boxes_file": "{not json"}.get(case, "{}"))
    args = {"missing_input": ["--input", str(tmp_path / "nope.jpg"), "--weights", workdir],
            "empty_folder": ["--input", str(tmp_path / "empty"), "--weights", workdir],
            "no_weights": ["--input", str(image)],
            "not_a_model": ["--input", str(image), "--weights", str(tmp_path / "empty")],
            "unreadable_image": ["--input", str(tmp_path / "broken.jpg"), "--weights", workdir],
            "unreadable_video": ["--input", str(tmp_path / "broken.mp4"), "--weights", workdir],
            "mismatched_weights": ["--input", str(image), "--weights", str(mismatched)],
            }.get(case, ["--input", str(image), "--weights", workdir, "--boxes", str(boxes)])
    out = tmp_path / "out"
    assert app.main(args + ["--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not out.exists() or os.listdir(out) == []


def test_tracker_keeps_identities_and_one_euro_smooths():
    tracker = tracking.IoUTracker()
    a, b = [10, 10, 50, 90], [100, 10, 140, 90]
    assert list(tracker.update(0, np.array([a, b]))) == [0, 1]
    assert list(tracker.update(1, np.array([np.add(b, 2), np.add(a, 3)]))) == [1, 0]
    assert list(tracker.update(2, np.array([[300, 10, 340, 90]]))) == [2]
    rng = np.random.default_rng(0)
    signal = np.linspace(0, 1, 200)[:, None] + rng.normal(0, 0.05, (200, 1))
    smooth = tracking.one_euro(signal, fps=30)
    truth = np.linspace(0, 1, 200)[:, None]
    assert np.abs(smooth - truth)[20:].mean() < 0.6 * np.abs(signal - truth)[20:].mean()
    assert np.allclose(tracking.one_euro(np.ones((10, 3)), fps=30), 1.0)
    rotations = tracking.nearest_rotation(np.eye(3) + rng.normal(0, 0.1, (4, 3, 3)))
    assert np.allclose(rotations @ np.swapaxes(rotations, -1, -2), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(rotations), 1.0)


def test_box_sources():
    assert people.keypoint_box([10, 20, 0.9, 30, 60, 0.8, 500, 500, 0.05]).tolist() == [10, 20, 30, 60]
    merged = people.non_max_suppression(np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60.]]),
                                        np.array([0.9, 0.8, 0.7]), 0.5)
    assert merged.tolist() == [0, 2]
