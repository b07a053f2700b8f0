"""Train and evaluate PARE: python run.py --config=configs/pare_hrnet.py --workdir=DIR

Overrides: --config.optim.lr=1e-4, variants: --config=configs/pare_hrnet.py:smoke. A run resumes automatically
from DIR/checkpoints. All logic lives in pare_jax.train.
"""
from absl import app, flags
from ml_collections import config_flags

from pare_jax import preflight

config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py[:variant])", lock_config=True)
flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and evaluation results")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv  # checked by preflight.parse_command_line
    from pare_jax import train
    with preflight.exit_on_error():  # bad input: one line `error: ...`, exit code 2
        train.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    app.run(main, flags_parser=preflight.parse_command_line)
