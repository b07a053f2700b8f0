"""LASOR's pieces: the silhouette term (camera, exactness, gradients, masking) and uncertainty weighting."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from pare_jax import losses

SIZE = 16


def tiny_mesh():
    """Four triangles (a bent quad strip), about 1.2 m across, in the body frame."""
    vertices = 2.0 * np.array([[-0.3, -0.3, 0.0], [0.3, -0.3, 0.05], [-0.3, 0.3, 0.05], [0.3, 0.3, 0.0],
                               [0.0, 0.45, 0.1], [0.0, -0.45, -0.05]])
    faces = np.array([[0, 1, 2], [1, 3, 2], [2, 3, 4], [0, 5, 1]], np.int32)
    return vertices, faces


def batch_of(vertices, cam):
    """Two samples: the mesh, and the mesh shifted and scaled; cam [3] weak perspective -> translations."""
    from smpl_jax import cameras
    verts = np.stack([vertices, vertices * 0.8 + np.array([0.05, -0.02, 0.0])])
    cams = np.stack([cam, cam * np.array([1.1, -1.0, 1.0])])
    return verts, cameras.weak_perspective_to_translation(jnp.asarray(cams))


def test_silhouette_loss_is_zero_against_its_own_render_and_masks_samples():
    vertices, faces = tiny_mesh()
    verts, cam_t = batch_of(vertices, np.array([0.9, 0.05, -0.1]))
    verts = jnp.asarray(verts, jnp.float32)
    own = losses.render_silhouettes(verts, faces, cam_t, SIZE)
    assert float(own.max()) > 0.9 and float(own.min()) < 0.1  # the mesh is in view and not the whole crop
    target = jnp.stack([own, own], axis=-1)  # full = visible: no occluder
    assert float(losses.silhouette_loss(verts, faces, cam_t, target, jnp.ones(2), SIZE)) == 0.0
    # the target at twice the size is resized (area average) to SIZE; an upsampled own render is close to 0
    big = jax.image.resize(target, (2, 2 * SIZE, 2 * SIZE, 2), "nearest")
    assert float(losses.silhouette_loss(verts, faces, cam_t, big, jnp.ones(2), SIZE)) < 1e-12
    # the visible channel is the one supervised: a full silhouette that differs changes nothing
    other = target.at[..., 0].set(1.0)
    assert float(losses.silhouette_loss(verts, faces, cam_t, other, jnp.ones(2), SIZE)) == 0.0
    # sample 1 masked: a wrong target there contributes nothing, and the mean is over sample 0's pixels
    wrong = target.at[1].set(1.0 - target[1])
    assert float(losses.silhouette_loss(verts, faces, cam_t, wrong, jnp.array([1.0, 0.0]), SIZE)) == 0.0
    alone = losses.silhouette_loss(verts, faces, cam_t, wrong, jnp.array([0.0, 1.0]), SIZE)
    expected = jnp.mean((own[1] - (1.0 - own[1])) ** 2)
    np.testing.assert_allclose(float(alone), float(expected), rtol=1e-6)
    assert float(losses.silhouette_loss(verts, faces, cam_t, wrong, jnp.zeros(2), SIZE)) == 0.0


def test_silhouette_gradients_match_central_differences_in_float64():
    from smpl_jax import cameras
    with jax.enable_x64(True):
        vertices, faces = tiny_mesh()
        verts = jnp.asarray(batch_of(vertices, np.array([0.9, 0.05, -0.1]))[0], jnp.float64)
        target_t = cameras.weak_perspective_to_translation(jnp.asarray([[1.0, 0.0, 0.0], [0.8, 0.1, 0.1]]))
        target = losses.render_silhouettes(verts * 1.1, faces, target_t, SIZE)
        target = jnp.stack([target, target], axis=-1)
        has = jnp.ones(2, jnp.float64)

        def loss(v, cam):
            return losses.silhouette_loss(v, faces, cameras.weak_perspective_to_translation(cam), target, has, SIZE)

        cam = jnp.asarray([[0.9, 0.05, -0.1], [1.0, -0.05, 0.05]], jnp.float64)
        grad_v, grad_cam = jax.grad(loss, argnums=(0, 1))(verts, cam)
        assert np.all(np.isfinite(grad_v)) and np.all(np.isfinite(grad_cam)) and float(jnp.abs(grad_cam).max()) > 0
        rng = np.random.default_rng(0)
        eps = 1e-6
        for _ in range(3):
            dv, dc = rng.normal(size=verts.shape) * 0.01, rng.normal(size=cam.shape) * 0.01
            numeric = (loss(verts + eps * dv, cam + eps * dc) - loss(verts - eps * dv, cam - eps * dc)) / (2 * eps)
            analytic = jnp.sum(grad_v * dv) + jnp.sum(grad_cam * dc)
            np.testing.assert_allclose(float(analytic), float(numeric), rtol=1e-5, atol=1e-10)


@pytest.fixture(scope="module")
def open_body():
    import smpl_jax
    return smpl_jax.load("open")


def test_gt_body_through_its_camera_lands_on_its_keypoints(open_body):
    """The silhouette term's camera is the keypoints' camera: the rendered GT mesh covers the projected torso
    joints and its extent is that of the projected vertices (in the [-1, 1] units of the keypoints)."""
    from pare_jax.models.pare import smpl_outputs
    from smpl_jax import cameras
    from smpl_jax.rotations import axis_angle_to_matrix
    size = 64
    pose = np.zeros((1, 24, 3), np.float32)
    pose[0, 0] = [np.pi, 0.0, 0.0]  # upright in the image (y down), as the datasets' bodies
    pose[0, 16], pose[0, 17] = [0, 0, -0.9], [0, 0, 0.9]  # arms lowered
    cam = jnp.asarray([[0.9, 0.08, 0.12]])
    out = smpl_outputs(open_body, axis_angle_to_matrix(jnp.asarray(pose)), jnp.zeros((1, 10)), cam)
    mask = np.asarray(losses.render_silhouettes(out["smpl_vertices"], open_body.faces, out["pred_cam_t"], size)[0])
    keypoints = np.asarray(out["smpl_joints2d"][0])  # [-1, 1] of the crop
    # SPIN's 24 GT joints follow the 25 OpenPose ones: pelvis 39, thorax 37 (12 in the GT list), hips 27, 28
    torso = keypoints[[25 + 14, 25 + 12, 25 + 2, 25 + 3]]
    pixels = np.floor((torso + 1) * size / 2).astype(int)
    assert all(mask[y, x] > 0.9 for x, y in pixels), (pixels, mask[pixels[:, 1], pixels[:, 0]])
    projected = np.asarray(cameras.project_normalized(out["smpl_vertices"], cam)[0])
    rows, cols = np.nonzero(mask > 0.5)
    extent = lambda lo, hi: (lo / (size / 2) - 1, (hi + 1) / (size / 2) - 1)  # noqa: E731 (pixel edges)
    x0, x1 = extent(cols.min(), cols.max())
    y0, y1 = extent(rows.min(), rows.max())
    px = 1.0 / (size / 2)  # one pixel in normalised units
    np.testing.assert_allclose([x0, x1, y0, y1], [projected[:, 0].min(), projected[:, 0].max(),
                                                  projected[:, 1].min(), projected[:, 1].max()], atol=1.5 * px)


def test_silhouette_mesh_keeps_real_vertices_and_the_outline(open_body):
    from pare_jax.train_step import silhouette_mesh
    ids, faces = silhouette_mesh(open_body, 0.03)
    assert len(ids) < open_body.num_vertices / 4 and faces.max() < len(ids) and faces.min() >= 0
    assert len(np.unique(np.sort(faces, axis=1), axis=0)) == len(faces)
    full_ids, full_faces = silhouette_mesh(open_body, 0.0)
    assert len(full_ids) == open_body.num_vertices and np.array_equal(full_faces, np.asarray(open_body.faces))


def _loss_config(weighting="uncertainty", **weights):
    base = dict(keypoints_2d=2.0, keypoints_3d=0.0, pose=0.5, betas=1.0, camera=1.0, part=4.0, silhouette=6.0)
    return ml_collections.ConfigDict(dict(weights=base | weights, part_until_step=1, silhouette_size=SIZE,
                                          weighting=weighting))


def test_uncertainty_weighting_values_initial_multipliers_and_gradients():
    from pare_jax import schedules
    config = _loss_config()
    s0 = losses.initial_log_variances(config)
    assert "keypoints_3d" not in s0  # weight 0: no log-variance at all
    assert losses.initial_log_variances(_loss_config("fixed")) == {}
    weights = schedules.loss_weights(config, 0)
    effective = losses.effective_weights(weights, s0)
    for name in s0:
        np.testing.assert_allclose(float(effective[name]), config.weights[name], rtol=1e-6)
    terms = {"keypoints_2d": jnp.float32(3.0), "keypoints_3d": jnp.float32(7.0), "pose": jnp.float32(0.25),
             "part": jnp.float32(1.5)}
    s = {"keypoints_2d": jnp.float32(0.5), "pose": jnp.float32(-1.0), "part": jnp.float32(2.0)}
    w = {"keypoints_2d": jnp.float32(2.0), "keypoints_3d": jnp.float32(0.0), "pose": jnp.float32(0.5),
         "part": jnp.float32(4.0)}
    expected = 3.0 * np.exp(-0.5) + 0.5 + 0.25 * np.exp(1.0) - 1.0 + 1.5 * np.exp(-2.0) + 2.0
    np.testing.assert_allclose(float(losses.weighted_total(terms, w, s)), expected, rtol=1e-6)
    # at the initial s, the total minus sum(s) is the fixed-weight total
    init = {k: v for k, v in s0.items() if k in terms}
    fixed = float(losses.weighted_total(terms, w))
    np.testing.assert_allclose(float(losses.weighted_total(terms, w, init)) - sum(float(v) for v in init.values()),
                               fixed, rtol=1e-6)
    grads = jax.grad(lambda s: losses.weighted_total(terms, w, s))(s)
    for name, value in s.items():
        np.testing.assert_allclose(float(grads[name]), 1.0 - float(terms[name]) * np.exp(-float(value)), rtol=1e-6)
    # the schedule switches part off (part_until_step=1): neither L nor s counts, and its s gets no gradient
    off = schedules.loss_weights(config, 1)
    assert float(off["part"]) == 0.0
    w_off = w | {"part": off["part"]}
    without = 3.0 * np.exp(-0.5) + 0.5 + 0.25 * np.exp(1.0) - 1.0
    np.testing.assert_allclose(float(losses.weighted_total(terms, w_off, s)), without, rtol=1e-6)
    assert float(jax.grad(lambda s: losses.weighted_total(terms, w_off, s))(s)["part"]) == 0.0
    assert float(losses.effective_weights(w_off, s)["part"]) == 0.0


def test_bad_configs_are_rejected():
    from pare_jax import train_step
    with pytest.raises(ValueError, match=r"'fixed', 'uncertainty'"):
        losses.initial_log_variances(_loss_config("homoscedastic"))
    with pytest.raises(ValueError, match=r"'fixed', 'uncertainty'"):
        train_step.make_train_step(None, None, _loss_config("homoscedastic"), "parts")
    bad_size = _loss_config()
    bad_size.silhouette_size = 0
    with pytest.raises(ValueError, match="silhouette_size"):
        train_step.make_train_step(None, None, bad_size, "parts")


@pytest.fixture(scope="module")
def tiny_training():
    from flax import nnx

    from pare_jax import schedules, train_step
    from pare_jax.models.pare import build_model
    from smpl_fixtures import random_smpl_arrays
    from smpl_jax import SMPL
    arrays = random_smpl_arrays(seed=0, num_vertices=60, num_faces=80)
    rng = np.random.default_rng(0)
    body = SMPL.from_arrays(dict(arrays, keypoint_vertex_ids=rng.choice(60, 11, replace=False),
                                 extra_regressor=rng.dirichlet(np.ones(60), 9)))
    optim = ml_collections.ConfigDict(dict(lr=1e-2, schedule="constant", warmup_steps=0, b1=0.9, b2=0.999,
                                           grad_clip_norm=10.0))
    config = _loss_config()
    tx = schedules.optimizer(optim, 10)
    model = build_model(dict(backbone="resnet_tiny", head="pare", part_supervision="parts"), rngs=nnx.Rngs(0))
    graphdef, state = train_step.init_train_state(model, tx, losses.initial_log_variances(config))
    b, size = 2, 32
    sil = np.zeros((b, size, size, 2), np.float32)
    sil[:, 4:28, 10:22, 0] = 1.0
    sil[:, 4:20, 10:22, 1] = 1.0  # the lower part hidden by someone in front
    batch = {"img": rng.normal(size=(b, size, size, 3)).astype(np.float32),
             "keypoints": np.concatenate([rng.uniform(-1, 1, (b, 49, 2)), np.ones((b, 49, 1))], -1),
             "joints3d": np.concatenate([rng.normal(size=(b, 24, 3)) * 0.3, np.ones((b, 24, 1))], -1),
             "has_joints3d": np.ones(b), "pose": rng.normal(size=(b, 72)) * 0.2, "betas": np.zeros((b, 10)),
             "has_smpl": np.ones(b), "part_map": rng.integers(0, 25, (b, size, size)).astype(np.int32),
             "has_part_map": np.ones(b), "silhouette": sil, "has_silhouette": np.array([1.0, 0.0])}
    batch = {k: jnp.asarray(v) if v.dtype == np.int32 else jnp.asarray(v, jnp.float32) for k, v in batch.items()}
    step = jax.jit(train_step.make_train_step(graphdef, tx, config, "parts"))
    return dict(step=step, state=state, batch=batch, body=body, config=config, graphdef=graphdef, tx=tx)


def test_train_step_with_silhouette_and_uncertainty_learns_the_log_variances(tiny_training):
    t = tiny_training
    state0 = t["state"]
    state1, m1 = t["step"](state0, t["batch"], t["body"])
    state2, m2 = t["step"](state1, t["batch"], t["body"])
    for m in (m1, m2):
        assert bool(m["finite"]) and all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(m))
    assert float(m1["loss_silhouette"]) > 0
    assert set(state0.loss_params) == {"keypoints_2d", "pose", "betas", "camera", "part", "silhouette"}
    for name, s in state0.loss_params.items():
        assert float(state1.loss_params[name]) != float(s), name  # every active s moved at step 0
        np.testing.assert_allclose(float(m1[f"weight_{name}"]), t["config"].weights[name], rtol=1e-5)
        assert float(m1[f"log_variance_{name}"]) == float(s)
    # step 1: the schedule has switched part off: its s stays, and its weight reads 0
    assert float(state2.loss_params["part"]) == float(state1.loss_params["part"])
    assert float(m2["weight_part"]) == 0.0
    assert float(state2.loss_params["silhouette"]) != float(state1.loss_params["silhouette"])
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves((state2.params, state2.loss_params)))


def test_a_non_finite_step_keeps_the_log_variances(tiny_training):
    t = tiny_training
    batch = t["batch"] | {"img": jnp.full_like(t["batch"]["img"], jnp.nan)}
    state1, metrics = t["step"](t["state"], batch, t["body"])
    assert not bool(metrics["finite"])
    for a, b in zip(jax.tree.leaves((t["state"].loss_params, t["state"].opt_state)),
                    jax.tree.leaves((state1.loss_params, state1.opt_state))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_missing_silhouette_labels_are_named(tiny_training):
    t = tiny_training
    batch = {k: v for k, v in t["batch"].items() if k != "has_silhouette"}
    with pytest.raises(ValueError, match="has_silhouette"):
        t["step"](t["state"], batch, t["body"])


def test_checkpoints_of_both_weightings_restore_and_old_ones_too(tiny_training, tmp_path):
    from pare_jax import checkpoint
    from pare_jax.train_step import LegacyTrainState, TrainState
    t = tiny_training
    state = t["state"]
    saver = checkpoint.Checkpoints(str(tmp_path / "u"), 2, 1)
    saver.save(1, state, {"step": 1}, force=True)
    restored, _ = saver.restore(checkpoint.abstract_like(state))
    saver.close()
    assert restored.loss_params.keys() == state.loss_params.keys()
    # a checkpoint from before loss_params existed restores into a fixed-weighting TrainState
    fixed = TrainState(state.step, state.params, state.rest, t["tx"].init(state.params), {})
    legacy = LegacyTrainState(fixed.step, fixed.params, fixed.rest, fixed.opt_state)
    saver = checkpoint.Checkpoints(str(tmp_path / "old"), 2, 1)
    saver.save(1, legacy, {"step": 1}, force=True)
    restored, record = saver.restore(checkpoint.abstract_like(fixed))
    saver.close()
    assert isinstance(restored, TrainState) and restored.loss_params == {} and record == {"step": 1}
    np.testing.assert_array_equal(np.asarray(jax.tree.leaves(restored.params)[0]),
                                  np.asarray(jax.tree.leaves(state.params)[0]))
