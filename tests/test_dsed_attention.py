"""HUPOR's DSED completion and the self-attention over the part maps: exactness at initialisation, gradient
separation of teacher and student, the distillation ramp, bounded attention memory, the occluded-joint metric and
config errors. Tiny models (resnet_tiny, 64 px); training end to end is in test_train.py's smoke variants."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import nnx

from pare_jax import losses, metrics, schedules
from pare_jax.models import ModelConfig, build_model
from pare_jax.models.dsed import PART_VISIBILITY_INDEX, complete_maps, visible_maps
from pare_jax.models.part_self_attention import PartSelfAttention
from smpl_jax.joints import LSP14_NAMES, OPENPOSE_NAMES, SMPL_JOINT_NAMES, SPIN_GT_NAMES

DSED = dict(backbone="resnet_tiny", dsed="part_maps", dsed_width=8, dsed_blocks=1)


def images(n=2, size=64, seed=0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n, size, size, 3)), jnp.float32)


def labels(n=2, size=64, seed=0):
    rng = np.random.default_rng(seed)
    keypoints = np.concatenate([rng.uniform(-0.9, 0.9, (n, 49, 2)), np.ones((n, 49, 1))], -1)
    return {"part_map": jnp.asarray(rng.integers(0, 25, (n, size, size)), jnp.int32),
            "keypoints": jnp.asarray(keypoints, jnp.float32),
            "visibility": jnp.asarray(rng.integers(0, 2, (n, 49)), jnp.float32)}


def outputs(model, x, *args):
    out = nnx.jit(lambda m, x: nnx.view(m, use_running_average=True)(x, None, *args))(model, x)
    return {k: np.asarray(v) for k, v in out.items() if k.startswith("pred_")}


@pytest.fixture(scope="module")
def pare():
    return build_model(dict(backbone="resnet_tiny"), rngs=nnx.Rngs(0))


@pytest.mark.parametrize("options", [dict(part_self_attention="pixel", part_self_attention_pool=2),
                                     dict(part_self_attention="part", part_self_attention_heads=2),
                                     dict(dsed="part_maps", dsed_width=8, dsed_blocks=1)])
def test_options_at_initialisation_give_pare_outputs_exactly(pare, options):
    """gamma = 0 (self-attention) and the zero-initialised decoder output (DSED): PARE's weights in the extended
    model give PARE's outputs bit for bit; a non-zero gamma / decoder then changes them."""
    model = build_model(dict(backbone="resnet_tiny", **options), rngs=nnx.Rngs(1))
    nnx.update(model, nnx.state(pare))  # PARE's variables, the option's own left as initialised
    x = images()
    reference, got = outputs(pare, x), outputs(model, x)
    for key in reference:
        np.testing.assert_array_equal(got[key], reference[key], err_msg=key)
    if "dsed" in options:
        out = model.head.dsed.decoder.out
        out.kernel.set_value(jnp.full_like(out.kernel[...], 0.1))
    else:
        model.head.part_self_attention.gamma.set_value(jnp.float32(0.5))
    assert not np.allclose(outputs(model, x)["pred_pose"], reference["pred_pose"])


def _grad_norms(model, loss_of_outputs):
    """{'student' | 'teacher' | 'decoder' | 'pare': gradient norm} of loss_of_outputs(model outputs)."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params, rest):
        # fresh variables inside the trace (as train_step's casts make): BatchNorm updates its statistics
        out = nnx.merge(graphdef, *jax.tree.map(jnp.asarray, (params, rest)))(images(), None, labels(), False)
        return loss_of_outputs(out)

    grads = jax.jit(jax.grad(loss))(params, rest)
    norms = {"student": 0.0, "teacher": 0.0, "decoder": 0.0, "pare": 0.0}
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        keys = [str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
        group = next((name for name in ("student", "teacher", "decoder") if "dsed" in keys and name in keys),
                     "pare")
        norms[group] += float(jnp.sum(g ** 2))
    return norms


@pytest.fixture(scope="module")
def dsed_model():
    model = build_model(DSED, rngs=nnx.Rngs(0))
    out = model.head.dsed.decoder.out  # a trained decoder: gradients pass it on to the teacher
    out.kernel.set_value(jnp.asarray(np.random.default_rng(0).normal(0, 0.1, out.kernel.shape), jnp.float32))
    return model


def test_distillation_trains_the_student_only(dsed_model):
    norms = _grad_norms(dsed_model, lambda o: losses.dsed_distillation_loss(o["dsed_student_features"],
                                                                            o["dsed_teacher_features"]))
    assert norms["student"] > 0
    assert norms["teacher"] == norms["decoder"] == norms["pare"] == 0.0


def test_completion_trains_teacher_and_decoder_not_the_student(dsed_model):
    batch = labels() | {"has_part_map": jnp.ones(2)}
    norms = _grad_norms(dsed_model, lambda o: losses.dsed_completion_loss(o["dsed_teacher_logits"], batch, "parts"))
    assert norms["teacher"] > 0 and norms["decoder"] > 0
    assert norms["student"] == norms["pare"] == 0.0  # the residual base (the network's logits) is stopped


def test_pare_losses_do_not_train_the_completion(dsed_model):
    """The completed maps drive the attention, but only the branch's logits carry PARE's gradients."""
    norms = _grad_norms(dsed_model, lambda o: jnp.sum(o["pred_pose_6d"] ** 2) + jnp.sum(o["pred_cam"] ** 2))
    assert norms["pare"] > 0
    assert norms["student"] == norms["teacher"] == norms["decoder"] == 0.0


def _dsed_config(**overrides):
    return ml_collections.ConfigDict(dict(completion=60.0, distill=2.0, ramp_fraction=0.25, pretrain_steps=0)
                                      | overrides)


def test_distillation_ramp_is_exact_and_pretraining_switches_pare_terms_off():
    step = jax.jit(lambda s: schedules.dsed_weights(_dsed_config(), s, 1000)[0]["dsed_distill"])
    for s in (1, 100, 249):  # linear to float32 rounding (XLA may multiply by the reciprocal)
        assert float(step(s)) == pytest.approx(2.0 * s / 250, rel=1e-6, abs=0)
    assert float(step(0)) == 0.0 and all(float(step(s)) == 2.0 for s in (250, 251, 999))  # exact ends
    assert float(schedules.dsed_weights(_dsed_config(ramp_fraction=0.0), 0, 1000)[0]["dsed_distill"]) == 2.0
    assert float(schedules.dsed_weights(_dsed_config(), 7, 1000)[0]["dsed_completion"]) == 60.0
    extra, pretrain = schedules.dsed_weights(_dsed_config(pretrain_steps=10), 9, 1000)
    weights = schedules.pretraining_weights({"pose": jnp.float32(60.0)} | extra, pretrain)
    assert float(weights["pose"]) == 0.0 and float(weights["dsed_completion"]) == 60.0
    _, pretrain = schedules.dsed_weights(_dsed_config(pretrain_steps=10), 10, 1000)
    assert not bool(pretrain)
    with pytest.raises(ValueError, match="ramp_fraction=1.5"):
        schedules.dsed_weights(_dsed_config(ramp_fraction=1.5), 0, 1000)
    with pytest.raises(ValueError, match="pretrain_steps=1000"):
        schedules.dsed_weights(_dsed_config(pretrain_steps=1000), 0, 1000)


def test_complete_and_visible_maps():
    """The teacher's maps keep every part; the pretraining student's lose those of hidden joints."""
    part_map = np.zeros((1, 4, 4), np.int32)
    part_map[0, :2] = 1 + SMPL_JOINT_NAMES.index("left_knee")
    centred = jnp.full((1, 49, 3), 1 / 16).at[..., 2].set(1.0)  # joints at a pixel centre of a 16 x 16 map
    batch = {"part_map": jnp.asarray(part_map), "keypoints": centred,
             "visibility": jnp.ones((1, 49)).at[0, (OPENPOSE_NAMES + SPIN_GT_NAMES).index("Left Knee")].set(0.0)}
    knee = 1 + SMPL_JOINT_NAMES.index("left_knee")
    full, seen = complete_maps(batch, "part_maps", (2, 2)), visible_maps(batch, "part_maps", (2, 2))
    assert (np.argmax(full[0, 0], -1) == knee).all() and (np.argmax(full[0, 1], -1) == 0).all()
    np.testing.assert_allclose(seen[0, ..., knee], 0.0, atol=1e-6)
    np.testing.assert_allclose(seen[0, ..., 0], 1.0, atol=1e-6)  # moved to the background
    np.testing.assert_allclose(np.sum(full, -1), 1.0, atol=1e-6)
    heat_full, heat_seen = (f(batch, "joint_heatmaps", (16, 16)) for f in (complete_maps, visible_maps))
    knee_gt = SPIN_GT_NAMES.index("Left Knee")
    assert float(heat_full[0, ..., knee_gt].max()) == pytest.approx(1.0)
    assert float(heat_seen[0, ..., knee_gt].max()) == 0.0
    assert len(PART_VISIBILITY_INDEX) == 24


def test_joint_heatmap_variant_runs_with_its_teacher():
    model = build_model(dict(backbone="resnet_tiny", part_supervision="joints", dsed="joint_heatmaps",
                             dsed_width=8, dsed_blocks=1), rngs=nnx.Rngs(0))
    out = model(images(), None, labels(), True)
    assert out["dsed_teacher_logits"].shape == out["pred_segm_mask"].shape == (2, 16, 16, 24)
    assert np.isfinite(float(losses.dsed_completion_loss(out["dsed_teacher_logits"], labels(), "joints")))


def _largest_intermediate(closed):
    """Elements of the largest value any equation of a (closed) jaxpr produces, sub-jaxprs included."""
    jaxpr, largest = getattr(closed, "jaxpr", closed), 0
    for eqn in jaxpr.eqns:
        largest = max([largest] + [int(np.prod(v.aval.shape)) for v in eqn.outvars if hasattr(v.aval, "shape")])
        for param in eqn.params.values():
            for sub in param if isinstance(param, (tuple, list)) else (param,):
                if hasattr(sub, "eqns") or hasattr(sub, "jaxpr"):
                    largest = max(largest, _largest_intermediate(sub))
    return largest


@pytest.mark.parametrize("pool", [1, 2])
def test_pixel_attention_memory_is_bounded_by_the_pooled_token_count(pool):
    """56 x 56 maps: no intermediate exceeds one (T x T) attention matrix of the pooled T = (56 / pool)^2 tokens,
    so pooling by 2 cuts the largest buffer from 3136^2 to 784^2 entries."""
    attention = PartSelfAttention(24, "pixel", heads=1, dim=32, pool=pool, rngs=nnx.Rngs(0))
    graphdef, state = nnx.split(attention)
    maps = jax.ShapeDtypeStruct((1, 56, 56, 24), jnp.float32)
    largest = _largest_intermediate(jax.make_jaxpr(lambda s, m: nnx.merge(graphdef, s)(m))(state, maps))
    tokens = (56 // pool) ** 2
    assert largest <= tokens ** 2
    assert largest >= tokens ** 2 // 2  # the bound is tight: the matrix is there (on a CPU, XLA's path)


def test_pool_that_does_not_divide_the_maps_is_a_clear_error():
    attention = PartSelfAttention(24, "pixel", heads=1, dim=8, pool=3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="part_self_attention_pool=3 must divide"):
        attention(jnp.zeros((1, 16, 16, 24)))


def test_bad_config_values_are_rejected_clearly():
    with pytest.raises(ValueError, match="dsed='parts' is not one of"):
        ModelConfig(dsed="parts")
    with pytest.raises(ValueError, match="part_self_attention='pixels' is not one of"):
        ModelConfig(part_self_attention="pixels")
    with pytest.raises(ValueError, match="part_supervision='parts'"):
        ModelConfig(dsed="part_maps", part_supervision="joints")
    with pytest.raises(ValueError, match="head='hmr' has none"):
        ModelConfig(head="hmr", part_supervision="none", part_self_attention="part")
    with pytest.raises(ValueError, match="part_self_attention_pool=0 must be a positive integer"):
        ModelConfig(part_self_attention_pool=0)
    with pytest.raises(ValueError, match="attention='softmax'"):
        ModelConfig(part_self_attention="pixel", attention="pool")


def test_evaluation_joints_have_the_visibility_of_spin_gt_joints_0_to_13():
    spin = [n.replace(" (LSP)", "").replace("Top of Head", "Head") for n in SPIN_GT_NAMES[:14]]
    assert spin == list(LSP14_NAMES)
    assert metrics.J14_VISIBILITY == slice(25, 39)


def test_occluded_joint_error_and_standard_errors_exact():
    gt = np.zeros((3, 14, 3))
    gt[:, :, 0] = np.arange(14) * 0.1
    gt[:, :, 1] = np.arange(14) ** 2 * 0.01
    pred = gt.copy()
    pred[0, 0, 2] += 0.014  # sample 0: 14 mm on joint 0 (MPJPE 1 mm)
    pred[1, 3, 2] += 0.028  # sample 1: 28 mm on joint 3 (MPJPE 2 mm)
    visibility = np.ones((3, 49))
    visibility[0, 25 + 0] = 0.0  # joint 0 of sample 0 hidden: 14 mm
    visibility[1, 25 + 5] = 0.0  # joint 5 of sample 1 hidden: 0 mm
    visibility[2, 25:39] = 0.0  # padding: never counted
    visibility[1, 40] = 0.0  # not an evaluation joint
    verts = np.zeros((3, 5, 3))
    sums = metrics.pose_metrics(jnp.asarray(pred), jnp.asarray(gt), jnp.asarray(verts), jnp.asarray(verts),
                                jnp.asarray([1.0, 1.0, 0.0]), jnp.asarray(visibility))
    summary = metrics.summarize(metrics.add(None, sums))
    assert summary["num_occluded_joints"] == 2
    assert summary["occluded_mpjpe"] == pytest.approx(7.0, rel=1e-5)
    assert summary["occluded_mpjpe_se"] == pytest.approx(np.std([14.0, 0.0], ddof=1) / np.sqrt(2), rel=1e-5)
    assert summary["mpjpe"] == pytest.approx(1.5, rel=1e-5)
    assert summary["mpjpe_se"] == pytest.approx(np.std([1.0, 2.0], ddof=1) / np.sqrt(2), rel=1e-5)
    assert summary["occluded_pa_mpjpe"] <= summary["occluded_mpjpe"] + 1e-3
