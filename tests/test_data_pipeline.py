"""Builders and pipelines end to end on small datasets made here: a SPIN-format mock (plain light body on a dark
background, 96 px frames, rendered with the open body, one image corrupted) and the synthetic dataset (64 px
boxes). Both are built once per module into a temporary folder."""
import logging
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

import smpl_jax
from pare_jax.data import augment, builders, occluders, pipeline, spin_export, spin_format
from pare_jax.data.offline_labels import PartLabeler

CROP = 64
CHUNK = 8  # every renderer call in this module uses this batch, so each compiles once
CORRUPT = "images/train_000002.jpg"
NO_CROP = augment.AugmentConfig(crop_start_step=10**9)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    body = smpl_jax.load("open")
    manual = root / "manual"
    npz = spin_export.export(str(manual), body, num=8, style="plain", name="mock", chunk=CHUNK)
    (manual / "mock" / CORRUPT).write_bytes(b"\xff\xd8\xff\xe0 truncated")
    records = _Records()
    logging.getLogger(builders.__name__).addHandler(records)
    spin = builders.PareSpin(config=builders.SpinConfig(name="mock", npz_files={"train": "mock_train.npz"},
                                                        image_root="mock", crop_size=CROP),
                             data_dir=str(root / "tfds"), body=body, render_chunk=CHUNK)
    spin.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(manual)))
    logging.getLogger(builders.__name__).removeHandler(records)
    synth = builders.PareSynthetic(config=builders.SyntheticConfig(
        name="t", crop_size=CROP, num_examples={"train": 16, "test": 8, "test_occluded": 8}, seed=5),
        data_dir=str(root / "tfds"), body=body, render_chunk=CHUNK)
    synth.download_and_prepare()
    return {"body": body, "spin": spin, "synth": synth, "spin_dir": str(spin.data_path),
            "synth_dir": str(synth.data_path), "npz": npz, "log": records.messages, "root": root,
            "bank": occluders.make_occluder_bank(num=16, size=32, seed=0)}


def _read(path, split):
    return list(tfds.as_numpy(tfds.builder_from_directory(path).as_dataset(split=split)))


def test_spin_builder_writes_and_reads_back(built):
    examples = sorted(_read(built["spin_dir"], "train"), key=lambda e: e["sample_index"])
    assert [int(e["sample_index"]) for e in examples] == [0, 1, 3, 4, 5, 6, 7]
    ann = spin_format.read_annotations(built["npz"])
    keypoints = spin_format.normalize_keypoints(spin_format.keypoints49(ann), ann["center"], ann["scale"])
    for ex in examples:
        row = int(ex["sample_index"])
        assert ex["imgname"].decode() == ann["imgname"][row] and ex["image"].shape == (96, 96, 3)
        np.testing.assert_allclose(ex["keypoints"], keypoints[row], atol=1e-6)
        np.testing.assert_array_equal(ex["pose"], ann["pose"][row])
        np.testing.assert_array_equal(ex["joints3d"], ann["S"][row])
        assert ex["has_smpl"] == 1 and ex["has_joints3d"] == 1 and ex["gender"] == row % 2
        assert ex["has_part_map"] == 1 and 20 < ex["cam_t"][2] < 200
        body, bright = ex["part_map"][..., 0] > 0, ex["image"].mean(-1) > 120
        assert body.sum() > 150 and (body == bright).mean() > 0.95, "part map and image crop must line up"


def test_corrupt_image_is_reported_by_name_and_skipped(built):
    assert [name for name, _ in built["spin"].skipped_images["train"]] == [CORRUPT]
    assert any("skipped 1 unreadable image" in m and CORRUPT in m for m in built["log"])


def test_missing_files_give_a_list(built, tmp_path):
    manual = tmp_path / "manual"
    manual.mkdir()
    (manual / "note.txt").write_text("not empty")
    config = builders.SpinConfig(name="mock2", npz_files={"train": "mock_train.npz", "test": "mock_test.npz"},
                                 image_root="mock", crop_size=CROP)
    download = tfds.download.DownloadConfig(manual_dir=str(manual))
    builder = builders.PareSpin(config=config, data_dir=str(tmp_path / "tfds"), body=built["body"])
    with pytest.raises(FileNotFoundError, match=r"2 annotation files missing[\s\S]*mock_train.npz[\s\S]*mock_test"):
        builder.download_and_prepare(download_config=download)
    os.symlink(built["npz"], manual / "mock_train.npz")
    os.symlink(built["npz"], manual / "mock_test.npz")
    (manual / "mock" / "images").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"8 images of mock_train.npz missing[\s\S]*train_000007.jpg"):
        builder.download_and_prepare(download_config=download)


def test_synthetic_builder_is_deterministic_with_exact_labels(built):
    examples = {int(e["sample_index"]): e for e in _read(built["synth_dir"], "test")}
    assert sorted(examples) == list(range(8))
    renderer = built["synth"]._scene_renderer()
    again = renderer.crops("test", [2, 5], seed=5, size=96, crop_margin=1.5)
    for fresh in again:
        stored = examples[int(fresh["sample_index"])]
        for key in ("keypoints", "visibility", "pose", "betas", "joints3d", "cam_t"):
            np.testing.assert_array_equal(stored[key], fresh[key], err_msg=key)
        np.testing.assert_array_equal(stored["part_map"], fresh["part_map"])
        assert np.abs(stored["image"].astype(int) - fresh["image"]).mean() < 3  # JPEG
    for ex in examples.values():
        pixels = np.floor((ex["keypoints"][25:, :2] / 1.5 + 1) * 48).astype(int)
        inside = ((pixels >= 0) & (pixels < 96)).all(-1)
        on_body = ex["part_map"][pixels[inside, 1], pixels[inside, 0], 0] > 0
        assert on_body.mean() > 0.9
    occluded = [e["visibility"][25:].mean() for e in _read(built["synth_dir"], "test_occluded")]
    clear = [e["visibility"][25:].mean() for e in examples.values()]
    assert np.mean(occluded) < np.mean(clear) - 0.1


def _train(built, mix, **kwargs):
    # A small shuffle buffer: filling the default one would read these tiny datasets dozens of times.
    kwargs = {"batch_size": 8, "seed": 0, "out_size": 96, "occluder_bank": built["bank"], "process_index": 0,
              "process_count": 1, "shuffle_buffer": 16, **kwargs}
    return pipeline.train_dataset({built[name]: ratio for name, ratio in mix.items()}, **kwargs)


def _batches(ds, num):
    iterator = iter(pipeline.as_numpy(ds))
    return [next(iterator) for _ in range(num)]


def test_augmented_keypoints_lie_on_the_augmented_part_map(built):
    batches = _batches(_train(built, {"spin_dir": 0.5, "synth_dir": 0.5}), 4)
    hits = []
    for batch in batches:
        assert batch["img"].shape == (8, 96, 96, 3) and batch["part_map"].shape == (8, 96, 96)
        labels = np.pad(batch["part_map"], ((0, 0), (1, 1), (1, 1)))
        pixels = np.floor((batch["keypoints"][:, 25:, :2] + 1) * 48).astype(int)
        for i in range(8):
            keep = ((pixels[i] >= 0) & (pixels[i] < 96)).all(-1) & (batch["keypoints"][i, 25:, 2] > 0)
            for x, y in pixels[i][keep]:
                hits.append(labels[i, y:y + 3, x:x + 3].max() > 0)
    assert len(hits) > 400 and np.mean(hits) > 0.95


def test_augmented_part_map_lines_up_with_the_image(built):
    config = augment.AugmentConfig(occlusion_prob=0.0, crop_start_step=10**9)
    batch = _batches(_train(built, {"spin_dir": 1.0}, augment_config=config, batch_size=16), 1)[0]
    pixels = batch["img"] * augment.IMAGENET_STD + augment.IMAGENET_MEAN
    # Plain mock: body ~217 and background 26 before colour noise x[0.6, 1.4]; black outside the stored crop.
    # Edges are blurred by the crop and the warp, so split at half the body's brightness.
    brightness = pixels.mean(-1)
    bright = brightness > 0.5 * np.percentile(brightness, 98, axis=(1, 2), keepdims=True)
    agree = (bright == (batch["part_map"] > 0)).mean(axis=(1, 2))
    assert agree.min() > 0.95, agree


def test_augmented_pose_renders_onto_the_augmented_part_map(built):
    """Pose (rotated, flipped), keypoints and part labels (mirrored, left/right swapped) stay consistent: the
    body posed with the augmented SMPL parameters, placed by the augmented keypoints, renders the same labels.
    (Not to the pixel: the re-render uses PARE's near-orthographic label camera, the synthetic labels the true
    perspective camera.)"""
    config = augment.AugmentConfig(rotation_zero_prob=0.0, crop_start_step=10**9)
    batch = _batches(_train(built, {"spin_dir": 0.5, "synth_dir": 0.5}, augment_config=config), 1)[0]
    labeler = PartLabeler(built["body"], size=96, crop_margin=1.0, chunk=CHUNK)
    keypoints = batch["keypoints"].copy()
    keypoints[..., 2] = (np.abs(keypoints[..., :2]) < 1.5).all(-1)  # fit to joints near the crop
    rendered, _, ok = labeler(batch["pose"], batch["betas"], keypoints, batch["has_smpl"])
    assert ok.all()
    agreement, swapped = [], []
    for ours, theirs in zip(rendered, batch["part_map"]):
        union, both = ((ours > 0) | (theirs > 0)).sum(), (ours > 0) & (theirs > 0)
        assert both.sum() / union > 0.8
        agreement.append((ours[both] == theirs[both]).mean())
        swapped.append((augment.PART_LABEL_FLIP[ours[both]] == theirs[both]).mean())
    assert min(agreement) > 0.7 and np.mean(agreement) > 0.88, agreement
    assert np.mean(swapped) < np.mean(agreement) - 0.2, "a left/right mix-up would have been visible"


def test_mixing_ratios_are_respected(built):
    ds = _train(built, {"spin_dir": 0.25, "synth_dir": 0.75}, batch_size=32, out_size=16)
    sources = np.concatenate([b["dataset_index"] for b in _batches(ds, 25)])
    assert abs((sources == 1).mean() - 0.75) < 0.05


def test_same_seed_same_batches(built):
    first, again = (_batches(_train(built, {"spin_dir": 0.5, "synth_dir": 0.5}, out_size=32), 2) for _ in range(2))
    other = _batches(_train(built, {"spin_dir": 0.5, "synth_dir": 0.5}, out_size=32, seed=1), 2)
    for a, b in zip(first, again):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    assert any(not np.array_equal(a["img"], c["img"]) for a, c in zip(first, other))


def test_random_crop_switches_on_at_its_step(built):
    """crop_start_step = 2 with 8 examples per batch: batches 0-1 are as without the crop, 2-3 are zoomed in."""
    plain = augment.AugmentConfig(flip_prob=0.0, rotation_zero_prob=1.0, scale_sd=0.0, occlusion_prob=0.0,
                                  crop_prob=1.0, crop_start_step=10**9)
    cropped = augment.AugmentConfig(**{**plain.__dict__, "crop_start_step": 2})
    before, after = (_batches(_train(built, {"synth_dir": 1.0}, augment_config=c, out_size=32), 4)
                     for c in (plain, cropped))
    for step in (0, 1):
        np.testing.assert_array_equal(before[step]["keypoints"], after[step]["keypoints"])
    for step in (2, 3):
        spread = lambda b: b["keypoints"][:, 25:, :2].std(axis=1).mean(-1)  # noqa: E731
        assert (spread(after[step]) / spread(before[step]) > 1.4).all()
    resumed = _batches(_train(built, {"synth_dir": 1.0}, augment_config=cropped, out_size=32, start_step=2), 1)[0]
    unchanged = _batches(_train(built, {"synth_dir": 1.0}, augment_config=plain, out_size=32, start_step=2), 1)[0]
    assert (spread(resumed) / spread(unchanged) > 1.4).all()


def test_host_shards_are_disjoint_and_cover_the_data(built):
    seen, num_batches = [], set()
    for host in range(3):
        batches = list(pipeline.as_numpy(pipeline.eval_dataset(
            built["synth_dir"], split="train", batch_size=4, out_size=32, process_index=host, process_count=3)))
        num_batches.add(len(batches))
        mask = np.concatenate([b["mask"] for b in batches]) > 0
        seen.append(set(np.concatenate([b["sample_index"] for b in batches])[mask].tolist()))
        assert all(b["img"].shape == (4, 32, 32, 3) for b in batches)
    assert num_batches == {2} and sum(map(len, seen)) == 16 and set.union(*seen) == set(range(16))
    # training: the hosts' batches, side by side, are the one-process batches of the global batch size
    hosts = [_batches(_train(built, {"synth_dir": 1.0}, out_size=16, batch_size=2, process_index=host,
                             process_count=2), 3) for host in range(2)]
    single = _batches(_train(built, {"synth_dir": 1.0}, out_size=16, batch_size=4, process_index=0,
                             process_count=1), 3)
    for step in range(3):
        for key in ("img", "sample_index", "keypoints"):
            np.testing.assert_array_equal(np.concatenate([hosts[0][step][key], hosts[1][step][key]]),
                                          single[step][key], err_msg=f"{key} at step {step}")


def test_eval_pipeline_pads_the_last_batch(built):
    batches = list(pipeline.as_numpy(pipeline.eval_dataset(built["synth_dir"], split="test_occluded", batch_size=3,
                                                           out_size=32, process_index=0, process_count=1)))
    masks = np.stack([b["mask"] for b in batches])
    np.testing.assert_array_equal(masks, [[1, 1, 1], [1, 1, 1], [1, 1, 0]])
    assert batches[-1]["img"][2].max() == 0 and batches[-1]["keypoints"][2].max() == 0
    assert sorted(np.concatenate([b["sample_index"] for b in batches])[:8].tolist()) == list(range(8))


def test_unknown_dataset_name_says_how_to_build_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="not prepared"):
        pipeline.get_builder("coco", data_dir=str(tmp_path))


def test_a_dataset_built_before_masks_reads_with_zero_masks_and_conorm_refuses_it(built, tmp_path):
    import json
    import shutil

    import ml_collections

    from pare_jax import inputs
    from pare_jax.preflight import PreflightError
    old = tmp_path / "old"
    shutil.copytree(built["synth_dir"], old)
    features = json.loads((old / "features.json").read_text())
    for key in pipeline.MASK_KEYS:  # what a 1.0.0 build's features.json lacks
        del features["featuresDict"]["features"][key]
    (old / "features.json").write_text(json.dumps(features))
    assert pipeline.has_masks(built["synth_dir"]) and not pipeline.has_masks(str(old))
    new_batch, old_batch = (next(iter(pipeline.as_numpy(pipeline.eval_dataset(path, batch_size=4, out_size=32))))
                            for path in (built["synth_dir"], str(old)))
    np.testing.assert_array_equal(new_batch["img"], old_batch["img"])
    assert not old_batch["silhouette"].any() and not old_batch["context"].any()
    assert not old_batch["has_silhouette"].any() and not old_batch["has_context"].any()
    assert new_batch["has_context"].all() and new_batch["context"].max() > 0.9
    mixed = _batches(pipeline.train_dataset(
        {built["synth_dir"]: 0.5, str(old): 0.5}, batch_size=8, seed=0, out_size=32, occluder_bank=built["bank"],
        process_index=0, process_count=1, shuffle_buffer=16), 2)  # old and new mix
    flags = np.concatenate([b["has_context"] for b in mixed])
    assert 0 < flags.sum() < len(flags)
    config = ml_collections.ConfigDict({"model": {"conorm": "none"}, "loss": {"weights": {"silhouette": 0.0}}})
    inputs.check_masks(config, [str(old)])  # a plain PARE reads it
    config.model.conorm = "residual"
    with pytest.raises(PreflightError, match="conorm.*context maps.*built before.*delete it"):
        inputs.check_masks(config, [built["synth_dir"], str(old)])
    config.model.conorm, config.loss.weights.silhouette = "none", 6.0
    with pytest.raises(PreflightError, match="silhouette"):
        inputs.check_masks(config, [str(old)])
