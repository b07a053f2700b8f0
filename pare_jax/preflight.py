"""Checks of a command line, a config and a workdir before any work starts, each failure one clear sentence.

    config = preflight.parse_command_line(sys.argv)      # the absl flags of run.py / pare_jax.evaluate
    preflight.check(config, workdir, for_training=True)  # raises PreflightError naming the problem and the fix

The entry points print the message as one line `error: ...` and exit with code 2 (`exit_on_error`), so that a
typo costs seconds, not the minutes of rendering a dataset or compiling a model before something fails.
"""
import contextlib
import os
import sys
import tempfile

from pare_jax.models import CHOICES

EXIT_CODE = 2


class PreflightError(ValueError):
    """A bad command line, config value, path or workdir, found before any work started."""


def fail(message):
    """The entry points' single way out on bad input: one line on stderr, exit code 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(EXIT_CODE)


@contextlib.contextmanager
def exit_on_error(*more_errors):
    """Turn PreflightError, CheckpointError, ModelFileError (and `more_errors`) into `fail`."""
    import smpl_jax
    from pare_jax.checkpoint import CheckpointError
    try:
        yield
    except (PreflightError, CheckpointError, smpl_jax.ModelFileError, *more_errors) as exc:
        fail(exc)


def parse_command_line(argv):
    """absl flag parsing for app.run(main, flags_parser=parse_command_line): unknown flags, an unknown config
    key, a missing config file or an unknown variant end in `fail` instead of a traceback or usage text."""
    from absl import flags
    try:
        rest = flags.FLAGS(argv)
        flags.FLAGS.config.keys()  # a config file that failed to load raises only when first used
    except flags.Error as exc:
        fail(_last_lines(exc, 1) if "Traceback" in str(exc) else exc)
    except (AttributeError, KeyError) as exc:  # ml_collections: an override names a key the config lacks
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        fail(f"unknown config key {exc} in {' '.join(overrides) or 'the command line'}; every key is listed in "
             "configs/common.py")
    except Exception as exc:  # a config file that is missing or fails to build (e.g. an unknown variant)
        cause = exc.__cause__ or exc
        fail(f"cannot load --config: {_last_lines(cause, 3 if isinstance(cause, OSError) else 1)}")
    if len(rest) > 1:
        fail(f"unexpected arguments {rest[1:]}; only --config, --workdir and --config.* overrides are accepted")
    return rest


def _last_lines(exc, count):
    """The end of an exception message that embeds a traceback (ml_collections does): the error itself."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return " ".join(lines[-count:])


def check(config, workdir, for_training):
    """Every check that needs no dataset, model or compilation. for_training: the workdir will be written
    (created if needed, exclusively locked later); otherwise (evaluation) it must already exist unless
    config.init_from is set. Raises PreflightError."""
    _check_numbers(config, for_training)
    _check_model(config.model)
    _check_body(config.body)
    if config.init_from and not os.path.isdir(config.init_from):
        raise PreflightError(f"config.init_from={config.init_from!r} is not a directory; give converted weights "
                             "(python -m pare_jax.convert) or another run's workdir")
    names = set(config.data.train) if for_training else set()
    names |= {spec.partition(":")[0] for spec in config.data.eval}
    for spec in config.data.eval:
        _check_split(spec)
    for name in sorted(names):
        _check_dataset(config, name)
    _check_workdir(workdir, for_training, config.init_from)  # last: for training it creates the workdir


def _check_numbers(config, for_training):
    import jax
    devices = jax.device_count()
    positive = {"batch_size": config.batch_size, "eval_batch_size": config.eval_batch_size,
                "data.image_size": config.data.image_size}
    if for_training:
        positive.update({"num_steps": config.num_steps, "log_every": config.log_every,
                         "checkpoint.every": config.checkpoint.every, "checkpoint.keep": config.checkpoint.keep})
    for key, value in positive.items():
        if value <= 0:
            raise PreflightError(f"config.{key}={value} must be positive (--config.{key}=...)")
    for key in ("batch_size", "eval_batch_size"):
        if config[key] % devices:
            raise PreflightError(f"config.{key}={config[key]} does not split over {devices} devices: use a "
                                 f"multiple of {devices} (--config.{key}=...)")
    if config.eval_every < 0:
        raise PreflightError(f"config.eval_every={config.eval_every} must be >= 0 (0: evaluate only at the end)")


def _check_model(model):
    from pare_jax.models import ModelConfig
    for key, allowed in CHOICES.items():
        if key in model and model[key] not in allowed:
            raise PreflightError(f"config.model.{key}={model[key]!r} is not one of {list(allowed)} "
                                 f"(--config.model.{key}=...)")
    try:
        ModelConfig.from_mapping(dict(model))
    except ValueError as exc:
        raise PreflightError(str(exc)) from None
    if model.mean_params and not os.path.isfile(model.mean_params):
        raise PreflightError(f"config.model.mean_params={model.mean_params!r}: no such file; set it to '' for "
                             "the built-in mean parameters")


def _check_body(body):
    if body.model != "open" and not os.path.isfile(body.model):
        raise PreflightError(f"config.body.model={body.model!r}: no such file; pass an SMPL model (.pkl or "
                             "clean .npz from python -m smpl_jax.convert) or 'open' for the bundled open body")
    for key in ("extra_regressor", "h36m_regressor", "gt_male", "gt_female"):
        if body[key] and not os.path.isfile(body[key]):
            raise PreflightError(f"config.body.{key}={body[key]!r}: no such file (set it to '' if not needed)")


def _check_workdir(workdir, for_training, init_from):
    workdir = os.path.abspath(os.path.expanduser(workdir))
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise PreflightError(f"--workdir={workdir} is a file, not a directory; pass a directory")
    if not for_training:
        if not os.path.isdir(workdir) and not init_from:
            raise PreflightError(f"--workdir={workdir}: no such directory (a typo?); evaluation reads a training "
                                 "run's workdir, or set --config.init_from to evaluate converted weights")
        return
    try:
        os.makedirs(workdir, exist_ok=True)
        with tempfile.TemporaryFile(dir=workdir):
            pass
    except OSError as exc:
        raise PreflightError(f"--workdir={workdir} cannot be written ({exc.strerror or exc}); pass a directory "
                             "you can write to") from None


def _check_split(spec):
    from pare_jax.data import builders, synthetic
    name, _, split = spec.partition(":")
    split = split or "test"
    splits = synthetic.SPLITS if name == "synthetic" else next(
        (tuple(c.npz_files) for c in builders.SPIN_CONFIGS if c.name == name), None)
    if splits is not None and split not in splits:
        raise PreflightError(f"config.data.eval: {spec!r} names split {split!r}, which {name} does not have; "
                             f"choose from {list(splits)}")


def _check_dataset(config, name):
    """Known name; for a SPIN dataset not yet built: its annotation files and every image they name exist."""
    from pare_jax import inputs
    from pare_jax.data import builders, spin_format
    known = ["synthetic"] + sorted(c.name for c in builders.SPIN_CONFIGS)
    if name not in known:
        raise PreflightError(f"unknown dataset {name!r} in the config (data.train / data.eval); use one of {known}")
    if name == "synthetic" or inputs.is_prepared(config, name):
        return
    spin = next(c for c in builders.SPIN_CONFIGS if c.name == name)
    root = os.path.expanduser(config.data.manual_dir)
    if not root or not os.path.isdir(root):
        raise PreflightError(f"dataset {name!r} is not built yet and config.data.manual_dir={root!r} is not a "
                             "directory; set it to the folder with the SPIN/PARE .npz files and image folders "
                             "(pare_jax/data/builders.py)")
    for split, npz in spin.npz_files.items():
        path = os.path.join(root, npz)
        if not os.path.isfile(path):
            raise PreflightError(f"dataset {name!r}: {path} is missing (its {split} annotations)")
        try:
            names = spin_format.read_annotations(path)["imgname"]
        except spin_format.SpinFormatError as exc:
            raise PreflightError(str(exc)) from None
        image_root = os.path.join(root, spin.image_root)
        missing = spin_format.missing_files(image_root, names)
        if missing:
            raise PreflightError(f"dataset {name!r}: {len(missing)} images named by {npz} are missing under "
                                 f"{image_root}, e.g. {', '.join(missing[:3])}; put the {name} images there")
