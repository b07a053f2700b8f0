"""Exact-value tests of the losses, the schedules and the evaluation metrics."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from pare_jax import losses, metrics, schedules
from smpl_jax.rotations import axis_angle_to_matrix


def test_keypoint_2d_loss_weights_openpose_zero_and_confidence():
    gt = np.zeros((1, 49, 3), np.float32)
    gt[0, :, 2] = 1.0
    gt[0, 30, 2] = 0.5
    pred = np.zeros((1, 49, 2), np.float32)
    pred[0, 3] = [1.0, 1.0]  # an OpenPose joint: weight 0
    pred[0, 30] = [2.0, 0.0]  # a ground-truth joint with confidence 0.5
    value = losses.keypoint_2d_loss(jnp.asarray(pred), jnp.asarray(gt))
    assert float(value) == pytest.approx(0.5 * 4.0 / (49 * 2))


def test_keypoint_3d_loss_centres_on_mid_hip_and_masks_samples():
    gt = np.zeros((2, 24, 4), np.float32)
    gt[..., 3] = 1.0
    pred = np.zeros((2, 24, 3), np.float32) + 5.0  # a pure translation: zero after centring
    assert float(losses.keypoint_3d_loss(jnp.asarray(pred), jnp.asarray(gt), jnp.ones(2))) == pytest.approx(0)
    pred[0, 10, 0] += 1.0  # one joint of sample 0 off by 1 m
    pred[1, 10, 0] += 3.0  # sample 1 has no 3D label: ignored
    value = losses.keypoint_3d_loss(jnp.asarray(pred), jnp.asarray(gt), jnp.asarray([1.0, 0.0]))
    assert float(value) == pytest.approx(1.0 / (24 * 3))
    assert float(losses.keypoint_3d_loss(jnp.asarray(pred), jnp.asarray(gt), jnp.zeros(2))) == 0.0


def test_smpl_losses_zero_for_ground_truth_and_masked():
    pose = np.random.default_rng(0).normal(size=(2, 72)).astype(np.float32) * 0.3
    rot = axis_angle_to_matrix(jnp.asarray(pose).reshape(2, 24, 3))
    p, b = losses.smpl_losses(rot, jnp.ones((2, 10)), jnp.asarray(pose), jnp.ones((2, 10)), jnp.ones(2))
    assert float(p) == pytest.approx(0, abs=1e-10) and float(b) == 0.0
    _, b = losses.smpl_losses(rot, jnp.zeros((2, 10)), jnp.asarray(pose), jnp.ones((2, 10)), jnp.asarray([0.0, 1]))
    assert float(b) == pytest.approx(1.0)


def test_camera_loss():
    cam = jnp.asarray([[0.0, 1, 1], [0.1, 0, 0]])
    assert float(losses.camera_loss(cam)) == pytest.approx((1.0 + np.exp(-2.0)) / 2)


def test_camera_loss_stays_finite_for_very_negative_scales():
    """The authors' exp(-10 s)^2 overflows float32 below s = -4.4; ours continues it by its tangent line."""
    scale = lambda s: jnp.asarray([[s, 0.0, 0.0]], jnp.float32)  # noqa: E731
    s0 = losses.CAMERA_LOSS_LINEAR_BELOW
    assert float(losses.camera_loss(scale(s0 + 1e-3))) == pytest.approx(np.exp(-20 * (s0 + 1e-3)), rel=1e-4)
    value_and_grad = jax.value_and_grad(lambda s: losses.camera_loss(scale(s)))
    values, grads = zip(*(value_and_grad(jnp.float32(s)) for s in (-2.0, -10.0, -100.0)))
    assert np.isfinite(values).all() and np.isfinite(grads).all()
    assert values[0] < values[1] < values[2] and all(float(g) < 0 for g in grads)  # still pushes s up
    # Continuous with a continuous slope at the switch.
    below, above = value_and_grad(jnp.float32(s0 - 1e-4)), value_and_grad(jnp.float32(s0 + 1e-4))
    assert float(below[0]) == pytest.approx(float(above[0]), rel=1e-2)
    assert float(below[1]) == pytest.approx(float(above[1]), rel=1e-2)


def test_part_segmentation_loss_is_cross_entropy_of_upsampled_logits():
    labels = np.zeros((1, 8, 8), np.int32)
    labels[0, :, 4:] = 3
    logits = np.zeros((1, 2, 2, 25), np.float32)
    logits[..., 0] = 10.0
    logits[0, :, 1, 0], logits[0, :, 1, 3] = 0.0, 10.0  # right half predicts part 3, left half background
    good = losses.part_segmentation_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.ones(1))
    uniform = losses.part_segmentation_loss(jnp.zeros((1, 2, 2, 25)), jnp.asarray(labels), jnp.ones(1))
    assert float(uniform) == pytest.approx(np.log(25), rel=1e-5)
    assert float(good) < 0.5 * float(uniform)
    assert float(losses.part_segmentation_loss(jnp.asarray(logits), jnp.asarray(labels), jnp.zeros(1))) == 0.0


def test_part_segmentation_loss_equals_a_numpy_cross_entropy_with_its_gradient():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6, 6, 25)).astype(np.float32) * 3
    labels = rng.integers(0, 25, (2, 6, 6)).astype(np.int32)  # label size = logit size: no resampling
    log_probs = logits - logits.max(-1, keepdims=True)
    log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_probs, labels[..., None], -1).mean()
    loss = lambda x: losses.part_segmentation_loss(x, jnp.asarray(labels), jnp.ones(2))  # noqa: E731
    assert float(loss(jnp.asarray(logits))) == pytest.approx(expected, rel=1e-6)
    softmax = np.exp(log_probs)
    expected_grad = (softmax - np.eye(25)[labels]) / labels.size
    np.testing.assert_allclose(jax.grad(loss)(jnp.asarray(logits)), expected_grad, atol=1e-7)


def test_joint_heatmap_loss_prefers_maps_peaked_at_the_joint():
    keypoints = np.zeros((1, 49, 3), np.float32)
    keypoints[0, 25:, :2] = [0.5, -0.5]  # x = 0.5 (right), y = -0.5 (up)
    keypoints[0, 25:, 2] = 1.0
    peaked = np.full((1, 8, 8, 24), -10.0, np.float32)
    peaked[0, 2, 6] = 10.0  # row 2 (y ~ -0.4), column 6 (x ~ 0.6)
    wrong = np.flip(peaked, axis=(1, 2)).copy()
    loss = lambda x: float(losses.joint_heatmap_loss(jnp.asarray(x), jnp.asarray(keypoints), sigma=0.2))  # noqa
    assert loss(peaked) < loss(wrong)


def _loss_config(part_until):
    return ml_collections.ConfigDict(dict(weights=dict(keypoints_2d=300.0, keypoints_3d=300.0, pose=60.0,
                                                       betas=0.06, camera=60.0, part=60.0),
                                          part_until_step=part_until))


def test_part_weight_switches_off_at_the_configured_step():
    config = _loss_config(100)
    assert float(schedules.loss_weights(config, 99)["part"]) == 60.0
    assert float(schedules.loss_weights(config, 100)["part"]) == 0.0
    assert float(schedules.loss_weights(_loss_config(-1), 10 ** 7)["part"]) == 60.0
    bad = _loss_config(1)
    bad.weights.unknown = 1.0
    with pytest.raises(ValueError, match="unknown terms"):
        schedules.loss_weights(bad, 0)


def test_learning_rate_schedules():
    optim = ml_collections.ConfigDict(dict(lr=1e-3, schedule="warmup_cosine", warmup_steps=10, b1=0.9, b2=0.999,
                                           grad_clip_norm=0.0))
    sched = schedules.learning_rate_schedule(optim, 100)
    assert float(sched(0)) == 0.0 and float(sched(10)) == pytest.approx(1e-3) and float(sched(100)) < 1e-5
    optim.schedule = "linear"
    with pytest.raises(ValueError, match="optim.schedule='linear'"):
        schedules.learning_rate_schedule(optim, 100)


def test_pose_metrics_exact_values_and_padding():
    gt = np.zeros((3, 14, 3))
    gt[:, :, 0] = np.arange(14) * 0.1
    gt[:, :, 1] = np.arange(14) ** 2 * 0.01
    pred = gt.copy()
    pred[0, 0, 2] += 0.014  # 14 mm on one joint of sample 0 -> MPJPE 1 mm
    pred[1] *= 2.0  # a scaled copy: PA-MPJPE 0
    verts = np.zeros((3, 5, 3))
    sums = metrics.pose_metrics(jnp.asarray(pred), jnp.asarray(gt), jnp.asarray(verts + 0.002), jnp.asarray(verts),
                                mask=jnp.asarray([1.0, 1.0, 0.0]))  # sample 2 is padding
    summary = metrics.summarize(metrics.add(None, sums))
    mpjpe_1 = np.mean(np.linalg.norm(gt[1], axis=1)) * 1000
    assert summary["num_samples"] == 2
    assert summary["mpjpe"] == pytest.approx((1.0 + mpjpe_1) / 2, rel=1e-5)
    assert summary["pa_mpjpe"] < 1.0
    assert summary["pve"] == pytest.approx(np.sqrt(3) * 2.0, rel=1e-5)
    assert summary["per_joint_mpjpe"][0] == pytest.approx((14.0 + 0.0) / 2, rel=1e-5)


def test_part_miou_counts():
    gt = np.zeros((1, 2, 2), np.int32)
    gt[0, 0, :] = 5
    pred = gt.copy()
    pred[0, 1, 1] = 5  # one background pixel predicted as part 5
    inter, union = metrics.part_confusion_counts(jnp.asarray(pred), jnp.asarray(gt), jnp.ones(1))
    summary = metrics.summarize({"part_iou": (np.asarray(inter), np.asarray(union))})
    assert summary["part_miou"] == pytest.approx((2 / 3 + 1 / 2) / 2)


def _body(seed, scale=1.0):
    from smpl_fixtures import random_smpl_arrays
    from smpl_jax import SMPL
    arrays = random_smpl_arrays(seed=seed, num_vertices=150)
    rng = np.random.default_rng(seed)
    h36m = rng.dirichlet(np.ones(150), 17)
    return SMPL.from_arrays(dict(arrays, v_template=arrays["v_template"] * scale, h36m_regressor=h36m))


def test_evaluation_of_a_fake_model_that_predicts_the_ground_truth_is_exactly_zero():
    from pare_jax import evaluate
    body = _body(0)
    rng = np.random.default_rng(1)
    pose = jnp.asarray(rng.normal(size=(3, 72)) * 0.3, jnp.float32)
    betas = jnp.asarray(rng.normal(size=(3, 10)), jnp.float32)
    batch = {"pose": pose, "betas": betas, "has_smpl": jnp.ones(3), "mask": jnp.asarray([1.0, 1.0, 0.0]),
             "gender": jnp.full(3, -1)}
    rot = axis_angle_to_matrix(pose.reshape(3, 24, 3))
    summary = metrics.summarize(metrics.add(None, evaluate.batch_metrics(rot, betas, None, batch, body,
                                                                         (body, body, body))))
    assert summary["num_samples"] == 2
    assert summary["mpjpe"] == pytest.approx(0, abs=1e-4) and summary["pve"] == pytest.approx(0, abs=1e-4)
    # A fake model that is 10 cm off in one joint direction for every joint (translation is centred away, so
    # offset only the body pose): MPJPE grows, the metrics stay finite, padding still ignored.
    moved = rot.at[:, 1:].set(jnp.einsum("ij,bkjl->bkil", axis_angle_to_matrix(jnp.asarray([0.0, 0.0, 0.5])),
                                         rot[:, 1:]))
    worse = metrics.summarize(metrics.add(None, evaluate.batch_metrics(moved, betas, None, batch, body,
                                                                       (body, body, body))))
    assert worse["mpjpe"] > 1.0 and worse["num_samples"] == 2


def test_gender_specific_ground_truth_bodies_are_chosen_per_sample():
    from pare_jax import evaluate
    neutral, male, female = _body(0), _body(0, scale=1.1), _body(0, scale=0.9)
    pose = jnp.zeros((3, 72))
    rot = axis_angle_to_matrix(pose.reshape(3, 24, 3))
    batch = {"pose": pose, "betas": jnp.zeros((3, 10)), "has_smpl": jnp.ones(3), "mask": jnp.ones(3),
             "gender": jnp.asarray([0, 1, -1])}
    per_sample = []
    for i in range(3):
        one = {k: v[i:i + 1] for k, v in batch.items()}
        s = evaluate.batch_metrics(rot[i:i + 1], one["betas"], None, one, neutral, (neutral, male, female))
        per_sample.append(float(s["pve"][0]))
    assert per_sample[0] > 0 and per_sample[1] > 0 and per_sample[2] == pytest.approx(0, abs=1e-5)
