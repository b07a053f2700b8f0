"""Train and evaluate PARE: python run.py --config=configs/pare_hrnet.py --workdir=DIR

Overrides: --config.optim.lr=1e-4, variants: --config=configs/pare_hrnet.py:smoke. A run resumes automatically
from DIR/checkpoints. All logic lives in pare_jax.train.
"""
from absl import app, flags
from ml_collections import config_flags

config_flags.DEFINE_config_file("config", None, "experiment config file (configs/*.py[:variant])", lock_config=True)
flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and evaluation results")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments {argv[1:]}; only --config and --workdir are accepted")
    from pare_jax import train
    train.train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)


if __name__ == "__main__":
    app.run(main)
