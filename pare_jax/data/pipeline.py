"""The tf.data pipelines: training (mixed datasets, per-host slices of a global stream, PARE's augmentations) and evaluation.

    ds = train_dataset({"h36m": 0.5, "coco": 0.233, "lspet": 0.046, "mpii": 0.021, "mpi_inf_3dhp": 0.2},
                       batch_size=64, seed=0, data_dir="~/tensorflow_datasets")
    ds = eval_dataset("3dpw", split="test", batch_size=64)
    for batch in as_numpy(ds): ...

Sources are names (aliases below, e.g. "coco" -> the tfds dataset "pare_spin/coco"), tfds names
("pare_synthetic/small"), or folders of prepared datasets (".../pare_spin/mine/1.0.0").
Output: a dict of tensors per batch (B = per-host batch size, H = W = out_size):

| key           | shape / dtype         | meaning |
|---------------|-----------------------|---------|
| img           | [B, H, W, 3] float32  | ImageNet-normalised RGB |
| keypoints     | [B, 49, 3] float32    | x, y in [-1, 1] over the crop (SPIN's 49 joints) + confidence |
| visibility    | [B, 49] float32       | 1 visible, 0 occluded / outside the crop, -1 unknown |
| joints3d      | [B, 24, 4] float32    | camera-axes 3D joints (metres) + confidence |
| pose          | [B, 72] float32       | SMPL axis-angle, global orientation in camera axes |
| betas         | [B, 10] float32       | |
| part_map      | [B, H, W] int32       | 0 background, 1..24 parts |
| silhouette    | [B, H, W, 2] float32  | target's full and visible silhouette in [0, 1] (LASOR's loss) |
| context       | [B, H, W, 2] float32  | local and global body-centre maps in [0, 1] (OCHMR's CoNorm; data/context.py) |
| has_smpl, has_joints3d, has_part_map, has_silhouette, has_context | [B] float32 | per-sample flags |
| gender        | [B] int32             | 0 male, 1 female, -1 unknown |
| dataset_index | [B] int32             | position of the source in the mix (train) / 0 (eval) |
| sample_index  | [B] int64             | row within its source split |
| mask          | [B] float32           | 1 for real samples; 0 for the padding of the last evaluation batch |

Determinism: tf.data runs deterministically and every random number is a stateless function of (seed, example
counter in the global stream), so one seed gives the same global batches on every run and for any number of
hosts. The random-crop schedule reads the training
step from the example counter: step = start_step + counter // batch_size (the pipeline runs ahead of the
trainer, so a variable the trainer updates would switch the crop on at an irreproducible example).
Resuming: save the iterator with tf.train.Checkpoint(iterator=it) next to the model checkpoint and restore it, and
the stream continues exactly (shuffle buffers, mixing state and the example counter are all in it; this is what
pare_jax.inputs does). Without that state, pass start_step = the restored step: the stream is then a function of
(seed, start_step) with the crop schedule in step, though not the continuation of the interrupted stream.
"""
import math
import os

import numpy as np
import tensorflow_datasets as tfds

from pare_jax.data import augment, builders  # noqa: F401  (builders registers the tfds datasets)
from pare_jax.data.tensorflow_cpu import tf

ALIASES = {name: f"pare_spin/{name}" for name in ("coco", "mpii", "lspet", "mpi_inf_3dhp", "h36m", "3dpw",
                                                   "3dpw_occ", "3doh")}
ALIASES.update({"synthetic": "pare_synthetic/default", "synthetic_small": "pare_synthetic/small",
                "synthetic_tiny": "pare_synthetic/tiny"})
OUTPUT_KEYS = ("keypoints", "visibility", "joints3d", "pose", "betas", "has_smpl", "has_joints3d",
               "has_part_map", "has_silhouette", "has_context", "gender", "sample_index")
ENCODED = {"image": tfds.decode.SkipDecoding(), "part_map": tfds.decode.SkipDecoding(),
           "masks": tfds.decode.SkipDecoding()}


def get_builder(name, data_dir=None):
    """A prepared tfds builder for an alias, a tfds name, or a dataset folder."""
    if os.path.isfile(os.path.join(os.fspath(name), "dataset_info.json")):
        return tfds.builder_from_directory(name)
    tfds_name = ALIASES.get(name, name)
    builder = tfds.builder(tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(
            f"dataset {name!r} ({tfds_name}) is not prepared under {builder.data_dir}; build it first, e.g. "
            f"tfds.builder({tfds_name!r}, data_dir=...).download_and_prepare(...) (see pare_jax/data/builders.py)")
    return builder


def host_shard(process_index=None, process_count=None):
    """(index, count) of this host: explicit values, or jax.process_index() / jax.process_count()."""
    if process_index is None or process_count is None:
        import jax
        process_index = jax.process_index() if process_index is None else process_index
        process_count = jax.process_count() if process_count is None else process_count
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
    return process_index, process_count


def host_split(split, process_index, process_count):
    """This host's disjoint slice of a split; the slices of all hosts cover it."""
    return tfds.even_splits(split, n=process_count, drop_remainder=False)[process_index]


MASK_KEYS = ("masks", "has_silhouette", "has_context")


def encoded(builder):
    """The decoders that keep the builder's images encoded (decode() decodes them), for the features it has."""
    return {key: value for key, value in ENCODED.items() if key in builder.info.features}


def has_masks(source, data_dir=None):
    """Whether a dataset (a name or folder, as get_builder takes) stores silhouettes and context maps: builds
    from before version 1.1.0 of the builders do not."""
    return "masks" in get_builder(source, data_dir).info.features


def _with_masks(ds, builder):
    """Records of a dataset built before silhouettes and context maps existed get all-zero masks (one PNG
    encoded once) and both flags 0, so that old and new datasets mix and decode alike."""
    if "masks" in builder.info.features:
        return ds
    from pare_jax.data import schema
    size = builder.info.features["image"].shape[0]
    empty = tf.constant(schema.encode_png(np.zeros((size, size, 4), np.uint8)))
    zero = tf.constant(0.0, tf.float32)
    return ds.map(lambda ex: dict(ex, masks=empty, has_silhouette=zero, has_context=zero))


def decode(example):
    """Stored record with encoded image, part map and masks (read with decoders=encoded(builder)) -> decoded
    tensors."""
    out = {key: example[key] for key in OUTPUT_KEYS + ("crop_margin",)}
    out["image"] = tf.io.decode_jpeg(example["image"], channels=3)
    out["part_map"] = tf.io.decode_png(example["part_map"], channels=1)
    out["masks"] = tf.io.decode_png(example["masks"], channels=4)
    return out


def _finish(example, mask=1.0):
    out = {key: example[key] for key in OUTPUT_KEYS + ("img", "part_map", "silhouette", "context",
                                                       "dataset_index")}
    out["mask"] = tf.constant(mask, tf.float32)
    return out


def _seeds(seed, *salt, count=4):
    return [int(s) for s in np.random.SeedSequence([int(seed), *map(int, salt)]).generate_state(count) >> 1]


def train_dataset(mix, *, batch_size, seed, data_dir=None, split="train", out_size=224, augment_config=None,
                  occluder_bank=None, start_step=0, process_index=None, process_count=None, shuffle_buffer=1024,
                  num_parallel_calls=tf.data.AUTOTUNE):
    """Endless training batches from the datasets of `mix` ({name: ratio}; ratios are normalised) on this host.

    batch_size: per host (the global batch divided by the number of hosts); host i gets positions
    [i * batch_size, (i + 1) * batch_size) of every global batch of the stream. occluder_bank: [N, O, O, 4] uint8
    RGBA (pare_jax.data.occluders), or the path of an .npz of RGBA cut-outs (e.g. the Pascal VOC objects you
    extracted yourself); default: 256 procedural ones. split: the split read from every source.
    """
    if not mix or any(r <= 0 for r in mix.values()):
        raise ValueError(f"mix must map dataset names to positive ratios, got {mix!r}")
    config = augment_config or augment.AugmentConfig()
    index, count = host_shard(process_index, process_count)
    # Every host walks the same global stream (same seeds, whole split) and decodes and augments only its
    # slice of each global batch: the global batch is then the same for any number of hosts, so a multi-host
    # run trains exactly like one process with the same global batch. (Seeds keep the host index 0 they had.)
    global_batch = batch_size * count
    mix_seed, aug_seed = _seeds(seed, 0, start_step, count=2)
    sources = []
    for position, name in enumerate(mix):
        source_seed = _seeds(seed, 0, start_step, position, count=1)[0]
        builder = get_builder(name, data_dir)
        ds = _with_masks(builder.as_dataset(split=split, shuffle_files=True, decoders=encoded(builder),
                                            read_config=tfds.ReadConfig(shuffle_seed=source_seed)), builder)
        ds = ds.map(lambda ex, p=position: dict(ex, dataset_index=tf.constant(p, tf.int32)))
        sources.append(ds.shuffle(shuffle_buffer, seed=source_seed, reshuffle_each_iteration=True).repeat())
    weights = [float(r) / sum(mix.values()) for r in mix.values()]
    ds = sources[0] if len(sources) == 1 else tf.data.Dataset.sample_from_datasets(sources, weights, seed=mix_seed)
    bank = _bank(occluder_bank)

    # Plain TensorFlow (explicit tf.cond), so autograph's slow source conversion is skipped when tracing.
    @tf.autograph.experimental.do_not_convert
    def mine(counter, example):
        return tf.equal((counter % global_batch) // batch_size, index)

    @tf.autograph.experimental.do_not_convert
    def make_example(counter, example):
        counter = counter + start_step * global_batch  # the position in the global stream
        step = counter // global_batch
        key = tf.stack([tf.constant(aug_seed, tf.int64), counter])
        params = augment.sample_params(key, config, step >= config.crop_start_step)
        decoded = dict(decode(example), dataset_index=example["dataset_index"])
        return _finish(augment.apply(decoded, params, bank, out_size))

    ds = ds.enumerate().filter(mine).map(make_example, num_parallel_calls=num_parallel_calls, deterministic=True)
    return _with_options(ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def _bank(occluder_bank):
    """None (procedural occluders), a path to the user's cut-outs (.npz), or a bank array -> float32 constant."""
    from pare_jax.data import occluders
    if occluder_bank is None:
        bank = occluders.make_occluder_bank()
    elif isinstance(occluder_bank, (str, os.PathLike)):
        bank = occluders.load_occluder_file(occluder_bank)
    else:
        bank = np.asarray(occluder_bank)
    if bank.ndim != 4 or bank.shape[-1] != 4 or bank.dtype != np.uint8:
        raise ValueError(f"occluder_bank must be uint8 [N, O, O, 4] RGBA, got {bank.dtype} {bank.shape}")
    rgba = bank.astype(np.float32)
    rgba[..., 3] /= 255.0
    return tf.constant(rgba)


def _with_options(ds):
    options = tf.data.Options()
    options.deterministic = True
    options.experimental_optimization.map_parallelization = True
    return ds.with_options(options)


def eval_dataset(name, *, batch_size, split="test", data_dir=None, out_size=224, process_index=None,
                 process_count=None, num_parallel_calls=tf.data.AUTOTUNE):
    """Every example of a split once, in order, without augmentation; on each host the same number of full
    batches, the last ones padded with mask = 0 (so multi-host evaluation steps stay in lockstep)."""
    builder = get_builder(name, data_dir)
    index, count = host_shard(process_index, process_count)
    sizes = [builder.info.splits[host_split(split, i, count)].num_examples for i in range(count)]
    num_batches = max(1, math.ceil(max(sizes) / batch_size))
    ds = _with_masks(builder.as_dataset(split=host_split(split, index, count), shuffle_files=False,
                                        decoders=encoded(builder)), builder)
    ds = ds.map(eval_example_fn(out_size), num_parallel_calls=num_parallel_calls, deterministic=True)
    padding = tf.data.Dataset.from_tensors(
        tf.nest.map_structure(lambda spec: tf.zeros(spec.shape, spec.dtype), ds.element_spec))
    ds = ds.concatenate(padding.repeat(num_batches * batch_size - sizes[index]))
    return _with_options(ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))


def eval_example_fn(out_size):
    """The evaluation map: stored record (decoders=encoded(builder)) -> one output example (the box resampled to
    out_size, normalised; no augmentation)."""
    identity = augment.identity_params()

    @tf.autograph.experimental.do_not_convert
    def make_example(example):
        decoded = dict(decode(example), dataset_index=tf.constant(0, tf.int32))
        return _finish(augment.apply(decoded, identity, None, out_size))

    return make_example


def as_numpy(ds):
    """Iterate a pipeline as dicts of numpy arrays."""
    return tfds.as_numpy(ds)
