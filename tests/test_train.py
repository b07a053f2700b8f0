"""End-to-end training: every config's smoke variant, exact resume after SIGKILL, data parallelism, NaN safety."""
import glob
import importlib
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The smoke variants' synthetic dataset, built once for the module (64 px, 28 examples)."""
    from pare_jax import inputs
    directory = str(tmp_path_factory.mktemp("datasets"))
    config = _config("synthetic", directory)
    inputs.prepared_folder(config, "synthetic")
    return directory


def _config(name, data_dir):
    """name: a config file, or "file:variant" for a smoke variant other than "smoke"."""
    module, _, variant = name.partition(":")
    config = importlib.import_module(f"configs.{module}").get_config(variant or "smoke")
    config.unlock()
    config.data.data_dir = data_dir
    config.lock()
    return config


@pytest.mark.parametrize("name", ["synthetic", "synthetic:hmr_smoke", "synthetic:dsed_smoke", "synthetic:mhsa_smoke",
                                  "synthetic:conorm_smoke", "synthetic:lasor_smoke", "pare_hrnet", "pare_r50",
                                  "hmr_r50"])
def test_smoke_variant_trains_and_evaluates(name, data_dir, tmp_path):
    from pare_jax import train
    config = _config(name, data_dir)
    results = train.train_and_evaluate(config, str(tmp_path))
    summary = results["synthetic:test"]
    assert summary["num_samples"] == 6
    assert all(np.isfinite(summary[k]) for k in ("mpjpe", "pa_mpjpe", "pve"))
    assert summary["pa_mpjpe"] <= summary["mpjpe"] + 1e-3
    assert all(np.isfinite(summary[f"{k}_se"]) for k in ("mpjpe", "pa_mpjpe", "pve"))
    assert len(summary["per_joint_mpjpe"]) == 14
    assert (summary.get("part_miou") is None) == (config.model.head == "hmr")
    written = json.load(open(tmp_path / "eval" / "synthetic_test_latest.json"))
    assert written["step"] == config.num_steps and written["mpjpe"] == pytest.approx(summary["mpjpe"])
    assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    assert _final_params(tmp_path)[0] == config.num_steps


def test_resume_skips_a_garbled_checkpoint_and_still_ends_exactly(data_dir, tmp_path, caplog):
    """Checkpoints at steps 2 and 4; step 4's largest file garbled in place: the rerun names it, resumes from
    step 2 and ends with the parameters of the undamaged run."""
    from pare_jax import checkpoint, train
    config = _config("synthetic", data_dir)
    train.train_and_evaluate(config, str(tmp_path))
    _, params, opt = _final_params(tmp_path)
    step_dir = tmp_path / "checkpoints" / "4"
    files = [os.path.join(r, n) for r, _, names in os.walk(step_dir) for n in names if n != checkpoint.DIGEST_FILE]
    victim = max(files, key=os.path.getsize)
    with open(victim, "r+b") as fh:
        fh.seek(os.path.getsize(victim) // 3)
        fh.write(os.urandom(4096))
    train.train_and_evaluate(config, str(tmp_path))
    assert f"{tmp_path.name}/checkpoints/4 has a corrupt" in caplog.text
    assert (tmp_path / "checkpoints_corrupt" / "4").is_dir()
    step, params_b, opt_b = _final_params(tmp_path)
    assert step == 4
    for key in params:
        np.testing.assert_array_equal(params[key], params_b[key], err_msg=key)
    for key in opt:
        np.testing.assert_array_equal(opt[key], opt_b[key], err_msg=key)


def _final_params(workdir):
    """Parameters of the latest checkpoint in workdir, restored onto this process's first device (the run may
    have saved them sharded over another mesh)."""
    manager = ocp.CheckpointManager(
        os.path.join(workdir, "checkpoints"), options=ocp.CheckpointManagerOptions(read_only=True),
        item_handlers={"state": ocp.StandardCheckpointHandler(), "record": ocp.JsonCheckpointHandler()})
    step = manager.latest_step()
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    metadata = manager.item_metadata(step)["state"]
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
    restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target),
                                                             record=ocp.args.JsonRestore()))
    return step, _flat(restored.state["params"]), _flat(restored.state["opt_state"])


def _flat(tree):
    return {jax.tree_util.keystr(path): np.asarray(value) for path, value in jax.tree_util.tree_leaves_with_path(tree)}


def _run(workdir, data_dir, env=None):
    """run.py in a subprocess: the HMR smoke config (dropout RNG state must survive a restart too), global batch
    4, 6 steps, a checkpoint every 2, no evaluation."""
    command = [sys.executable, "run.py", "--config=configs/hmr_r50.py:smoke", f"--workdir={workdir}",
               f"--config.data.data_dir={data_dir}", "--config.num_steps=6", "--config.checkpoint.every=2",
               "--config.batch_size=4", "--config.data.eval=()"]
    return subprocess.Popen(command, cwd=ROOT, env=dict(os.environ, **(env or {})), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _finish(process):
    _, err = process.communicate(timeout=900)
    assert process.returncode == 0, err[-3000:]


@pytest.fixture(scope="module")
def reference_run(data_dir, tmp_path_factory):
    """An uninterrupted single-device run: final step and parameters."""
    workdir = tmp_path_factory.mktemp("reference")
    _finish(_run(workdir, data_dir))
    return _final_params(workdir)


def test_sigkill_at_a_random_moment_then_resume_gives_the_uninterrupted_result(data_dir, reference_run,
                                                                              tmp_path):
    process = _run(tmp_path, data_dir)
    deadline = time.time() + 900
    while not os.path.isdir(tmp_path / "checkpoints" / "2") and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 1.0))  # somewhere in steps 3-6, maybe mid-save
    process.send_signal(signal.SIGKILL)
    process.wait()
    _finish(_run(tmp_path, data_dir))  # resumes from the workdir
    (step_a, params_a, opt_a), (step_b, params_b, opt_b) = reference_run, _final_params(tmp_path)
    assert step_a == step_b == 6
    for key in params_a:
        np.testing.assert_array_equal(params_a[key], params_b[key], err_msg=key)
    for key in opt_a:
        np.testing.assert_array_equal(opt_a[key], opt_b[key], err_msg=key)


def test_four_devices_match_one_device(data_dir, reference_run, tmp_path):
    """The same global batch over a 4-device mesh (BatchNorm over the global batch) as on one device."""
    _finish(_run(tmp_path, data_dir, env={"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}))
    (_, one, opt_one), (_, four, opt_four) = reference_run, _final_params(tmp_path)
    # Adam's first moments are the accumulated gradients: they must agree to float32 rounding.
    for key in opt_one:
        if "mu" in key:
            error = np.linalg.norm(opt_four[key] - opt_one[key])
            assert error <= 1e-3 * np.linalg.norm(opt_one[key]) + 1e-12, key
    # Parameters: Adam divides by |g| + eps, which amplifies rounding where a gradient is ~0, so a few elements
    # may differ by up to one learning rate per step; nearly all must agree closely.
    max_update = 1e-4 * 6
    for key in one:
        diff = np.abs(four[key] - one[key])
        assert diff.max() <= max_update, key
        assert np.mean(diff > 1e-6) < 1e-2, key


def test_a_non_finite_step_changes_nothing_and_is_reported():
    import ml_collections
    from flax import nnx

    from pare_jax import schedules, train_step
    from pare_jax.models.pare import build_model
    from smpl_fixtures import random_smpl_arrays
    from smpl_jax import SMPL
    arrays = random_smpl_arrays(seed=0, num_vertices=200)
    rng = np.random.default_rng(0)
    body = SMPL.from_arrays(dict(arrays, keypoint_vertex_ids=rng.choice(200, 11, replace=False),
                                 extra_regressor=rng.dirichlet(np.ones(200), 9)))
    optim = ml_collections.ConfigDict(dict(lr=1e-3, schedule="constant", warmup_steps=0, b1=0.9, b2=0.999,
                                           grad_clip_norm=0.0))
    loss = ml_collections.ConfigDict(dict(weights=dict(keypoints_2d=1.0, keypoints_3d=1.0, pose=1.0, betas=1.0,
                                                       camera=1.0, part=0.0), part_until_step=-1))
    tx = schedules.optimizer(optim, 10)
    graphdef, state = train_step.init_train_state(
        build_model(dict(backbone="resnet_tiny", head="hmr", part_supervision="none"), rngs=nnx.Rngs(0)), tx)
    batch = {"img": jnp.full((2, 32, 32, 3), jnp.nan), "keypoints": jnp.zeros((2, 49, 3)),
             "joints3d": jnp.zeros((2, 24, 4)), "has_joints3d": jnp.ones(2), "pose": jnp.zeros((2, 72)),
             "betas": jnp.zeros((2, 10)), "has_smpl": jnp.ones(2)}
    step = jax.jit(train_step.make_train_step(graphdef, tx, loss, "none"))
    new_state, metrics = step(state, batch, body)
    assert not bool(metrics["finite"]) and int(new_state.step) == 1
    raw = lambda x: np.asarray(jax.random.key_data(x) if jnp.issubdtype(x.dtype, jax.dtypes.prng_key) else x)  # noqa
    for a, b in zip(jax.tree.leaves((state.params, state.rest, state.opt_state)),
                    jax.tree.leaves((new_state.params, new_state.rest, new_state.opt_state))):
        np.testing.assert_array_equal(raw(a), raw(b))


def test_driver_stops_after_too_many_non_finite_steps(tmp_path):
    from pare_jax import reporting, train
    reporter = reporting.Reporter(str(tmp_path), 100, 0)
    window = [{"finite": np.bool_(False), "loss": np.float32(np.nan)}] * 3
    assert train._report(reporter, 3, window, 0, max_nonfinite=5) == 3
    good = [{"finite": np.bool_(True), "loss": np.float32(1.0)}] + window[:2]
    assert train._report(reporter, 6, good, 3, max_nonfinite=5) == 2  # the run restarts after a good step
    with pytest.raises(FloatingPointError, match="consecutive training steps"):
        train._report(reporter, 9, window, 4, max_nonfinite=5)


def test_run_py_rejects_unknown_variants_and_arguments(tmp_path):
    result = subprocess.run([sys.executable, "run.py", "--config=configs/pare_hrnet.py:nonsense",
                             f"--workdir={tmp_path}"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "unknown variant 'nonsense'" in result.stderr and "Traceback" not in result.stderr
    result = subprocess.run([sys.executable, "run.py", "--config=configs/synthetic.py", f"--workdir={tmp_path}",
                             "stray"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "error: unexpected arguments ['stray']" in result.stderr


def test_evaluate_command_baseline_and_missing_checkpoint(data_dir, tmp_path):
    base = [sys.executable, "-m", "pare_jax.evaluate", "--config=configs/synthetic.py:smoke",
            f"--workdir={tmp_path}", f"--config.data.data_dir={data_dir}"]
    result = subprocess.run(base, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2 and "no checkpoint in" in result.stderr
    result = subprocess.run(base + ["--baseline=mean_pose"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.load(open(tmp_path / "eval" / "synthetic_test_mean_pose_baseline_latest.json"))
    assert record["num_samples"] == 6 and record["pa_mpjpe"] > 10.0
