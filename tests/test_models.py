"""PARE / HMR-EFT models: shapes, part attention, SMPL outputs, modes, configs. Tiny variants at 64 px; the
full-size models only through jax.eval_shape. Parity with PyTorch lives in test_convert.py."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from pare_jax.models import (ModelConfig, abstract_model, build_model, inference_split, load_mean_params,
                             normalize_images, predict)
from pare_jax.models.layers import ConvBN, fold_batch_norm
from pare_jax.models.pare_head import part_attention, part_pooling
from smpl_fixtures import random_smpl_arrays
from smpl_jax import SMPL
from smpl_jax.io import normalize_arrays

NUM_VERTICES = 120


@pytest.fixture(scope="module")
def body():
    """A random SMPL-format body with SPIN's 49-joint regressors (11 keypoint vertices, 9 extra joints)."""
    arrays = normalize_arrays(random_smpl_arrays(0, num_vertices=NUM_VERTICES))
    rng = np.random.default_rng(0)
    arrays["keypoint_vertex_ids"] = rng.choice(NUM_VERTICES, 11, replace=False)
    arrays["extra_regressor"] = rng.dirichlet(np.ones(NUM_VERTICES), size=9)
    return SMPL.from_arrays(arrays)


def images(n=2, size=64, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, size, size, 3)), jnp.float32)


def assert_rotations(r):
    r = np.asarray(r)
    np.testing.assert_allclose(r @ np.swapaxes(r, -1, -2), np.broadcast_to(np.eye(3), r.shape), atol=1e-5)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-5)


# HRNet runs in test_convert.py (parity with torch); here the cheaper-to-compile ResNet carries the SMPL outputs.
@pytest.mark.parametrize("backbone,head", [("resnet_tiny", "pare"), ("resnet_tiny", "hmr")])
def test_predict_outputs_with_body(body, backbone, head):
    model = build_model(dict(backbone=backbone, head=head), rngs=nnx.Rngs(0))
    out = predict(model, body, images())
    n = 2
    expected = {"pred_pose": (n, 24, 3, 3), "pred_pose_6d": (n, 24, 6), "pred_shape": (n, 10), "pred_cam": (n, 3),
                "smpl_vertices": (n, NUM_VERTICES, 3), "smpl_joints3d": (n, 49, 3), "smpl_joints2d": (n, 49, 2),
                "pred_cam_t": (n, 3)}
    if head == "pare":
        expected["pred_segm_mask"] = (n, 16, 16, 25)  # NHWC, 1/4 of the input
    assert {k: v.shape for k, v in out.items()} == expected
    assert all(v.dtype == jnp.float32 and np.isfinite(v).all() for v in out.values())
    assert_rotations(out["pred_pose"])
    tz = 2 * 5000 / (224 * np.asarray(out["pred_cam"])[:, 0] + 1e-9)
    np.testing.assert_allclose(out["pred_cam_t"][:, 2], tz, rtol=1e-5)


def test_full_size_shapes_via_eval_shape():
    for backbone, channels, size in (("hrnet_w32", 480, 56), ("resnet50", 2048, 7)):
        model = abstract_model(dict(backbone=backbone))
        x = jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32)
        features, out = nnx.eval_shape(lambda m, x: (m.backbone(x), m(x)), model, x)
        assert features.shape == (2, size, size, channels)
        assert out["pred_segm_mask"].shape == (2, 56, 56, 25)
        assert out["pred_pose"].shape == (2, 24, 3, 3) and out["pred_cam"].shape == (2, 3)


def test_part_attention_is_softmax_weighted_sum():
    rng = np.random.default_rng(1)
    maps, feats = rng.normal(size=(2, 5, 6, 24)), rng.normal(size=(2, 5, 6, 7))
    got = np.asarray(part_attention(jnp.asarray(maps), jnp.asarray(feats)))
    flat_maps, flat_feats = maps.reshape(2, 30, 24), feats.reshape(2, 30, 7)
    for n in range(2):
        for j in range(24):
            w = np.exp(flat_maps[n, :, j] - flat_maps[n, :, j].max())
            w /= w.sum()
            np.testing.assert_allclose(got[n, j], w @ flat_feats[n], rtol=1e-5, atol=1e-6)


def test_part_pooling_averages_argmax_pixels():
    maps = np.full((1, 2, 2, 3), -5.0)  # background + 2 parts; pixels 0,1 -> part 1, pixel 2 -> part 2, 3 -> bg
    maps[0, 0, 0, 1] = maps[0, 0, 1, 1] = maps[0, 1, 0, 2] = maps[0, 1, 1, 0] = 5.0
    feats = np.arange(8.0).reshape(1, 2, 2, 2)
    got = np.asarray(part_pooling(jnp.asarray(maps), jnp.asarray(feats), drop_background=True))
    np.testing.assert_allclose(got[0], [[1.0, 2.0], [4.0, 5.0]])


def test_hmr_starts_from_mean_parameters(tmp_path):
    aa = np.zeros((24, 3), np.float32)
    aa[0] = [0.0, 0.0, np.pi / 2]
    path = str(tmp_path / "mean.npz")
    np.savez(path, pose=aa.reshape(-1), shape=np.arange(10.0), cam=np.array([0.8, 0.1, -0.1]))
    model = build_model(dict(backbone="resnet_tiny", head="hmr", mean_params=path), rngs=nnx.Rngs(0))
    for layer in (model.head.decpose, model.head.decshape, model.head.deccam):  # no updates: the means come out
        layer.kernel.set_value(jnp.zeros_like(layer.kernel[...]))
        layer.bias.set_value(jnp.zeros_like(layer.bias[...]))
    head = nnx.view(model.head, deterministic=True)
    out = nnx.jit(lambda h, f: h(f))(head, jnp.ones((1, 2, 2, model.backbone.out_channels)))
    np.testing.assert_allclose(out["pred_shape"][0], np.arange(10.0), atol=1e-6)
    np.testing.assert_allclose(out["pred_cam"][0], [0.8, 0.1, -0.1], atol=1e-6)
    np.testing.assert_allclose(out["pred_pose"][0, 0], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-6)
    np.testing.assert_allclose(out["pred_pose"][0, 1:], np.broadcast_to(np.eye(3), (23, 3, 3)), atol=1e-6)


def test_default_mean_parameters():
    mean = load_mean_params("")
    assert mean["pose"].shape == (144,) and not mean["shape"].any()
    np.testing.assert_allclose(mean["cam"], [0.9, 0.0, 0.0])
    with pytest.raises(FileNotFoundError, match="mean_params=''"):
        load_mean_params("/nonexistent/smpl_mean_params.npz")


def test_training_mode_updates_batch_norm_with_pytorch_momentum():
    layer = ConvBN(3, 4, 3, rngs=nnx.Rngs(0))
    x = images(2, 8)
    y = layer.conv(x)
    out = layer(x)  # training mode: batch statistics; running averages move 10% (PyTorch momentum 0.1)
    y = np.asarray(y).reshape(-1, 4)
    np.testing.assert_allclose(out.reshape(-1, 4), np.maximum((y - y.mean(0)) / np.sqrt(y.var(0) + 1e-5), 0),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.bn.mean[...], 0.1 * y.mean(0), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(layer.bn.var[...], 0.9 + 0.1 * y.var(0, ddof=1), rtol=1e-4)  # unbiased, as torch


def test_fold_batch_norm_matches_unfolded():
    model = build_model(dict(backbone="resnet_tiny"), rngs=nnx.Rngs(0))
    for path, bn in nnx.iter_modules(model):  # non-trivial running statistics
        if isinstance(bn, nnx.BatchNorm):
            rng = np.random.default_rng(len(path))
            bn.mean.set_value(jnp.asarray(rng.normal(0, 0.1, bn.mean.shape), jnp.float32))
            bn.var.set_value(jnp.asarray(rng.uniform(0.5, 1.5, bn.var.shape), jnp.float32))
    x = images(2)
    with jax.default_matmul_precision("highest"):  # as the parity tests, so the compiled predict is shared
        folded = predict(inference_split(model), None, x)
        plain = predict(nnx.split(model), None, x)  # a training-mode split: predict switches to inference mode
    for key in ("pred_pose", "pred_shape", "pred_cam", "pred_segm_mask"):
        np.testing.assert_allclose(folded[key], plain[key], atol=1e-4, rtol=1e-4)
    assert any(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(model))  # the model is untouched
    assert not any(isinstance(m, nnx.BatchNorm) for _, m in nnx.iter_modules(fold_batch_norm(nnx.clone(model))))


def test_bfloat16_predict_keeps_float32_params_and_outputs():
    model = build_model(dict(backbone="resnet_tiny"), rngs=nnx.Rngs(0))
    split = inference_split(model)
    x = images(2)
    with jax.default_matmul_precision("highest"):
        full = predict(split, None, x)
        half = predict(split, None, x, dtype="bfloat16")
    assert all(v.dtype == jnp.float32 for v in half.values())
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(split[1]))
    np.testing.assert_allclose(half["pred_cam"], full["pred_cam"], atol=0.1)
    assert not np.array_equal(half["pred_cam"], full["pred_cam"])  # it did compute in bfloat16


@pytest.mark.parametrize("supervision,maps", [("parts", 25), ("joints", 24), ("none", 24)])
def test_part_supervision_sets_the_number_of_part_maps(supervision, maps):
    model = abstract_model(dict(backbone="resnet_tiny", part_supervision=supervision))
    out = nnx.eval_shape(lambda m, x: m(x), model, jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
    assert out["pred_segm_mask"].shape == (1, 16, 16, maps)


def test_config_errors_are_clear():
    with pytest.raises(ValueError, match="attention='sofmax'"):
        ModelConfig(attention="sofmax")
    with pytest.raises(ValueError, match="unknown keys \\['use_attention'\\]"):
        ModelConfig.from_mapping({"use_attention": True})
    with pytest.raises(ValueError, match="pool"):
        ModelConfig(attention="pool", part_supervision="none")


def test_input_errors_are_clear(body):
    model = build_model(dict(backbone="resnet_tiny", head="hmr"), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="looks like NCHW"):
        predict(model, None, jnp.zeros((1, 3, 64, 64)))
    with pytest.raises(TypeError, match=r"dtype uint8.*normalize_images\(images / 255.0\)"):
        predict(model, None, np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="no pixels to predict from"):
        predict(model, None, np.zeros((0, 64, 64, 3), np.float32))
    with pytest.raises(TypeError, match=r"got a list; e.g. np.stack"):
        predict(model, None, [np.zeros((64, 64, 3), np.float32)])
    arrays = normalize_arrays(random_smpl_arrays(0, num_vertices=NUM_VERTICES))
    with pytest.raises(ValueError, match="extra_regressor"):
        predict(model, SMPL.from_arrays(arrays), images(1))


def test_normalize_images():
    white = normalize_images(np.ones((1, 2, 2, 3), np.float32))
    np.testing.assert_allclose(white[0, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
                               rtol=1e-6)
