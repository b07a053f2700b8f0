"""Occlusion sensitivity: batched positions equal one forward per position, patch layout and maps, the command."""
import json
import os

import numpy as np
import pytest
from PIL import Image

from pare_jax.analysis import occlusion
from pare_jax.models.pare import IMAGENET_MEAN, IMAGENET_STD

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PATCH, STRIDE = 22, 22  # a 3 x 3 grid on the smoke config's 64 px images (last row and column 20 px)


def _config(variant, data_dir):
    from configs import synthetic
    config = synthetic.get_config(variant)
    config.unlock()
    config.data.data_dir = data_dir
    config.lock()
    return config


def _untrained_run(config, workdir):
    """A workdir as training leaves it (config.json + an Orbax checkpoint), holding the initial weights:
    the sensitivity computation does not need a trained model, and this skips compiling a training step."""
    from pare_jax import checkpoint, schedules, sharding, trained
    trained.save_run_config(config, workdir)
    ckpt = checkpoint.Checkpoints(workdir, 1, 1)
    _, state, record = trained.initial_state(config, schedules.optimizer(config.optim, config.num_steps),
                                             sharding.data_mesh(), ckpt)
    ckpt.save(0, state, record, force=True)
    ckpt.close()
    return workdir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The smoke dataset and two untrained smoke runs (PARE and HMR-EFT), built once for the module."""
    from pare_jax import inputs
    root = tmp_path_factory.mktemp("occlusion")
    data_dir = str(root / "datasets")
    config = _config("smoke", data_dir)
    inputs.prepared_folder(config, "synthetic")
    return {"config": config, "pare": _untrained_run(config, str(root / "pare")),
            "hmr": _untrained_run(_config("hmr_smoke", data_dir), str(root / "hmr"))}


@pytest.fixture(scope="module")
def setup(runs):
    """The PARE run loaded through its workdir, two test images and their ground-truth joints."""
    from pare_jax import trained
    from pare_jax.evaluate import ground_truth_bodies
    model = trained.load(runs["pare"])
    samples = occlusion.collect_samples(model.config, "synthetic:test", 2)
    gt = np.asarray(occlusion.ground_truth_joints(ground_truth_bodies(model.config, model.body), samples["pose"],
                                                  samples["betas"], samples["gender"]))
    return model, samples, gt


def _one_forward_per_position(model, image, pose, betas, boxes):
    """The authors' way, written independently of the module: paint the patch with numpy, run the model on
    that one image, pose both bodies with the evaluation's full-mesh path -> per-joint errors [P, 14] x2 (mm)."""
    import jax.numpy as jnp
    from pare_jax import metrics
    from smpl_jax.metrics import per_joint_error, similarity_procrustes
    from smpl_jax.rotations import axis_angle_to_matrix
    grey = (np.float32(0.5) - IMAGENET_MEAN) / IMAGENET_STD
    gt, _ = metrics.body_joints_and_vertices(model.body, axis_angle_to_matrix(jnp.asarray(pose).reshape(1, 24, 3)),
                                             jnp.asarray(betas)[None])
    mpjpe, pa = [], []
    for top, left, bottom, right in boxes:
        occluded = image.copy()
        occluded[top:bottom, left:right] = grey
        out = model.predict(occluded[None], with_body=False)
        pred, _ = metrics.body_joints_and_vertices(model.body, out["pred_pose"], out["pred_shape"])
        mpjpe.append(np.asarray(per_joint_error(pred, gt))[0] * 1000)
        pa.append(np.asarray(per_joint_error(similarity_procrustes(pred, gt), gt))[0] * 1000)
    return np.stack(mpjpe), np.stack(pa)


def test_batched_positions_equal_one_forward_per_position(setup):
    model, samples, gt = setup
    boxes, grid = occlusion.patch_boxes(64, 64, PATCH, STRIDE)
    assert grid == (3, 3)
    errors = occlusion.sensitivity(model, samples["img"], gt, boxes)
    assert errors["mpjpe"].shape == errors["pa_mpjpe"].shape == (2, 9, 14)
    for i in range(2):
        clear = np.zeros((1, 4), np.int32)
        mpjpe, pa = _one_forward_per_position(model, samples["img"][i], samples["pose"][i], samples["betas"][i],
                                              np.concatenate([clear, boxes]))
        np.testing.assert_allclose(errors["unoccluded_mpjpe"][i], mpjpe[0], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(errors["mpjpe"][i], mpjpe[1:], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(errors["unoccluded_pa_mpjpe"][i], pa[0], rtol=1e-5, atol=1e-3)
        np.testing.assert_allclose(errors["pa_mpjpe"][i], pa[1:], rtol=1e-5, atol=1e-3)
    # the patches change the prediction (an untrained network still sees its input)
    assert np.abs(errors["mpjpe"] - errors["unoccluded_mpjpe"][:, None]).max() > 1e-3


def test_zero_size_patch_gives_exactly_the_unoccluded_prediction(setup):
    model, samples, gt = setup
    image = samples["img"][0]
    empty, _ = occlusion.patch_boxes(64, 64, 0, STRIDE)
    assert (np.asarray(occlusion.occlude(image, empty[4], occlusion.grey_value())) == image).all()
    errors = occlusion.sensitivity(model, samples["img"][:1], gt[:1], empty)
    for k in occlusion.METRICS:  # same call, same chunk: bit for bit
        assert (errors[k][0] == errors[f"unoccluded_{k}"][0]).all()
    mpjpe, pa = _one_forward_per_position(model, image, samples["pose"][0], samples["betas"][0], empty[:1])
    np.testing.assert_allclose(errors["mpjpe"][0], np.repeat(mpjpe, 9, 0), rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(errors["pa_mpjpe"][0], np.repeat(pa, 9, 0), rtol=1e-5, atol=1e-3)


def test_grey_patch_value_and_position_layout():
    grey = occlusion.grey_value()
    np.testing.assert_allclose(grey * IMAGENET_STD + IMAGENET_MEAN, 0.5, atol=1e-6)
    boxes, grid = occlusion.patch_boxes(224, 224, 40, 40)  # the authors' grid
    assert grid == (6, 6) and boxes[0].tolist() == [0, 0, 40, 40] and boxes[-1].tolist() == [200, 200, 224, 224]
    assert boxes[1].tolist() == [0, 40, 40, 80]  # row-major: x moves first
    assert occlusion.patch_boxes(224, 224, 40, 8)[1] == (28, 28)  # the dense grid
    assert occlusion.default_patch_size(224) == 40 and occlusion.patch_boxes(64, 64, 11, 11)[1] == (6, 6)


def test_image_map_and_part_pixels_match_brute_force():
    rng = np.random.default_rng(0)
    boxes, _ = occlusion.patch_boxes(20, 20, 6, 3)  # overlapping, clipped at the border
    values = rng.normal(size=(len(boxes), 2))
    total, count = np.zeros((20, 20, 2)), np.zeros((20, 20, 1))
    for (t, l, b, r), v in zip(boxes, values):
        total[t:b, l:r] += v
        count[t:b, l:r] += 1
    np.testing.assert_allclose(occlusion.image_map(values, boxes, 20, 20), total / count, atol=1e-12)
    part_map = rng.integers(0, 25, size=(20, 20))
    pixels = occlusion.part_pixels(part_map, boxes)
    for (t, l, b, r), row in zip(boxes, pixels):
        assert row.tolist() == [int((part_map[t:b, l:r] == k).sum()) for k in range(1, 25)]
    increase = rng.normal(size=(1, len(boxes), 14))
    parts = occlusion.part_sensitivity(increase, pixels[None])
    k = 5
    np.testing.assert_allclose(parts[k], (pixels[:, k, None] * increase[0]).sum(0) / pixels[:, k].sum())


def test_command_writes_pictures_numbers_and_summary_for_two_models(runs, setup, tmp_path, capsys):
    out = tmp_path / "out"
    code = occlusion.main(["occlusion", f"--workdir={runs['pare']}", "--out", str(out), "--num-images=2",
                           f"--patch-size={PATCH}", f"--stride={STRIDE}", f"--compare={runs['hmr']}"])
    assert code == 0, capsys.readouterr().err[-2000:]
    names = {"summary.json", "occlusion.npz", "mean_sensitivity.png", "mean_sensitivity_joints.png",
             "part_sensitivity.png"} | {f"image_{i:04d}{s}.png" for i in range(2) for s in ("", "_joints")}
    assert set(os.listdir(out)) == names  # and no temporary files left over
    for name in names - {"summary.json", "occlusion.npz"}:
        picture = np.asarray(Image.open(out / name))
        assert picture.ndim == 3 and picture.shape[2] == 3 and picture.std() > 5
    summary = json.load(open(out / "summary.json"))
    assert summary["grid"] == [3, 3] and summary["num_images"] == 2 and summary["patch_size"] == PATCH
    assert set(summary["models"]) == {"model", "compare"}
    assert [summary["models"][m]["head"] for m in ("model", "compare")] == ["pare", "hmr"]
    numbers = np.load(out / "occlusion.npz")
    for name in ("model", "compare"):
        figures = summary["models"][name]
        for k in occlusion.METRICS:
            per_position = numbers[f"{name}_{k}"].mean(-1)
            assert numbers[f"{name}_{k}"].shape == (2, 9, 14)
            assert figures[k]["unoccluded"] == pytest.approx(numbers[f"{name}_unoccluded_{k}"].mean(), rel=1e-6)
            assert figures[k]["mean_over_positions"] == pytest.approx(per_position.mean(), rel=1e-6)
            assert figures[k]["worst_position"] == pytest.approx(per_position.mean(0).max(), rel=1e-6)
            assert numbers[f"{name}_part_{k}"].shape == (24, 14)
            assert numbers[f"{name}_mean_map_{k}"].shape == (64, 64, 14)
        assert len(figures["part_sensitivity"]["mpjpe"]) == 24
    # the command's numbers are the library's on the same images
    model, samples, gt = setup
    direct = occlusion.sensitivity(model, samples["img"], gt, occlusion.patch_boxes(64, 64, PATCH, STRIDE)[0])
    np.testing.assert_allclose(numbers["model_mpjpe"], direct["mpjpe"], rtol=1e-6)
    assert numbers["part_pixels"].sum() > 0


@pytest.mark.parametrize("flags, message", [
    (["--workdir={missing}"], "holds no trained model"),
    (["--split=synthetic:nope"], "Unknown split 'nope'"),
    (["--config={root}/configs/synthetic.py:smoke", "--config.data.data_dir={data_dir}", "--split=nope:test"],
     "unknown dataset 'nope'"),  # also: --config (with an override) in place of the run's config.json
    (["--patch-size=0"], "--patch-size must be at least 1"),
    (["--patch-size=65"], "larger than the model's 64 px input"),
    (["--stride=0"], "--stride must be at least 1"),
    (["--num-images=0"], "--num-images must be at least 1"),
    (["--num-images=two"], "num-images"),
], ids=["missing_workdir", "unknown_split", "unknown_dataset", "patch_0", "patch_too_large", "stride_0",
        "num_images_0", "num_images_not_a_number"])
def test_bad_input_is_one_error_line_and_exit_code_2(runs, tmp_path, capsys, flags, message):
    out = tmp_path / "out"
    argv = ["occlusion", f"--workdir={runs['pare']}", f"--out={out}"]
    argv += [f.format(missing=tmp_path / "no_such_run", data_dir=runs["config"].data.data_dir, root=ROOT)
             for f in flags]
    assert occlusion.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ") and message in err[-1], err
    assert not out.exists()
