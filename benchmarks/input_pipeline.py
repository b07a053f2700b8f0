"""Input pipeline throughput: training examples per second of the full augmented pipeline, next to the rate of
reading the same records without augmentation.

    python benchmarks/input_pipeline.py [--examples 64] [--batch 64] [--batches 30] [--size 224]

Builds a small synthetic dataset (pare_jax.data.builders.PareSynthetic, --size px boxes, stored with the 1.5
margin) into a temporary folder first, then times, on the same records and in one run:
  read      tfds records -> decoded stored crop (JPEG) + part map (PNG), batched: the storage and decoding floor
  eval      the evaluation map (pipeline.eval_example_fn): decode, resample the box to size x size, normalise
  train     the training pipeline: mixing, shuffling, decode, flip / rotation / scale / colour / 1-7 occluders /
            random crop (active), normalise, batch
The target on a 16-core GPU host is about 1,500 training examples/s at 224 px (enough to feed a GPU).
"""
import argparse
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def build(data_dir, examples, size):
    from pare_jax.data import builders
    config = builders.SyntheticConfig(name=f"bench{size}", crop_size=size, num_examples={"train": examples})
    builder = builders.PareSynthetic(config=config, data_dir=data_dir, render_chunk=16)
    builder.download_and_prepare()
    return str(builder.data_path)


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rate(iterator, batches, batch_size, warmup=3):
    """(examples per second, CPU milliseconds per example) over `batches` batches after `warmup` ones. The CPU
    time (all threads) is what a machine with more cores divides; wall time also counts other processes' load."""
    for _ in range(warmup):
        next(iterator)
    start, cpu = time.perf_counter(), _cpu_seconds()
    for _ in range(batches):
        next(iterator)
    examples = batches * batch_size
    return examples / (time.perf_counter() - start), (_cpu_seconds() - cpu) * 1000 / examples


def records(path):
    """The stored records, endlessly, with encoded images (tfds's cache of small datasets is off: real datasets
    do not fit in memory)."""
    import tensorflow_datasets as tfds

    from pare_jax.data import pipeline
    return tfds.builder_from_directory(path).as_dataset(split="train", decoders=pipeline.ENCODED,
                                                        read_config=tfds.ReadConfig(try_autocache=False)).repeat()


def map_rate(path, function, batches, batch_size):
    """Rate of records -> function (parallel map) -> batches; the records repeat without restarting."""
    from pare_jax.data.tensorflow_cpu import tf
    ds = records(path).map(function, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(2)
    return rate(iter(ds), batches, batch_size)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=64, help="synthetic examples to build")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--batches", type=int, default=30, help="timed batches per pipeline")
    parser.add_argument("--size", type=int, default=224)
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from pare_jax.data import augment, pipeline

    with tempfile.TemporaryDirectory() as data_dir:
        start = time.perf_counter()
        path = build(data_dir, args.examples, args.size)
        print(f"built {args.examples} synthetic examples at {args.size} px in {time.perf_counter() - start:.0f} s")

        shard = {"process_index": 0, "process_count": 1}
        train_ds = pipeline.train_dataset({path: 1.0}, batch_size=args.batch, seed=0, out_size=args.size,
                                          augment_config=augment.AugmentConfig(crop_start_step=0), **shard)
        read = map_rate(path, pipeline.decode, args.batches, args.batch)
        # The evaluation map on endlessly repeated records (eval_dataset itself ends after one pass).
        evaluation = map_rate(path, pipeline.eval_example_fn(args.size), args.batches, args.batch)
        train = rate(iter(pipeline.as_numpy(train_ds)), args.batches, args.batch)
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores (load average {os.getloadavg()[0]:.1f}), batch {args.batch}, {args.size} px")
    print("                          examples/s   CPU ms/example   examples/s per busy core")
    for name, (per_second, cpu_ms) in (("read (decode only)", read), ("eval (no augmentation)", evaluation),
                                       ("train (augmented)", train)):
        print(f"  {name:24s} {per_second:10.0f} {cpu_ms:14.2f} {1000 / cpu_ms:16.0f}")
    print(f"  train / eval: {train[0] / evaluation[0]:.2f} (wall), {evaluation[1] / train[1]:.2f} (CPU); "
          f"16 busy cores would give about {16 * 1000 / train[1]:.0f} training examples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
