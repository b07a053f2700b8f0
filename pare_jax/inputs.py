"""From the config to batches: preparing datasets, the training stream (with exact resume), evaluation batches.

Dataset names in config.data.train (a {name: ratio} mix) and config.data.eval ("name:split") are "synthetic" (the
builder described by config.data.synthetic, built on first use; no download) or a SPIN/PARE-format dataset of
pare_jax.data.builders ("coco", "mpii", "lspet", "mpi_inf_3dhp", "h36m", "3dpw", "3dpw_occ", "3doh"), built
from config.data.manual_dir on first use. Built datasets live in config.data.data_dir (shared by runs).

Exact resume: the training stream's position is saved next to every model checkpoint (tf.data iterator state:
shuffle buffers, mixing state, example counter) under WORKDIR/data_state/<step>, so a run killed at any moment
and restarted sees exactly the batches an uninterrupted run would have seen (with several processes: under
WORKDIR/data_state/process_<i>/<step>, one per process).
"""
import itertools
import os
import shutil

import numpy as np

from pare_jax.data import augment, builders, pipeline
from pare_jax.data.tensorflow_cpu import tf


def _data_dir(config):
    return os.path.expanduser(config.data.data_dir)


def _builder(config, name):
    """The tfds builder for a dataset name of the config (not yet prepared, maybe)."""
    if name == "synthetic":
        syn = config.data.synthetic
        # The name carries everything that changes the content, so builds of different settings never mix.
        heading = "" if syn.max_heading_deg == 180 else f"_heading{syn.max_heading_deg:g}"
        tilt = "" if syn.tilt_deg == 10 else f"_tilt{syn.tilt_deg:g}"
        people = "" if syn.multi_person_ratio == 0 else f"_people{syn.multi_person_ratio:g}"
        counts = "-".join(str(syn.num_examples[split]) for split in sorted(syn.num_examples))  # by split name
        builder_config = builders.SyntheticConfig(
            name=f"s{syn.crop_size}_n{counts}_seed{syn.seed}{heading}{tilt}{people}",
            crop_size=syn.crop_size, num_examples=dict(syn.num_examples), seed=syn.seed,
            max_heading_deg=float(syn.max_heading_deg), tilt_deg=float(syn.tilt_deg),
            multi_person_ratio=float(syn.multi_person_ratio))
        return builders.PareSynthetic(config=builder_config, data_dir=_data_dir(config), body=config.body.model)
    known = sorted(c.name for c in builders.SPIN_CONFIGS)
    if name not in known:
        raise ValueError(f"unknown dataset {name!r} in the config; use 'synthetic' or one of {known}")
    return builders.PareSpin(config=name, data_dir=_data_dir(config), body=config.body.model,
                             extra_regressor=config.body.extra_regressor or None)


_barrier_ids = itertools.count()  # barrier names must be unique; every process prepares in the same order


def is_prepared(config, name):
    """Whether the dataset of a config name is already built in config.data.data_dir."""
    return _builder(config, name).is_prepared()


def prepared_folder(config, name):
    """Build the dataset if needed; return the folder of its prepared version (what the pipeline reads).
    With several processes, process 0 builds and the others wait for it: tfds writes through temporary
    folders named per process, and two builders renaming their results into one place would race."""
    import jax
    import tensorflow_datasets as tfds
    builder = _builder(config, name)
    if not builder.is_prepared() and jax.process_index() == 0:
        download = tfds.download.DownloadConfig(manual_dir=os.path.expanduser(config.data.manual_dir) or None)
        builder.download_and_prepare(download_config=download)
    if jax.process_count() > 1:
        from pare_jax import sharding
        sharding.barrier(f"dataset_{name}_prepared_{next(_barrier_ids)}", timeout_s=7 * 86400)
        builder = _builder(config, name)  # re-read: on the other processes it was not prepared when built
    return os.fspath(builder.data_dir)


def _parse_eval(spec):
    name, _, split = spec.partition(":")
    return name, split or "test"


def augment_config(config):
    return augment.AugmentConfig(**{k: tuple(v) if isinstance(v, (list, tuple)) else v
                                    for k, v in config.data.augment.items()})


def check_masks(config, folders):
    """A model with CoNorm, or the silhouette term, reads the datasets' context maps / silhouettes: refuse
    folders built before they existed (pipeline.has_masks) with the fix, instead of training on zeros."""
    needs = []
    if config.model.get("conorm", "none") != "none":
        needs.append(f"model.conorm={config.model.conorm!r} (context maps)")
    if float(config.loss.weights.get("silhouette", 0.0)) > 0:
        needs.append("loss.weights.silhouette > 0 (silhouettes)")
    if not needs:
        return
    old = [folder for folder in folders if not pipeline.has_masks(folder)]
    if old:
        from pare_jax.preflight import PreflightError
        raise PreflightError(f"{' and '.join(needs)} needs datasets with silhouettes and context maps, but "
                             f"{', '.join(old)} was built before they existed (no 'masks' feature): delete it so "
                             "that it is rebuilt, or switch the option off")


class TrainStream:
    """Endless host batches (dicts of numpy arrays) whose position can be saved and restored with a step."""

    def __init__(self, config, per_process_batch, workdir):
        mix = {prepared_folder(config, name): ratio for name, ratio in config.data.train.items()}
        check_masks(config, mix)
        dataset = pipeline.train_dataset(mix, batch_size=per_process_batch, seed=config.seed,
                                         out_size=config.data.image_size, augment_config=augment_config(config),
                                         shuffle_buffer=config.data.shuffle_buffer)
        self._iterator = iter(dataset)
        self._checkpoint = tf.train.Checkpoint(iterator=self._iterator)
        import jax
        self._directory = os.path.join(os.path.abspath(workdir), "data_state")
        if jax.process_count() > 1:  # each process saves its own iterator; one shared folder would be clobbered
            self._directory = os.path.join(self._directory, f"process_{jax.process_index()}")
        self._keep = config.checkpoint.keep

    def __iter__(self):
        return self

    def __next__(self):
        return {k: v.numpy() for k, v in next(self._iterator).items()}

    def save(self, step):
        """Write the stream position for `step` (atomically: a temporary folder renamed), keep the newest."""
        final = os.path.join(self._directory, str(step))
        temporary = final + ".tmp"
        shutil.rmtree(temporary, ignore_errors=True)
        self._checkpoint.write(os.path.join(temporary, "iterator"))
        shutil.rmtree(final, ignore_errors=True)
        os.replace(temporary, final)
        steps = sorted(int(d) for d in os.listdir(self._directory) if d.isdigit())
        for old in steps[:-self._keep - 1]:
            shutil.rmtree(os.path.join(self._directory, str(old)), ignore_errors=True)

    def restore(self, step):
        path = os.path.join(self._directory, str(step), "iterator")
        if not tf.io.gfile.exists(path + ".index"):
            raise FileNotFoundError(f"{path}: the data position of checkpoint step {step} is missing; delete the "
                                    "workdir's checkpoints/ to restart, or restore the data_state folder")
        self._checkpoint.read(path).assert_consumed()


def eval_batches(config, spec, per_process_batch):
    """Host batches of an evaluation split "name:split" (padded last batch, mask = 0 on padding)."""
    name, split = _parse_eval(spec)
    folder = prepared_folder(config, name)
    check_masks(config, [folder])
    dataset = pipeline.eval_dataset(folder, batch_size=per_process_batch, split=split,
                                    out_size=config.data.image_size)
    for batch in pipeline.as_numpy(dataset):
        yield {k: np.asarray(v) for k, v in batch.items()}
