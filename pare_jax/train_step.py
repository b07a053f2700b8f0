"""The pure training step: train_step(state, batch, body) -> (state, metrics), jitted at the call site.

The NNX model is split once into a static graphdef and two states: `params` (nnx.Param, what Adam updates) and
`rest` (BatchNorm statistics, dropout RNG state, constant buffers). A step whose loss or gradients are not
finite leaves params, rest and optimizer state untouched (the step counter still advances, so the data and the
schedules move on) and reports finite=False; the driver stops after too many such steps in a row. A non-finite
update therefore never reaches a checkpoint.
"""
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from pare_jax import losses, schedules
from pare_jax.models.pare import smpl_outputs


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class TrainState:
    step: jax.Array  # int32 scalar
    params: Any  # nnx.State of nnx.Param
    rest: Any  # nnx.State of everything else (batch statistics, RNG state, buffers)
    opt_state: Any


def split_model(model):
    """model -> (graphdef, params, rest)."""
    return nnx.split(model, nnx.Param, ...)


def init_train_state(model, tx):
    graphdef, params, rest = split_model(model)
    return graphdef, TrainState(jnp.zeros((), jnp.int32), params, rest, tx.init(params))


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
                    num_steps=0):
    """Returns train_step(state, batch, body) -> (state, metrics). batch: dict with img [B, H, W, 3]
    (ImageNet-normalised) and the label keys of pare_jax.losses; body: a smpl_jax.SMPL with the 49-joint set.
    compute_dtype 'bfloat16' runs the network in bfloat16 with float32 master weights and statistics.
    dsed: the model's config.dsed; when on, the batch's complete labels feed the DSED teacher, and
    loss_config.dsed's weights (ramped over num_steps, the run's length) join the losses."""
    compute = jnp.dtype(compute_dtype)

    def loss_fn(params, rest, batch, body, weights, pretrain):
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
        total, terms = losses.pare_losses(out, batch, weights, part_supervision)
        new_rest = _cast_floats(nnx.state(model, nnx.Not(nnx.Param)), jnp.float32)
        return total, (terms, new_rest)

    def train_step(state, batch, body):
        weights, pretrain = schedules.loss_weights(loss_config, state.step), False
        if dsed != "none":
            extra, pretrain = schedules.dsed_weights(loss_config.dsed, state.step, num_steps)
            weights = schedules.pretraining_weights(weights | extra, pretrain)
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (total, (terms, new_rest)), grads = grad_fn(state.params, state.rest, batch, body, weights, pretrain)
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(total) & jnp.isfinite(grad_norm)
        updates, new_opt_state = tx.update(grads, state.opt_state, state.params)
        new_params = optax.apply_updates(state.params, updates)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = TrainState(state.step + 1, keep(new_params, state.params), keep(new_rest, state.rest),
                               keep(new_opt_state, state.opt_state))
        metrics = {"loss": total, "grad_norm": grad_norm, "finite": finite,
                   **{f"loss_{k}": v for k, v in terms.items()}, **{f"weight_{k}": v for k, v in weights.items()}}
        return new_state, metrics

    return train_step
