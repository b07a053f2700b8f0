"""Converted weights on disk: an Orbax checkpoint plus the model config, and the functions that load them.

Layout of a weights directory:
    model_config.json   {"model": ModelConfig fields, "contents": "full" | "backbone", "source": ...}
    weights/            Orbax (StandardCheckpointer) pytree {"params": ..., "batch_stats": ..., "buffers": ...},
                        nested dicts keyed like nnx.state(model) (list indices as ints)

    model = load_model("pare_hrnet_w32_flax")            # build from the stored config and fill every variable
    restored = restore_into(model, "hrnet_coco_flax")    # fill what the directory has (e.g. a backbone init)
"""
import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from pare_jax.convert.mapping import WEIGHT_VARIABLES
from pare_jax.models import ModelConfig, abstract_model, build_model
from pare_jax.models.layers import Buffer

COLLECTIONS = {"params": nnx.Param, "batch_stats": nnx.BatchStat, "buffers": Buffer}
CONFIG_FILE = "model_config.json"
WEIGHTS_DIR = "weights"


def model_weights(model):
    """{variable path: array} of everything a weights directory stores (Param, BatchStat, Buffer)."""
    return {path: v.get_value() for path, v in nnx.to_flat_state(nnx.state(model, WEIGHT_VARIABLES))}


def _collection_of(variable):
    return next(name for name, kind in COLLECTIONS.items() if isinstance(variable, kind))


def _nest(flat_by_collection):
    tree = {name: {} for name in COLLECTIONS}
    for (collection, path), value in flat_by_collection.items():
        node = tree[collection]
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = np.asarray(value)
    return tree


def save_weights(directory, config, weights, contents="full", source="", overwrite=False):
    """Write weights {variable path: array} for the model of `config` to `directory` (atomically: built in a
    temporary sibling, then renamed). contents: "full" or "backbone" (a backbone initialisation)."""
    config = ModelConfig.from_mapping(config)
    directory = os.path.abspath(directory)
    check_output_directory(directory, overwrite)
    variables = dict(nnx.to_flat_state(nnx.state(abstract_model(config), WEIGHT_VARIABLES)))
    unknown = sorted("/".join(map(str, p)) for p in set(weights) - set(variables))
    if unknown:
        raise ValueError(f"weights for variables the model of {config} does not have: {unknown[:10]}")
    tree = _nest({(_collection_of(variables[p]), p): v for p, v in weights.items()})
    tmp = f"{directory}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        os.makedirs(tmp)
        with ocp.StandardCheckpointer() as checkpointer:
            checkpointer.save(os.path.join(tmp, WEIGHTS_DIR), tree)
            checkpointer.wait_until_finished()
        with open(os.path.join(tmp, CONFIG_FILE), "w") as f:
            json.dump({"model": config.to_dict(), "contents": contents, "source": source}, f, indent=2)
        if os.path.exists(directory):
            shutil.rmtree(directory)
        os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def check_output_directory(directory, overwrite):
    """Refuse, before anything is written, an output that exists (without overwrite), that is not a directory,
    or that is a directory other than a weights directory (overwrite must never delete someone's data)."""
    if not os.path.lexists(directory):
        return
    if not overwrite:
        raise FileExistsError(f"{directory} exists; choose another output directory or pass overwrite=True "
                              "(--overwrite)")
    if not os.path.isdir(directory) or os.path.islink(directory):
        raise FileExistsError(f"{directory} exists and is not a directory; --overwrite only replaces a weights "
                              "directory: remove the file or choose another output")
    if os.listdir(directory) and not os.path.isfile(os.path.join(directory, CONFIG_FILE)):
        raise FileExistsError(f"{directory} is not a weights directory (no {CONFIG_FILE}); --overwrite only "
                              "replaces one written by python -m pare_jax.convert: choose another output")


def save_model(directory, model, source="", overwrite=False):
    """Write all weights of a PareModel (see save_weights)."""
    return save_weights(directory, model.config, model_weights(model), "full", source, overwrite)


def read_config(directory):
    path = os.path.join(directory, CONFIG_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found: {directory} is not a weights directory written by "
                                "python -m pare_jax.convert")
    with open(path) as f:
        meta = json.load(f)
    return ModelConfig.from_mapping(meta["model"]), meta


def _flatten(tree, prefix=()):
    for key, value in tree.items():
        key = int(key) if isinstance(key, str) and key.isdigit() else key  # Orbax stores list indices as str
        if isinstance(value, dict):
            yield from _flatten(value, prefix + (key,))
        else:
            yield prefix + (key,), value


def read_weights(directory):
    """(ModelConfig, meta, {variable path: array}) from a weights directory."""
    config, meta = read_config(directory)
    with ocp.StandardCheckpointer() as checkpointer:
        tree = checkpointer.restore(os.path.join(os.path.abspath(directory), WEIGHTS_DIR))
    weights = {}
    for collection in COLLECTIONS:
        weights.update(dict(_flatten(tree.get(collection, {}))))
    return config, meta, weights


def assign_weights(model, weights, where=""):
    """Set model variables from {path: array}; every path must exist with the same shape. In place."""
    state = nnx.state(model, WEIGHT_VARIABLES)
    flat = dict(nnx.to_flat_state(state))
    problems = [f"{'/'.join(map(str, p))}: " + ("no such variable" if p not in flat else
                f"shape {np.shape(v)} != model {flat[p].shape}")
                for p, v in weights.items() if p not in flat or tuple(np.shape(v)) != tuple(flat[p].shape)]
    if problems:
        raise ValueError(f"weights {where} do not fit the model: " + "; ".join(problems[:10]))
    for path, value in weights.items():
        flat[path].set_value(jnp.asarray(value, flat[path].get_value().dtype))
    nnx.update(model, state)


def restore_into(model, directory):
    """Fill the model's variables that the weights directory holds (all, or the backbone for a backbone
    initialisation). Returns the restored paths. The stored config must match the model's architecture."""
    config, meta, weights = read_weights(directory)
    if (config.backbone, config.head) != (model.config.backbone, model.config.head) and meta["contents"] == "full":
        raise ValueError(f"{directory} holds a {config.backbone}/{config.head} model; this model is "
                         f"{model.config.backbone}/{model.config.head}")
    assign_weights(model, weights, where=f"from {directory}")
    return sorted(weights)


def load_model(directory, rngs=None):
    """Build the model of the stored config and fill every variable (a backbone-only directory is refused:
    build your model and use restore_into)."""
    config, meta, weights = read_weights(directory)
    if meta.get("contents") != "full":
        raise ValueError(f"{directory} holds {meta.get('contents')} weights only; build the model with "
                         "pare_jax.models.build_model and call restore_into(model, directory)")
    model = build_model(config, rngs=rngs or nnx.Rngs(0))
    expected = set(model_weights(model))
    if set(weights) != expected:
        missing = sorted("/".join(map(str, p)) for p in expected - set(weights))
        raise ValueError(f"{directory} lacks variables of its model: {missing[:10]}")
    assign_weights(model, weights, where=f"from {directory}")
    return model


