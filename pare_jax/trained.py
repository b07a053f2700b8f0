"""Where a model comes from: the training state of a run, and a trained model for inference.

Training, evaluation, the demo and the analyses all start here, and this module imports none of them.

    state:   initial_state(config, tx, mesh, ckpt)  -> (graphdef, TrainState, record), in the order of
             pare_jax.checkpoint (the run's own checkpoint > config.init_from > a fresh initialisation)
    models:  trained = load("runs/synthetic")       -> a training workdir (its config.json comes with it)
             trained = load("weights/pare_hrnet")   -> converted weights (python -m pare_jax.convert)
             out = trained.predict(images)          -> PareModel outputs with SMPL vertices and joints

A training run writes its whole config to WORKDIR/config.json at start, so whoever loads the run never re-types
it. Converted weights carry their model config in model_config.json; they are posed with the open body unless a
body is given (the authors' models predict SMPL parameters: pass an official SMPL file for the true mesh).
"""
import dataclasses
import json
import os
from typing import Any

import ml_collections
from absl import logging
from flax import nnx

import smpl_jax
from pare_jax import checkpoint, losses, schedules, sharding
from pare_jax.convert import load_model, read_config, restore_into
from pare_jax.files import write_atomic
from pare_jax.models import ModelConfig, inference_split, predict
from pare_jax.models.pare import build_model
from pare_jax.train_step import init_train_state, optimized

RUN_CONFIG_FILE = "config.json"


class ModelSourceError(ValueError):
    """A --weights / --workdir path that holds no model, or a model that does not fit its config."""


def load_body(body_config):
    """The SMPL-format body (paths in config.body); must carry the 49-joint and H36M regressors."""
    return smpl_jax.load(body_config.model, extra_regressor=body_config.extra_regressor or None,
                         h36m_regressor=body_config.h36m_regressor or None)


def initial_state(config, tx, mesh, ckpt):
    """(graphdef, state, record) from the first source that exists (see pare_jax.checkpoint)."""
    model = build_model(config.model, rngs=nnx.Rngs(config.seed))
    resuming = ckpt.latest_step() is not None
    if not resuming and config.init_from and not checkpoint.is_run_directory(config.init_from):
        restore_into(model, config.init_from)  # converted weights (pare_jax.convert), full or backbone only
        logging.info("initialised from converted weights in %s", config.init_from)
    graphdef, state = init_train_state(model, tx, losses.initial_log_variances(config.loss))
    state = sharding.replicate(state, mesh)
    if resuming:
        state, record = ckpt.restore(checkpoint.abstract_like(state))
        logging.info("resuming from %s at step %d", ckpt.directory, int(state.step))
        return graphdef, state, record
    if config.init_from and checkpoint.is_run_directory(config.init_from):
        previous = checkpoint.Checkpoints(config.init_from, 1, 1, read_only=True).restore(
            checkpoint.abstract_like(state))[0]
        state = dataclasses.replace(state, params=previous.params, rest=previous.rest,
                                    opt_state=tx.init(optimized(previous.params, state.loss_params)))
        state = sharding.replicate(state, mesh)
        logging.info("initialised params and statistics from the run in %s (step %d)", config.init_from,
                     int(previous.step))
    return graphdef, state, {"step": 0}


def config_from_file(spec):
    """The config of "configs/NAME.py[:variant]" (get_config(variant)), as run.py's --config reads it."""
    import importlib.util
    path, _, variant = spec.partition(":")
    if not os.path.isfile(path):
        raise ModelSourceError(f"config file {path} not found; configs live in configs/*.py")
    module_spec = importlib.util.spec_from_file_location("_pare_jax_config", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    try:
        return module.get_config(variant)
    except ValueError as e:  # an unknown variant
        raise ModelSourceError(f"{spec}: {e}") from e


def save_run_config(config, workdir):
    """Write the run's whole config to WORKDIR/config.json (atomically), for whoever loads the run later."""
    os.makedirs(workdir, exist_ok=True)
    write_atomic(os.path.join(workdir, RUN_CONFIG_FILE), config.to_json(indent=2).encode())


def read_run_config(workdir):
    """The config a training run was started with (WORKDIR/config.json), or None for a run without one."""
    path = os.path.join(workdir, RUN_CONFIG_FILE)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        try:
            return ml_collections.ConfigDict(json.load(f))
        except json.JSONDecodeError as e:
            raise ModelSourceError(f"{path} is not valid JSON ({e}); restore it or pass --config") from e


@dataclasses.dataclass
class Trained:
    """A model ready for inference: graphdef and state of the inference split (BatchNorm folded), its
    ModelConfig, the body that poses its outputs, the run's config (None for converted weights), the step."""
    graphdef: Any
    state: Any
    model_config: ModelConfig
    body: smpl_jax.SMPL
    config: Any
    source: str
    step: int | None = None

    def predict(self, images, dtype="float32", with_body=True, context=None):
        """images [N, H, W, 3] ImageNet-normalised float -> the outputs of pare_jax.models.predict; context
        [N, H, W, 2]: the centre maps a CoNorm model needs (uses_context)."""
        return predict((self.graphdef, self.state), self.body if with_body else None, images, dtype, context)

    @property
    def uses_context(self):
        """Whether the model has CoNorm blocks and needs context maps (pare_jax/data/context.py)."""
        return self.model_config.conorm != "none"

    @property
    def image_size(self):
        """The input size the model was trained at (224 for converted authors' weights)."""
        return int(self.config.data.image_size) if self.config is not None else 224


def kind_of(path):
    """'run' (a training workdir), 'weights' (converted weights) or None."""
    if checkpoint.is_run_directory(path):
        return "run"
    if os.path.isfile(os.path.join(path, "model_config.json")):
        return "weights"
    return None


def load(path, config=None, body=None):
    """The trained model in `path`: a training workdir (its latest checkpoint; the config from
    WORKDIR/config.json unless `config` is given) or converted weights. body: a smpl_jax.SMPL to pose the
    outputs with (default: the run's config.body, or the open body for converted weights)."""
    kind = kind_of(path) if os.path.isdir(path) else None
    if kind is None:
        raise ModelSourceError(
            f"{path} holds no trained model: expected a training workdir (with checkpoints/, from "
            "python run.py --workdir=...) or converted weights (with model_config.json, from "
            "python -m pare_jax.convert)")
    if kind == "weights":
        model_config, meta = read_config(path)
        if meta.get("contents") != "full":
            raise ModelSourceError(f"{path} holds {meta.get('contents')} weights only (a backbone "
                                   "initialisation), not a trained model")
        graphdef, state = inference_split(load_model(path))
        return Trained(graphdef, state, model_config, body or smpl_jax.load("open"), None, path)
    config = config if config is not None else read_run_config(path)
    if config is None:
        raise ModelSourceError(f"{path} has no {RUN_CONFIG_FILE} (a run from before configs were saved): "
                               "pass the config it was trained with (--config=configs/...)")
    ckpt = checkpoint.Checkpoints(path, 1, 1, read_only=True)
    mesh = sharding.data_mesh()
    tx = schedules.optimizer(config.optim, config.num_steps)
    try:
        graphdef, state, _ = initial_state(config, tx, mesh, ckpt)
    except ValueError as e:  # shapes of the checkpoint do not fit the config's model
        raise ModelSourceError(f"the checkpoint in {path} does not fit the model of its config "
                               f"({config.model}): {e}") from e
    model = nnx.merge(graphdef, state.params, state.rest)
    graphdef, inference_state = inference_split(model)
    return Trained(graphdef, inference_state, ModelConfig.from_mapping(config.model),
                   body or load_body(config.body), config, path, int(state.step))
