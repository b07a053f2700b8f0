"""smpl_jax forward against smplx (the reference everybody checks against), and under jit / vmap / grad."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import smpl_jax
from smpl_fixtures import random_smpl_arrays

torch = pytest.importorskip("torch")
smplx = pytest.importorskip("smplx")


@pytest.fixture(scope="module")
def arrays():
    return random_smpl_arrays(seed=1)


@pytest.fixture(scope="module")
def small():
    """A 400-vertex body for tests that do not need smplx (which hard-codes vertex ids up to 6787)."""
    return random_smpl_arrays(seed=9, num_vertices=400)


@pytest.fixture(scope="module")
def arrays_with_regressors(small):
    rng = np.random.default_rng(7)
    extra = np.zeros((9, 400))
    h36m = np.zeros((17, 400))
    for reg in (extra, h36m):
        for row in reg:
            idx = rng.choice(400, size=12, replace=False)
            row[idx] = rng.dirichlet(np.ones(12))
    return dict(small, extra_regressor=extra, h36m_regressor=h36m,
                keypoint_vertex_ids=rng.choice(400, size=11, replace=False))


def _reference(arrays, dtype):
    from smplx.utils import Struct
    return smplx.SMPL("unused", data_struct=Struct(**arrays), num_betas=10, dtype=dtype)


def _random_inputs(rng, batch, rotmats):
    betas = rng.normal(size=(batch, 10))
    aa = rng.normal(size=(batch, 24, 3)) * 0.6
    transl = rng.normal(size=(batch, 3))
    if not rotmats:
        return betas, aa[:, 1:].reshape(batch, 69), aa[:, 0], transl
    mats = Rotation.from_rotvec(aa.reshape(-1, 3)).as_matrix().reshape(batch, 24, 3, 3)
    return betas, mats[:, 1:], mats[:, :1], transl


@pytest.mark.parametrize("precision,batch", [("float64", 3), ("float32", 5), ("float32", 1)])
def test_matches_smplx(arrays, precision, batch):
    """Rotation-matrix inputs: smplx and smpl_jax see identical rotations, so float64 agrees to rounding.
    (smplx's own Rodrigues adds 1e-8 to every rotation vector, a ~1e-8 m offset we do not reproduce.)"""
    tol = {"float64": 1e-9, "float32": 1e-5}[precision]
    tdtype = getattr(torch, precision)
    rng = np.random.default_rng(batch)
    betas, pose, orient, transl = _random_inputs(rng, batch, rotmats=True)
    with jax.enable_x64(precision == "float64"):
        body = smpl_jax.SMPL.from_arrays(arrays, dtype=getattr(jnp, precision))
        out = body(betas=betas, body_pose=pose, global_orient=orient, transl=transl)
        ours_v, ours_j = np.asarray(out.vertices), np.asarray(out.joints)
    t = lambda x: torch.tensor(x, dtype=tdtype)  # noqa: E731
    ref = _reference(arrays, tdtype)(betas=t(betas), body_pose=t(pose), global_orient=t(orient), transl=t(transl),
                                     pose2rot=False)
    assert ours_v.dtype == np.dtype(precision)
    np.testing.assert_allclose(ours_v, ref.vertices.detach().numpy(), atol=tol, rtol=0)
    np.testing.assert_allclose(ours_j, ref.joints.detach().numpy()[:, :24], atol=tol, rtol=0)


def test_axis_angle_matches_smplx_float32(arrays):
    rng = np.random.default_rng(11)
    betas, pose, orient, transl = _random_inputs(rng, 4, rotmats=False)
    out = smpl_jax.SMPL.from_arrays(arrays)(betas=betas, body_pose=pose, global_orient=orient, transl=transl)
    t = lambda x: torch.tensor(x, dtype=torch.float32)  # noqa: E731
    ref = _reference(arrays, torch.float32)(betas=t(betas), body_pose=t(pose), global_orient=t(orient),
                                            transl=t(transl))
    np.testing.assert_allclose(np.asarray(out.vertices), ref.vertices.detach().numpy(), atol=1e-5, rtol=0)


def test_pose_input_forms_agree(small):
    body = smpl_jax.SMPL.from_arrays(small)
    rng = np.random.default_rng(2)
    aa = rng.normal(size=(2, 24, 3)) * 0.5
    mats = np.asarray(smpl_jax.rotations.axis_angle_to_matrix(jnp.asarray(aa)))
    forms = [
        dict(body_pose=aa[:, 1:].reshape(2, 69), global_orient=aa[:, 0]),
        dict(body_pose=aa[:, 1:], global_orient=aa[:, :1]),
        dict(body_pose=mats[:, 1:], global_orient=mats[:, 0]),
        dict(body_pose=mats[:, 1:].reshape(2, 207), global_orient=mats[:, :1]),
    ]
    outs = [np.asarray(body(**f).vertices) for f in forms]
    for other in outs[1:]:
        np.testing.assert_allclose(other, outs[0], atol=1e-5)
    with pytest.raises(ValueError, match=r"body_pose has shape \(2, 23, 2\): expected axis-angle"):
        body(body_pose=np.zeros((2, 23, 2)))


def test_fewer_betas_are_zero_padded_and_too_many_rejected(small):
    body = smpl_jax.SMPL.from_arrays(small)
    betas = np.random.default_rng(0).normal(size=(2, 4))
    padded = np.concatenate([betas, np.zeros((2, 6))], axis=1)
    np.testing.assert_allclose(np.asarray(body(betas=betas).vertices), np.asarray(body(betas=padded).vertices))
    with pytest.raises(ValueError, match="S <= 10"):
        body(betas=np.zeros((2, 11)))


def test_global_orient_rotates_about_the_pelvis(small):
    body = smpl_jax.SMPL.from_arrays(small)
    rest = body().joints[0, 0]
    turned = body(global_orient=np.array([[0.0, 1.3, 0.0]])).joints[0, 0]
    np.testing.assert_allclose(np.asarray(turned), np.asarray(rest), atol=1e-6)


@pytest.mark.parametrize("joint_set,count", [("smpl24", 24), ("spin49", 49), ("openpose25", 25), ("h36m17", 17),
                                             ("h36m14", 14)])
def test_joints_only_path_equals_full_path(arrays_with_regressors, joint_set, count):
    body = smpl_jax.SMPL.from_arrays(arrays_with_regressors)
    rng = np.random.default_rng(5)
    betas, pose, orient, transl = _random_inputs(rng, 3, rotmats=False)
    kwargs = dict(betas=betas, body_pose=pose, global_orient=orient, transl=transl, joints=joint_set)
    full = body(**kwargs)
    fast = jax.jit(lambda b: b(return_verts=False, **kwargs).joints)(body)
    assert fast.shape == (3, count, 3)
    np.testing.assert_allclose(np.asarray(fast), np.asarray(full.joints), atol=2e-6)


def test_spin49_is_assembled_from_the_right_sources(arrays_with_regressors):
    body = smpl_jax.SMPL.from_arrays(arrays_with_regressors)
    out = body(body_pose=np.random.default_rng(1).normal(size=(1, 69)) * 0.3)
    j49, verts = np.asarray(body(body_pose=out.full_pose[:, 1:], joints="spin49").joints), np.asarray(out.vertices)
    names = smpl_jax.joint_names("spin49")
    nose = arrays_with_regressors["keypoint_vertex_ids"][0]
    np.testing.assert_allclose(j49[0, names.index("OP Nose")], verts[0, nose], atol=1e-6)
    np.testing.assert_allclose(j49[0, names.index("Right Wrist")], np.asarray(out.joints)[0, 21], atol=1e-6)
    extra = arrays_with_regressors["extra_regressor"]
    np.testing.assert_allclose(j49[0, names.index("Top of Head (LSP)")], extra[3] @ verts[0], atol=1e-5)


def test_missing_regressor_error_says_which_file(small):
    body = smpl_jax.SMPL.from_arrays(small)
    with pytest.raises(ValueError, match="J_regressor_extra.npy"):
        body(joints="spin49")
    with pytest.raises(ValueError, match="unknown joint set 'coco'"):
        body(joints="coco")


@pytest.mark.parametrize("dense", [False, True])
def test_skinning_paths_match_explicit_lbs(small, dense):
    """The sparse gather path (<= 8 influences per vertex) and the dense fallback both equal textbook LBS."""
    weights = small["weights"] * 0.9 + 0.1 / 24 if dense else small["weights"]
    body = smpl_jax.SMPL.from_arrays(dict(small, weights=weights))
    assert (body.skin_joints is None) == dense
    out = body(body_pose=np.random.default_rng(3).normal(size=(2, 69)) * 0.5)
    skin = np.einsum("vj,bjik->bvik", weights, _skinning_matrices(out, body))
    v_posed = _unposed_vertices(body, np.asarray(out.full_pose))
    expected = np.einsum("bvik,bvk->bvi", skin[..., :3], v_posed) + skin[..., 3]
    np.testing.assert_allclose(np.asarray(out.vertices), expected, atol=2e-5)


def _skinning_matrices(out, body):
    world = np.asarray(out.transforms, np.float64)
    rest = np.asarray(body.joint_template, np.float64)
    offset = world[..., :3, 3] - np.einsum("bjik,jk->bji", world[..., :3, :3], rest)
    return np.concatenate([world[..., :3, :3], offset[..., None]], axis=-1)


def _unposed_vertices(body, rotmats):
    feature = (rotmats[:, 1:] - np.eye(3)).reshape(rotmats.shape[0], -1)
    blend = np.asarray(body.v_template, np.float64).reshape(1, -1) + feature @ np.asarray(body.posedirs, np.float64)
    return blend.reshape(rotmats.shape[0], -1, 3)


def test_batch_sizes_jit_vmap(small):
    body = smpl_jax.SMPL.from_arrays(small)
    forward = jax.jit(lambda b, p: b(body_pose=p).vertices)
    rng = np.random.default_rng(4)
    for batch in (1, 4):
        pose = rng.normal(size=(batch, 69)).astype(np.float32) * 0.4
        batched = forward(body, pose)
        single = jax.vmap(lambda p: forward(body, p[None])[0])(pose)
        np.testing.assert_allclose(np.asarray(batched), np.asarray(single), atol=1e-6)


def test_gradients_match_finite_differences():
    arrays = random_smpl_arrays(seed=6, num_vertices=120)
    with jax.enable_x64(True):
        body = smpl_jax.SMPL.from_arrays(arrays, dtype=jnp.float64)
        rng = np.random.default_rng(8)
        target = rng.normal(size=(2, 120, 3))

        def loss(pose, betas, transl):
            v = body(betas=betas, body_pose=pose, global_orient=pose[:, :3] * 0.5, transl=transl).vertices
            return jnp.sum((v - target) ** 2)

        loss = jax.jit(loss)
        args = [jnp.asarray(rng.normal(size=s) * 0.4) for s in ((2, 69), (2, 10), (2, 3))]
        args[0] = args[0].at[0, :3].set(0.0)  # a joint exactly at angle zero: the gradient must stay finite
        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(*args)
        for i, grad in enumerate(grads):
            direction = jnp.asarray(rng.normal(size=args[i].shape))
            eps = 1e-6
            plus = [a + eps * direction if j == i else a for j, a in enumerate(args)]
            minus = [a - eps * direction if j == i else a for j, a in enumerate(args)]
            numeric = (loss(*plus) - loss(*minus)) / (2 * eps)
            np.testing.assert_allclose(float(jnp.sum(grad * direction)), float(numeric), rtol=1e-6)
            assert np.isfinite(np.asarray(grad)).all()


def test_transforms_and_vertex_parts(small):
    body = smpl_jax.SMPL.from_arrays(small)
    out = body(body_pose=np.full((1, 69), 0.2), transl=np.array([[1.0, 2.0, 3.0]]))
    np.testing.assert_allclose(np.asarray(out.transforms[..., :3, 3]), np.asarray(out.joints), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(body.vertex_parts()), np.argmax(small["weights"], axis=1))
