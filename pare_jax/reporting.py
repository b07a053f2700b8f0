"""Training and evaluation reports: TensorBoard event files, a progress line, JSON summaries.

Everything goes under WORKDIR: tensorboard/ (event files; `tensorboard --logdir WORKDIR/tensorboard`),
eval/<dataset>_<split>_step<N>.json (one summary per evaluation, written atomically) and
eval/<dataset>_<split>_latest.json.
"""
import json
import logging
import os
import time

from pare_jax.data.tensorflow_cpu import tf
from pare_jax.files import write_atomic


class _QuietLibraries(logging.Filter):
    """Orbax and tfds log every file they touch at INFO; keep their warnings, drop the chatter."""

    def filter(self, record):
        return record.levelno >= logging.WARNING or not any(
            name in record.pathname for name in ("orbax", "tensorflow_datasets", "etils"))


def quiet_library_logs():
    from absl import logging as absl_logging
    handler = absl_logging.get_absl_handler()
    if not any(isinstance(f, _QuietLibraries) for f in handler.filters):
        handler.addFilter(_QuietLibraries())


class Reporter:
    """Writes scalars to TensorBoard and prints `step 120/2000 | loss 3.21 | 4.1 steps/s | ETA 7m38s`."""

    def __init__(self, workdir, num_steps, start_step, is_main=True):
        self.workdir, self.num_steps, self.is_main = workdir, num_steps, is_main
        self.writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard")) if is_main else None
        self._last_time, self._last_step = time.time(), start_step

    def scalars(self, step, values, prefix=""):
        if not self.is_main:
            return
        with self.writer.as_default():
            for name, value in values.items():
                tf.summary.scalar(prefix + name, float(value), step=step)
        self.writer.flush()

    def progress(self, step, values):
        now = time.time()
        rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
        self._last_time, self._last_step = now, step
        eta = (self.num_steps - step) / rate if rate > 0 else float("inf")
        shown = " | ".join(f"{k} {v:.4g}" for k, v in values.items())
        if self.is_main:
            print(f"step {step}/{self.num_steps} | {shown} | {rate:.2f} steps/s | ETA {_duration(eta)}", flush=True)
        return rate

    def evaluation(self, step, split, summary):
        """Write the evaluation summary as JSON and its scalars to TensorBoard. Returns the JSON path."""
        if not self.is_main:
            return None
        record = {"step": step, "split": split, **summary}
        directory = os.path.join(self.workdir, "eval")
        os.makedirs(directory, exist_ok=True)
        stem = split.replace(":", "_").replace("/", "_")
        path = os.path.join(directory, f"{stem}_step{step}.json")
        write_json_atomic(path, record)
        write_json_atomic(os.path.join(directory, f"{stem}_latest.json"), record)
        self.scalars(step, {k: v for k, v in summary.items() if isinstance(v, (int, float))}, prefix=f"{split}/")
        return path


def write_json_atomic(path, record):
    write_atomic(path, json.dumps(record, indent=1).encode())


def _duration(seconds):
    if seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
