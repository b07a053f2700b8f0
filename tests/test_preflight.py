"""Bad input at the entry points: one line `error: ...`, exit code 2, before any work, nothing written."""
import os
import subprocess
import sys

import numpy as np
import pytest

from pare_jax import preflight

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _config(**changes):
    from configs import synthetic
    config = synthetic.get_config("smoke")
    config.unlock()
    for key, value in changes.items():
        node = config
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    config.lock()
    return config


CASES = {
    "batch_size_0": (dict(batch_size=0), "config.batch_size=0 must be positive"),
    "log_every_0": (dict(log_every=0), "config.log_every=0 must be positive"),
    "unknown_backbone": ({"model.backbone": "vgg16"}, "config.model.backbone='vgg16' is not one of"),
    "unknown_dataset": ({"data.train": {"cocoa": 1.0}}, "unknown dataset 'cocoa' in the config"),
    "unknown_split": ({"data.eval": ("synthetic:val",)}, "names split 'val', which synthetic does not have"),
    "missing_body": ({"body.model": "/nonexistent/SMPL_NEUTRAL.pkl"},
                     "config.body.model='/nonexistent/SMPL_NEUTRAL.pkl': no such file"),
    "missing_regressor": ({"body.extra_regressor": "/nonexistent/J_regressor_extra.npy"},
                          "config.body.extra_regressor='/nonexistent/J_regressor_extra.npy': no such file"),
    "missing_init_from": (dict(init_from="/nonexistent/weights"), "config.init_from='/nonexistent/weights' is not"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_config_values_are_named_before_any_work(case, tmp_path):
    changes, message = CASES[case]
    with pytest.raises(preflight.PreflightError, match=message.replace("(", r"\(").replace(")", r"\)")):
        preflight.check(_config(**changes), str(tmp_path / "run"), for_training=True)
    assert not (tmp_path / "run").exists()  # the workdir is created only once everything else passed


def test_workdir_that_is_a_file_or_unwritable(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(preflight.PreflightError, match="is a file, not a directory"):
        preflight.check(_config(), str(tmp_path / "file"), for_training=True)
    with pytest.raises(preflight.PreflightError, match=r"cannot be written \(Not a directory\)"):
        preflight.check(_config(), str(tmp_path / "file" / "sub"), for_training=True)
    if os.geteuid() != 0:  # root writes anywhere
        (tmp_path / "ro").mkdir(mode=0o500)
        with pytest.raises(preflight.PreflightError, match="cannot be written"):
            preflight.check(_config(), str(tmp_path / "ro"), for_training=True)
    with pytest.raises(preflight.PreflightError, match="no such directory \\(a typo\\?\\)"):
        preflight.check(_config(), str(tmp_path / "typo"), for_training=False)
    assert not (tmp_path / "typo").exists()


def test_missing_spin_images_are_listed_before_the_dataset_is_built(tmp_path):
    manual = tmp_path / "manual"
    (manual / "coco" / "train2014").mkdir(parents=True)
    (manual / "coco" / "train2014" / "a.jpg").write_bytes(b"")
    np.savez(manual / "coco_2014_train_eft.npz", imgname=np.array(["train2014/a.jpg", "train2014/b.jpg"]),
             center=np.ones((2, 2)), scale=np.ones(2))
    config = _config(**{"data.train": {"coco": 1.0}, "data.manual_dir": str(manual),
                        "data.data_dir": str(tmp_path / "data")})
    with pytest.raises(preflight.PreflightError, match=r"dataset 'coco': 1 images named by coco_2014_train_eft.npz "
                       r"are missing under .*manual/coco, e.g. train2014/b.jpg"):
        preflight.check(config, str(tmp_path / "run"), for_training=True)
    config = _config(**{"data.train": {"coco": 1.0}, "data.manual_dir": str(tmp_path / "nowhere")})
    with pytest.raises(preflight.PreflightError, match="dataset 'coco' is not built yet and config.data.manual_dir"):
        preflight.check(config, str(tmp_path / "run"), for_training=True)


def _one_error_line(result, message):
    assert result.returncode == 2, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--config=configs/nonexistent.py"], "cannot load --config: "),
    (["--config=configs/synthetic.py:smoke", "--config.optim.learning_rate=1"],
     "unknown config key \"'learning_rate'\" in --config.optim.learning_rate=1"),
    (["--config=configs/synthetic.py:smoke", "--config.batch_size=0"], "config.batch_size=0 must be positive"),
])
def test_run_py_bad_command_lines(args, message, tmp_path):
    result = subprocess.run([sys.executable, "run.py", *args, f"--workdir={tmp_path / 'run'}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    _one_error_line(result, message)
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_a_mistyped_workdir_and_names_a_corrupt_checkpoint(tmp_path):
    import jax.numpy as jnp

    from pare_jax import checkpoint
    base = [sys.executable, "-m", "pare_jax.evaluate", "--config=configs/synthetic.py:smoke"]
    result = subprocess.run(base + [f"--workdir={tmp_path / 'typo'}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    _one_error_line(result, "typo: no such directory (a typo?)")
    assert not (tmp_path / "typo").exists()
    ckpt = checkpoint.Checkpoints(tmp_path / "run", 2, 1)
    ckpt.save(2, {"w": jnp.zeros(5000)}, {"step": 2}, force=True)
    ckpt.close()
    data = [os.path.join(r, n) for r, _, names in os.walk(tmp_path / "run" / "checkpoints" / "2") for n in names
            if n != checkpoint.DIGEST_FILE]
    victim = max(data, key=os.path.getsize)
    with open(victim, "r+b") as fh:
        fh.write(b"\xff" * 64)
    result = subprocess.run(base + [f"--workdir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=300)
    _one_error_line(result, f"no intact checkpoint in {tmp_path / 'run' / 'checkpoints'}: run/checkpoints/2 has a "
                            "corrupt")
