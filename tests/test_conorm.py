"""OCHMR's CoNorm (pare_jax/models/conorm.py): the block by hand, its placement, the residual form's identity at
init (also through restore_into, the path of config.init_from), the state tree with CoNorm off, the errors, the
train step, and the demo's context maps. Tiny backbones at 64 px."""
import hashlib

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from pare_jax import preflight, schedules, train_step
from pare_jax.convert import restore_into, save_model
from pare_jax.convert.weights import assign_weights, model_weights
from pare_jax.demo import geometry
from pare_jax.models import ModelConfig, abstract_model, build_model, predict
from pare_jax.models.conorm import CoNorm, resize_half_pixel

SIZE = 64


def images(n=2, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, SIZE, SIZE, 3)), jnp.float32)


def contexts(n=2, seed=1, size=SIZE):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(n, size, size, 2)), jnp.float32)


def tree_rows(model):
    return sorted(("/".join(map(str, p)), tuple(v.get_value().shape), type(v).__name__)
                  for p, v in nnx.to_flat_state(nnx.state(model)))


# (leaves, sha256 of the sorted (path, shape, type) rows) of the state trees before CoNorm existed.
TREES_BEFORE_CONORM = {"hrnet_tiny": (330, "c1c44842ebb18b46"), "resnet_tiny": (128, "4134f3fa0d66ef20")}


@pytest.mark.parametrize("backbone", sorted(TREES_BEFORE_CONORM))
def test_state_tree_with_conorm_off_is_unchanged_and_conorm_adds_only_its_leaves(backbone):
    plain = tree_rows(abstract_model(dict(backbone=backbone)))
    assert (len(plain), hashlib.sha256(repr(plain).encode()).hexdigest()[:16]) == TREES_BEFORE_CONORM[backbone]
    for form in ("scale_bias", "residual"):
        with_conorm = tree_rows(abstract_model(dict(backbone=backbone, conorm=form, conorm_hidden=8)))
        assert set(plain) <= set(with_conorm)
        extra = set(with_conorm) - set(plain)
        assert extra and all(row[0].startswith("backbone/conorm/") and row[2] == "Param" for row in extra)


@pytest.mark.parametrize("backbone,stage,channels", [
    ("resnet50", 2, [512]), ("resnet50", 4, [2048]), ("hrnet_w32", 2, [32, 64]), ("hrnet_w32", 4, [32, 64, 128, 256]),
    ("hrnet_w32", 1, [256])])
def test_full_size_placement(backbone, stage, channels):
    backbone_model = abstract_model(dict(backbone=backbone, conorm="scale_bias", conorm_stage=stage)).backbone
    blocks = [backbone_model.conorm] if backbone.startswith("resnet") else list(backbone_model.conorm)
    assert [b.phi_scale.kernel.get_value().shape for b in blocks] == [(3, 3, 128, c) for c in channels]
    assert all(b.phi_latent.kernel.get_value().shape == (3, 3, 2, 128) for b in blocks)


def numpy_bilinear_half_pixel(x, out_h, out_w):
    """PyTorch's F.interpolate(bilinear, align_corners=False), written out: x [N, H, W, C]."""
    def weights(n_in, n_out):
        src = np.maximum((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0.0)
        low = np.minimum(np.floor(src).astype(int), n_in - 1)
        high = np.minimum(low + 1, n_in - 1)
        w = np.zeros((n_out, n_in))
        w[np.arange(n_out), low] += 1 - (src - low)
        w[np.arange(n_out), high] += src - low
        return w
    return np.einsum("oh,pw,nhwc->nopc", weights(x.shape[1], out_h), weights(x.shape[2], out_w), x)


def numpy_conv3x3(x, kernel, bias):
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    h, w = x.shape[1:3]
    out = np.zeros(x.shape[:3] + (kernel.shape[-1],))
    for dy in range(3):
        for dx in range(3):
            out += np.einsum("nhwi,io->nhwo", padded[:, dy:dy + h, dx:dx + w], kernel[dy, dx])
    return out + bias


@pytest.mark.parametrize("size_in,size_out", [((8, 8), (4, 4)), ((5, 7), (9, 4)), ((64, 64), (16, 16))])
def test_resize_is_half_pixel_bilinear(size_in, size_out):
    x = np.random.default_rng(0).uniform(size=(2,) + size_in + (2,))
    np.testing.assert_allclose(resize_half_pixel(jnp.asarray(x, jnp.float32), size_out),
                               numpy_bilinear_half_pixel(x, *size_out), atol=1e-6)
    if size_in == (8, 8):  # halving samples between pixel pairs: a 2 x 2 average
        np.testing.assert_allclose(numpy_bilinear_half_pixel(x, 4, 4), x.reshape(2, 4, 2, 4, 2, 2).mean((2, 4)))


def test_scale_bias_block_by_hand():
    block = CoNorm(3, 4, "scale_bias", rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    x, context = rng.normal(size=(2, 4, 4, 3)), rng.uniform(size=(2, 8, 8, 2))
    params = {name: (np.asarray(getattr(block, name).kernel[...], np.float64),
                     np.asarray(getattr(block, name).bias[...], np.float64))
              for name in ("phi_latent", "phi_scale", "phi_bias")}
    # the faithful form keeps PyTorch's default init: nothing is zero, all within 1/sqrt(fan_in)
    for kernel, bias in params.values():
        bound = 1 / np.sqrt(9 * kernel.shape[2])
        assert np.abs(kernel).max() <= bound and np.abs(bias).max() <= bound and np.abs(kernel).min() > 0
    c = numpy_bilinear_half_pixel(context, 4, 4)
    latent = np.maximum(numpy_conv3x3(c, *params["phi_latent"]), 0)
    expected = x * numpy_conv3x3(latent, *params["phi_scale"]) + numpy_conv3x3(latent, *params["phi_bias"])
    got = block(jnp.asarray(x, jnp.float32), jnp.asarray(context, jnp.float32))
    np.testing.assert_allclose(got, expected, atol=1e-5)


def copy_weights(source, target):
    assign_weights(target, model_weights(source))


@pytest.mark.parametrize("backbone,stage", [("hrnet_tiny", 2), ("resnet_tiny", 2), ("hrnet_tiny", 1)])
def test_residual_form_is_the_identity_at_init(backbone, stage):
    plain = build_model(dict(backbone=backbone), rngs=nnx.Rngs(0))
    model = build_model(dict(backbone=backbone, conorm="residual", conorm_stage=stage, conorm_hidden=8),
                        rngs=nnx.Rngs(1))
    copy_weights(plain, model)
    x = images()
    ref, out = predict(plain, None, x), predict(model, None, x, context=contexts())
    assert ref.keys() == out.keys()
    for key in ref:
        np.testing.assert_array_equal(out[key], ref[key], err_msg=key)


def test_converted_weights_load_into_a_residual_model_and_conorm_keeps_its_init(tmp_path):
    """config.init_from with converted weights goes through restore_into: the weights fill what they have."""
    plain = build_model(dict(backbone="resnet_tiny"), rngs=nnx.Rngs(0))
    save_model(str(tmp_path / "weights"), plain)
    model = build_model(dict(backbone="resnet_tiny", conorm="residual", conorm_hidden=8), rngs=nnx.Rngs(1))
    before = {p: np.asarray(v) for p, v in model_weights(model).items() if "conorm" in p}
    restored = restore_into(model, str(tmp_path / "weights"))
    assert not any("conorm" in p for p in restored)
    after = model_weights(model)
    for path, value in before.items():
        np.testing.assert_array_equal(after[path], value)
    assert np.abs(before[("backbone", "conorm", "phi_latent", "kernel")]).max() > 0
    assert not np.any(before[("backbone", "conorm", "phi_scale", "kernel")])
    x = images()
    ref, out = predict(plain, None, x), predict(model, None, x, context=contexts())
    for key in ref:
        np.testing.assert_array_equal(out[key], ref[key], err_msg=key)


def test_the_context_matters_with_scale_bias():
    model = build_model(dict(backbone="resnet_tiny", conorm="scale_bias", conorm_hidden=8), rngs=nnx.Rngs(0))
    x = images()
    a = predict(model, None, x, context=contexts(seed=1))
    b = predict(model, None, x, context=contexts(seed=2))
    assert np.abs(np.asarray(a["pred_cam"]) - np.asarray(b["pred_cam"])).max() > 1e-6
    # any size: the maps are resized to each block's resolution
    c = predict(model, None, x, context=contexts(seed=1, size=32))
    assert np.isfinite(np.asarray(c["pred_cam"])).all()


@pytest.fixture(scope="module")
def model():
    return build_model(dict(backbone="resnet_tiny", conorm="residual", conorm_hidden=8), rngs=nnx.Rngs(0))


def test_missing_or_misshapen_context_is_a_clear_error(model):
    x = images()
    with pytest.raises(ValueError, match=r"uses CoNorm \(model.conorm='residual'\); pass context=\[N, H, W, 2\].*"
                                         r"pare_jax/data/context.py"):
        model(x)
    with pytest.raises(ValueError, match="model.conorm='residual'"):
        predict(model, None, x)
    for bad in (jnp.zeros((2, SIZE, SIZE)), jnp.zeros((2, SIZE, SIZE, 3)), jnp.zeros((3, SIZE, SIZE, 2))):
        with pytest.raises(ValueError, match=r"context must be \[N, H, W, 2\].*N = 2"):
            model(x, context=bad)
        with pytest.raises(ValueError, match=r"context must be \[N, H, W, 2\]"):
            predict(model, None, x, context=bad)
    with pytest.raises(TypeError, match="dtype"):
        model(x, context=jnp.zeros((2, SIZE, SIZE, 2), jnp.int32))


def test_unknown_form_and_out_of_range_stage():
    with pytest.raises(ValueError, match="conorm='film' is not one of"):
        ModelConfig(conorm="film")
    for backbone in ("resnet_tiny", "hrnet_w32"):
        for stage in (0, 5, 2.0, True):
            with pytest.raises(ValueError, match="conorm_stage=.* out of range"):
                ModelConfig(backbone=backbone, conorm="residual", conorm_stage=stage)
    with pytest.raises(ValueError, match="conorm_hidden=0 must be a positive integer"):
        ModelConfig(conorm="residual", conorm_hidden=0)
    for bad in (dict(conorm="film"), dict(conorm="scale_bias", conorm_stage=7)):
        config = ml_collections.ConfigDict(dict(ModelConfig().to_dict(), **bad))
        with pytest.raises(preflight.PreflightError, match="conorm"):
            preflight._check_model(config)


def test_synthetic_conorm_variants():
    from configs import synthetic
    for variant, backbone in (("conorm", "hrnet_w8"), ("conorm_smoke", "hrnet_tiny")):
        config = ModelConfig.from_mapping(synthetic.get_config(variant).model)
        assert (config.backbone, config.conorm, config.conorm_stage, config.conorm_hidden) == (
            backbone, "residual", 2, 32)
    assert ModelConfig.from_mapping(synthetic.get_config("").model).conorm == "none"


def tiny_body():
    from smpl_fixtures import random_smpl_arrays
    from smpl_jax import SMPL
    arrays = random_smpl_arrays(seed=0, num_vertices=200)
    rng = np.random.default_rng(0)
    return SMPL.from_arrays(dict(arrays, keypoint_vertex_ids=rng.choice(200, 11, replace=False),
                                 extra_regressor=rng.dirichlet(np.ones(200), 9),
                                 h36m_regressor=rng.dirichlet(np.ones(200), 17)))


def test_train_step_feeds_the_context_and_a_batch_without_it_is_a_clear_error():
    optim = ml_collections.ConfigDict(dict(lr=1e-3, schedule="constant", warmup_steps=0, b1=0.9, b2=0.999,
                                           grad_clip_norm=0.0))
    loss = ml_collections.ConfigDict(dict(weights=dict(keypoints_2d=1.0, keypoints_3d=1.0, pose=1.0, betas=1.0,
                                                       camera=1.0, part=0.0), part_until_step=-1))
    tx = schedules.optimizer(optim, 10)
    model = build_model(dict(backbone="resnet_tiny", head="hmr", part_supervision="none", conorm="scale_bias",
                             conorm_hidden=4), rngs=nnx.Rngs(0))
    graphdef, state = train_step.init_train_state(model, tx)
    rng = np.random.default_rng(0)
    batch = {"img": jnp.asarray(rng.normal(size=(2, 32, 32, 3)), jnp.float32),
             "keypoints": jnp.asarray(rng.normal(size=(2, 49, 3)), jnp.float32), "joints3d": jnp.zeros((2, 24, 4)),
             "has_joints3d": jnp.ones(2), "pose": jnp.asarray(rng.normal(0, 0.3, (2, 72)), jnp.float32),
             "betas": jnp.zeros((2, 10)), "has_smpl": jnp.ones(2),
             "context": jnp.asarray(rng.uniform(size=(2, 32, 32, 2)), jnp.float32), "has_context": jnp.ones(2)}
    step = jax.jit(train_step.make_train_step(graphdef, tx, loss, "none"))
    body = tiny_body()
    new_state, metrics = step(state, batch, body)
    assert bool(metrics["finite"])
    old, new = dict(nnx.to_flat_state(state.params)), dict(nnx.to_flat_state(new_state.params))
    conorm_paths = [p for p in old if "conorm" in p]
    assert len(conorm_paths) == 6  # the gradients reach every CoNorm parameter: Adam moves (most of) each
    for path in conorm_paths:  # (a latent channel the ReLU switches off everywhere gets no gradient)
        moved = np.abs(np.asarray(new[path].get_value()) - np.asarray(old[path].get_value())) > 0
        assert moved.mean() > 0.5, path
    without = {k: v for k, v in batch.items() if k not in ("context", "has_context")}
    with pytest.raises(ValueError, match="rebuild the dataset with a version that has context maps"):
        step(state, without, body)


def test_eval_step_feeds_the_context():
    from pare_jax.evaluate import make_model_eval_step
    model = build_model(dict(backbone="resnet_tiny", conorm="residual", conorm_hidden=4), rngs=nnx.Rngs(0))
    graphdef, params, rest = train_step.split_model(model)
    captured = {}

    def fake_metrics(pose, shape, segm, batch, body, gt_bodies):
        captured["pose"] = pose
        return {}
    import pare_jax.evaluate as evaluate
    original, evaluate.batch_metrics = evaluate.batch_metrics, fake_metrics
    try:
        step = jax.jit(make_model_eval_step(graphdef))
        step(params, rest, {"img": images(), "context": contexts()}, None, None)
        assert captured["pose"].shape == (2, 24, 3, 3)
        with pytest.raises(ValueError, match="rebuild the dataset"):
            step(params, rest, {"img": images()}, None, None)
    finally:
        evaluate.batch_metrics = original


def test_demo_context_maps_of_two_people():
    # person 0: box 40 x 80 about (30, 50), crop side 96; person 1: box 30 x 50 about (60, 50), crop side 60
    boxes = np.array([[10.0, 10.0, 50.0, 90.0], [45.0, 25.0, 75.0, 75.0]])
    squares = geometry.square_boxes(boxes)
    maps = geometry.crop_context_maps(squares, SIZE)
    assert maps.shape == (2, SIZE, SIZE, 2) and maps.dtype == np.float32
    local, glob = maps[0, ..., 0], maps[0, ..., 1]
    # local: the target at the crop centre (32, 32), between pixels 31 and 32; sigma 0.1 x 64 px
    peak = np.unravel_index(np.argmax(local), local.shape)
    assert set(peak) <= {31, 32} and local.max() > 0.99
    np.testing.assert_allclose(local[31, 31 + 7], np.exp(-(6.5 ** 2 + 0.5 ** 2) / (2 * 6.4 ** 2)), rtol=1e-5)
    # global: also person 1, whose centre lands at 32 + (60 - 30) x 64 / 96 = 52 (x), 32 (y)
    np.testing.assert_array_equal(np.maximum(glob, local), glob)
    second = glob[:, 44:]
    peak = np.unravel_index(np.argmax(second), second.shape)
    assert peak[0] in (31, 32) and peak[1] + 44 in (51, 52) and second.max() > 0.95  # sigma 4 px
    assert glob[32, 42] < 0.9 * second.max()  # two peaks, not one blob
    # person 1's crop: its own peak at the centre, person 0 to its left, (30 - 60) x 64 / 60 = -32 px away
    assert maps[1, 32, 32, 0] > 0.99 and maps[1, 32, 0, 1] > maps[1, 32, 0, 0]


def test_demo_predictor_passes_context_maps_to_a_conorm_model():
    from pare_jax import trained
    from pare_jax.demo import app
    from pare_jax.models import inference_split
    model = build_model(dict(backbone="resnet_tiny", conorm="scale_bias", conorm_hidden=4), rngs=nnx.Rngs(0))
    graphdef, state = inference_split(model)
    seen = []

    class Spy(trained.Trained):
        def predict(self, images, dtype="float32", with_body=True, context=None):
            seen.append(context)
            return super().predict(images, dtype, with_body, context)

    spy = Spy(graphdef, state, model.config, tiny_body(), None, "test")
    image = np.zeros((120, 100, 3), np.uint8)
    boxes = np.array([[10.0, 10.0, 50.0, 90.0], [45.0, 25.0, 75.0, 75.0]])
    found = app.Predictor(spy)([image], [boxes])
    assert found[0]["vertices"].shape[0] == 2
    context = np.asarray(seen[0])
    expected = geometry.crop_context_maps(geometry.square_boxes(boxes), spy.image_size)
    np.testing.assert_array_equal(context[:2], expected)
    assert not context[2:].any()  # the padding of the batch


def test_occlusion_analysis_passes_each_image_its_context():
    from pare_jax import trained
    from pare_jax.analysis import occlusion
    from pare_jax.models import inference_split
    model = build_model(dict(backbone="resnet_tiny", conorm="scale_bias", conorm_hidden=4), rngs=nnx.Rngs(0))
    graphdef, state = inference_split(model)
    wrapped = trained.Trained(graphdef, state, model.config, tiny_body(), None, "test")
    x, gt = np.asarray(images(1)), np.zeros((1, 14, 3), np.float32)
    boxes = occlusion.patch_boxes(SIZE, SIZE, 32, 32)[0]
    with pytest.raises(ValueError, match="needs the samples' context maps"):
        occlusion.sensitivity(wrapped, x, gt, boxes)
    a = occlusion.sensitivity(wrapped, x, gt, boxes, contexts=np.asarray(contexts(1, seed=1)))
    b = occlusion.sensitivity(wrapped, x, gt, boxes, contexts=np.asarray(contexts(1, seed=2)))
    assert a["mpjpe"].shape == (1, 4, 14) and not np.allclose(a["mpjpe"], b["mpjpe"])
