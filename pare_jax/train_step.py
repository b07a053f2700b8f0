"""The pure training step: train_step(state, batch, body) -> (state, metrics), jitted at the call site.

The NNX model is split once into a static graphdef and two states: `params` (nnx.Param, what Adam updates) and
`rest` (BatchNorm statistics, dropout RNG state, constant buffers). A step whose loss or gradients are not
finite leaves params, rest and optimizer state untouched (the step counter still advances, so the data and the
schedules move on) and reports finite=False; the driver stops after too many such steps in a row. A non-finite
update therefore never reaches a checkpoint.

loss.weighting='uncertainty' adds `loss_params`, the log-variances {term: s} of pare_jax.losses (outside the
model's nnx state, so model state and converted checkpoints are unchanged). They are trained by the same optax
transform as the params, over the pair (params, loss_params), as STRAPS puts its loss's parameters into the
network's Adam: one learning-rate schedule, one global-norm clip over both (optim.grad_clip_norm), and the
non-finite guard covers their gradients and keeps them too. With 'fixed', loss_params is {} and the optimizer
state is that of params alone, exactly as before.

loss.weights.silhouette > 0 (a static choice) adds LASOR's silhouette term: the posed mesh (all vertices, or the
vertex-clustered subset of silhouette_mesh) is skinned besides the joints and rendered softly.
"""
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from pare_jax import losses, schedules
from pare_jax.models.pare import smpl_outputs

# Vertex-clustering cell (metres) of the silhouette mesh. Measured (benchmarks/silhouette_loss.py, 2-core CPU
# shared with a test run, hrnet_w8 at 64 px, batch 32, silhouette 64 px): the step without the term 0.63 s; with
# it on the full open body (13,492 vertices, 26,972 faces) 23.1 s; cell 0.03 m (2,276 / 4,647) 4.6 s;
# cell 0.05 m (1,010 / 2,031) 3.8 s. The soft rasterizer dominates; the coarsest mesh is the default.
SILHOUETTE_CELL_SIZE = 0.05


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    step: jax.Array  # int32 scalar
    params: Any  # nnx.State of nnx.Param
    rest: Any  # nnx.State of everything else (batch statistics, RNG state, buffers)
    opt_state: Any  # of params, or of (params, loss_params) when loss_params is not empty
    loss_params: Any = dataclasses.field(default_factory=dict)  # {term: log-variance}, {} unless 'uncertainty'


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class LegacyTrainState:
    """The TrainState of checkpoints written before loss_params existed (restored into TrainState)."""
    step: jax.Array
    params: Any
    rest: Any
    opt_state: Any


def optimized(params, loss_params):
    """What the optax transform sees: params alone (fixed weighting), or (params, loss_params)."""
    return (params, loss_params) if loss_params else params


def split_model(model):
    """model -> (graphdef, params, rest)."""
    return nnx.split(model, nnx.Param, ...)


def init_train_state(model, tx, loss_params=None):
    """loss_params: pare_jax.losses.initial_log_variances(config.loss) ({} or None for fixed weighting)."""
    graphdef, params, rest = split_model(model)
    loss_params = dict(loss_params or {})
    return graphdef, TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(optimized(params, loss_params)),
                                loss_params)


def silhouette_mesh(body, cell_size=SILHOUETTE_CELL_SIZE):
    """A coarse mesh for the silhouette term, computed once on the host: vertex clustering of the body's template
    in cells of cell_size metres, separately per body part (the largest skinning weight), so that e.g. the
    thighs never share a vertex. Each cluster keeps the real vertex nearest its mean (skinned exactly); faces
    are the body's with their vertices replaced by their clusters', minus the collapsed and duplicate ones.
    Returns (vertex_ids [N] int32, faces [F', 3] int32 into those N). cell_size 0: the full mesh."""
    faces = np.asarray(body.faces)
    if cell_size <= 0:
        return np.arange(body.num_vertices, dtype=np.int32), faces.astype(np.int32)
    template = np.asarray(body.v_template, np.float64)
    parts = np.asarray(body.vertex_parts())
    cells = np.floor(template / cell_size).astype(np.int64)
    keys = np.concatenate([parts[:, None], cells], axis=1)
    _, cluster = np.unique(keys, axis=0, return_inverse=True)
    cluster = cluster.reshape(-1)
    count = np.bincount(cluster)
    means = np.stack([np.bincount(cluster, template[:, c]) for c in range(3)], axis=1) / count[:, None]
    distance = np.sum((template - means[cluster]) ** 2, axis=1)
    order = np.lexsort((distance, cluster))  # by cluster, nearest first
    first = np.ones(len(order), bool)
    first[1:] = cluster[order][1:] != cluster[order][:-1]
    representative = order[first]  # [clusters] vertex ids, in cluster order
    new_faces = cluster[faces]
    keep = (new_faces[:, 0] != new_faces[:, 1]) & (new_faces[:, 1] != new_faces[:, 2]) & (
        new_faces[:, 0] != new_faces[:, 2])
    new_faces = new_faces[keep]
    _, unique = np.unique(np.sort(new_faces, axis=1), axis=0, return_index=True)
    return representative.astype(np.int32), new_faces[np.sort(unique)].astype(np.int32)


def skin_subset(body, vertex_ids, pose, shape):
    """Posed vertices [B, N, 3] of body (a smpl_jax.SMPL) at vertex_ids only (None: all), in the body frame."""
    if vertex_ids is not None:
        ids = jnp.asarray(vertex_ids)
        rows = body.blendshapes.shape[0]
        fields = dict(blendshapes=body.blendshapes.reshape(rows, -1, 3)[:, ids].reshape(rows, -1),
                      weights=body.weights[ids], vertex_joint_regressor=None, vertex_joint_support=None,
                      vertex_joint_regressor_support=None, vertex_joint_groups=())
        if body.skin_joints is not None:
            fields |= dict(skin_joints=body.skin_joints[:, ids], skin_weights=body.skin_weights[:, ids])
        body = dataclasses.replace(body, **fields)
    pose, shape = pose.astype(body.dtype), shape.astype(body.dtype)
    return body(betas=shape, body_pose=pose[:, 1:], global_orient=pose[:, :1], joints="smpl24").vertices


def _cast_floats(tree, dtype):
    return jax.tree.map(lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


DSED_LABELS = ("part_map", "keypoints", "visibility")


def batch_context(model, batch):
    """The batch's CoNorm context maps [B, H, W, 2] (the CoNorm blocks cast them to the features' dtype) when
    the model uses CoNorm (config.conorm), else None. A batch without them is a dataset built before context maps existed."""
    if not model.uses_context:
        return None
    if "context" not in batch:
        raise ValueError(f"this model uses CoNorm (model.conorm={model.config.conorm!r}) and needs the batch's "
                         "'context' maps (local/global centre maps, pare_jax/data/context.py), but the batch has "
                         f"only {sorted(batch)}: rebuild the dataset with a version that has context maps, or "
                         "set model.conorm='none'")
    return batch["context"]


def make_train_step(graphdef, tx, loss_config, part_supervision, compute_dtype="float32", dsed="none",
                    num_steps=0, silhouette=None):
    """Returns train_step(state, batch, body) -> (state, metrics). batch: dict with img [B, H, W, 3]
    (ImageNet-normalised) and the label keys of pare_jax.losses; body: a smpl_jax.SMPL with the 49-joint set.
    compute_dtype 'bfloat16' runs the network in bfloat16 with float32 master weights and statistics.
    dsed: the model's config.dsed; when on, the batch's complete labels feed the DSED teacher, and
    loss_config.dsed's weights (ramped over num_steps, the run's length) join the losses.
    silhouette: (vertex_ids, faces) of silhouette_mesh(body), the mesh the silhouette term renders (used only
    with loss.weights.silhouette > 0; None = the body's full mesh). loss.weighting 'uncertainty' trains
    state.loss_params (init_train_state with losses.initial_log_variances)."""
    compute = jnp.dtype(compute_dtype)
    losses.check_weighting(loss_config)
    silhouette_on = float(loss_config.weights.get("silhouette", 0.0)) > 0  # static: the off path is unchanged
    silhouette_size = int(loss_config.get("silhouette_size", 64))
    # The soft rasterizer dominates the CPU step (benchmarks/silhouette_loss.py); the term can be rendered for
    # the first loss.silhouette_samples samples of each batch only (0: all of them).
    silhouette_samples = int(loss_config.get("silhouette_samples", 0))
    if silhouette_samples < 0:
        raise ValueError(f"loss.silhouette_samples={silhouette_samples} must be >= 0 (0: every sample)")
    if silhouette_on and silhouette_size <= 0:
        raise ValueError(f"loss.silhouette_size={silhouette_size} must be a positive number of pixels")
    vertex_ids, faces = (None, None) if silhouette is None else silhouette

    def loss_fn(trainable, rest, batch, body, weights, pretrain):
        params, log_variances = trainable
        model = nnx.merge(graphdef, _cast_floats(params, compute), _cast_floats(rest, compute))
        context = batch_context(model, batch)
        if dsed == "none":
            out = model(batch["img"].astype(compute), None, context=context)
        else:
            out = model(batch["img"].astype(compute), None, {k: batch[k] for k in DSED_LABELS}, pretrain,
                        context=context)
        out = jax.tree.map(lambda v: v.astype(jnp.float32), out)
        # The SMPL part runs in float32 whatever precision the network uses; the losses need joints only.
        out |= smpl_outputs(body, out["pred_pose"], out["pred_shape"], out["pred_cam"], return_verts=False)
        silhouette_faces = None
        if silhouette_on:
            n = silhouette_samples or out["pred_pose"].shape[0]  # the batch is shuffled: the first n are random
            out["silhouette_vertices"] = skin_subset(body, vertex_ids, out["pred_pose"][:n], out["pred_shape"][:n])
            silhouette_faces = body.faces if faces is None else jnp.asarray(faces)
        total, terms = losses.pare_losses(out, batch, weights, part_supervision, silhouette_faces,
                                          silhouette_size, log_variances)
        new_rest = _cast_floats(nnx.state(model, nnx.Not(nnx.Param)), jnp.float32)
        return total, (terms, new_rest)

    def train_step(state, batch, body):
        if silhouette_on:
            _check_silhouette_inputs(batch, body)
        weights, pretrain = schedules.loss_weights(loss_config, state.step), False
        if dsed != "none":
            extra, pretrain = schedules.dsed_weights(loss_config.dsed, state.step, num_steps)
            weights = schedules.pretraining_weights(weights | extra, pretrain)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (total, (terms, new_rest)), (grads, loss_grads) = grad_fn(
            (state.params, state.loss_params), state.rest, batch, body, weights, pretrain)
        grad_norm = optax.global_norm((grads, loss_grads))  # the clip (inside tx) sees the same tree
        finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)
        updates, new_opt_state = tx.update(optimized(grads, loss_grads), state.opt_state,
                                           optimized(state.params, state.loss_params))
        new_params, new_loss_params = _unpair(optax.apply_updates(optimized(state.params, state.loss_params),
                                                                  updates), state.loss_params)
        # A term the schedule switched off keeps its log-variance (Adam's momentum would move it otherwise).
        new_loss_params = {k: jnp.where(weights[k] > 0, v, state.loss_params[k]) for k, v in new_loss_params.items()}
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = TrainState(state.step + 1, keep(new_params, state.params), keep(new_rest, state.rest),
                               keep(new_opt_state, state.opt_state), keep(new_loss_params, state.loss_params))
        reported = losses.effective_weights(weights, state.loss_params)
        metrics = {"loss": total, "grad_norm": grad_norm, "finite": finite,
                   **{f"loss_{k}": v for k, v in terms.items()}, **{f"weight_{k}": v for k, v in reported.items()},
                   **{f"log_variance_{k}": v for k, v in state.loss_params.items()}}
        return new_state, metrics

    return train_step


def _unpair(tree, loss_params):
    return tree if loss_params else (tree, {})


def _check_silhouette_inputs(batch, body):
    missing = [k for k in ("silhouette", "has_silhouette") if k not in batch]
    if missing:
        raise ValueError(f"loss.weights.silhouette > 0 needs the batch keys {missing} (silhouette [B, H, W, 2] "
                         "full and visible target silhouettes, has_silhouette [B]); set the weight to 0 for data "
                         "without them")
    if body.faces.shape[0] == 0:
        raise ValueError("loss.weights.silhouette > 0 needs a body with faces (a mesh to render)")
