"""Loading SMPL files: official-style pickles without chumpy, refusal of malicious pickles, clear errors."""
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

import smpl_jax
from smpl_fixtures import random_smpl_arrays, write_npz, write_official_pkl
from smpl_jax.convert import main as convert_main
from smpl_jax.io import ModelFileError, read_model_arrays

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def small_arrays():
    return random_smpl_arrays(seed=3, num_vertices=300)


def test_official_pkl_and_npz_give_the_same_arrays(tmp_path, small_arrays):
    write_official_pkl(tmp_path / "m.pkl", small_arrays)
    write_npz(tmp_path / "m.npz", small_arrays)
    from_pkl, from_npz = read_model_arrays(tmp_path / "m.pkl"), read_model_arrays(tmp_path / "m.npz")
    assert sorted(from_pkl) == sorted(from_npz)
    for key in from_pkl:
        np.testing.assert_array_equal(from_pkl[key], from_npz[key], err_msg=key)
    np.testing.assert_array_equal(from_pkl["J_regressor"], small_arrays["J_regressor"])  # sparse -> dense
    np.testing.assert_array_equal(from_pkl["shapedirs"], small_arrays["shapedirs"])  # chumpy -> ndarray
    assert from_pkl["parents"][0] == -1 and from_pkl["parents"].dtype == np.int32


def test_pkl_names_only_the_globals_of_an_official_file(tmp_path, small_arrays):
    """The fixture must exercise the stand-ins: the pickle names chumpy and old scipy paths."""
    write_official_pkl(tmp_path / "m.pkl", small_arrays)
    raw = (tmp_path / "m.pkl").read_bytes()
    assert b"chumpy.ch" in raw and b"scipy.sparse.csc" in raw
    assert "chumpy" not in sys.modules


def test_v11_with_300_betas_and_truncation(tmp_path):
    arrays = random_smpl_arrays(seed=4, num_vertices=200, num_betas=300)
    write_official_pkl(tmp_path / "v11.pkl", arrays)
    assert smpl_jax.load(tmp_path / "v11.pkl").num_betas == 300
    body = smpl_jax.load(tmp_path / "v11.pkl", num_betas=10)
    assert body.num_betas == 10 and body.shapedirs.shape == (10, 600)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload", ["system", "eval", "numpy_gadget"])
def test_malicious_pickle_is_refused_without_running_code(tmp_path, small_arrays, payload):
    marker = tmp_path / "pwned"
    evil = {"system": _Evil(str(marker)), "eval": _EvalEvil(),
            "numpy_gadget": np.testing.assert_equal}[payload]
    data = dict(small_arrays, v_template=evil)
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump(data, fh, protocol=2)
    with pytest.raises(ModelFileError, match="refused to load"):
        smpl_jax.load(tmp_path / "evil.pkl")
    assert not marker.exists()


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(ModelFileError, match=r"nope\.pkl: no such file.*smpl_jax\.load\('open'\)"):
        smpl_jax.load(tmp_path / "nope.pkl")


def test_not_a_model_file(tmp_path):
    with open(tmp_path / "list.pkl", "wb") as fh:
        pickle.dump([1, 2, 3], fh, protocol=2)
    with pytest.raises(ModelFileError, match="expected a dict"):
        smpl_jax.load(tmp_path / "list.pkl")
    (tmp_path / "garbage.pkl").write_bytes(b"\x80\x02not really a pickle")
    with pytest.raises(ModelFileError, match="garbage.pkl: not a readable pickle"):
        smpl_jax.load(tmp_path / "garbage.pkl")


def test_missing_key_and_wrong_shape_are_named(tmp_path, small_arrays):
    write_npz(tmp_path / "nokey.npz", {k: v for k, v in small_arrays.items() if k != "weights"})
    with pytest.raises(ModelFileError, match=r"nokey.npz: not an SMPL model file: missing key\(s\) \['weights'\]"):
        smpl_jax.load(tmp_path / "nokey.npz")
    write_npz(tmp_path / "shape.npz", dict(small_arrays, posedirs=small_arrays["posedirs"][:, :, :100]))
    with pytest.raises(ModelFileError, match=r"shape.npz: key 'posedirs' has shape \[300, 3, 100\], expected"):
        smpl_jax.load(tmp_path / "shape.npz")


def test_npz_with_pickled_objects_is_refused(tmp_path, small_arrays):
    np.savez(tmp_path / "obj.npz", **dict(small_arrays, weights=np.array([{"a": 1}], dtype=object)))
    with pytest.raises(ModelFileError, match="pickled objects"):
        smpl_jax.load(tmp_path / "obj.npz")


def test_regressor_files_are_checked(tmp_path, small_arrays):
    write_npz(tmp_path / "m.npz", small_arrays)
    np.save(tmp_path / "bad.npy", np.zeros((9, 10)))
    with pytest.raises(ModelFileError, match=r"bad.npy: the SPIN extra joint regressor has shape \[9, 10\]"):
        smpl_jax.load(tmp_path / "m.npz", extra_regressor=tmp_path / "bad.npy")


def test_convert_command_round_trip(tmp_path, small_arrays):
    write_official_pkl(tmp_path / "m.pkl", small_arrays)
    extra = np.random.default_rng(0).dirichlet(np.ones(300), size=9)
    np.save(tmp_path / "extra.npy", extra)
    assert convert_main([str(tmp_path / "m.pkl"), str(tmp_path / "m.npz"),
                         "--extra-regressor", str(tmp_path / "extra.npy")]) == 0
    with np.load(tmp_path / "m.npz", allow_pickle=False) as clean:
        np.testing.assert_array_equal(clean["extra_regressor"], extra)
    a, b = read_model_arrays(tmp_path / "m.pkl"), read_model_arrays(tmp_path / "m.npz")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")]


def test_convert_command_fails_cleanly_and_leaves_no_output(tmp_path):
    (tmp_path / "bad.pkl").write_bytes(b"junk")
    result = subprocess.run([sys.executable, "-m", "smpl_jax.convert", str(tmp_path / "bad.pkl"),
                             str(tmp_path / "out.npz")], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 2
    assert "bad.pkl: not a readable pickle" in result.stderr
    assert not (tmp_path / "out.npz").exists()


def test_smpl_jax_imports_only_jax_and_numpy():
    code = ("import sys, smpl_jax; bad = sorted({m.split('.')[0] for m in sys.modules} & "
            "{'flax', 'tensorflow', 'torch', 'pare_jax', 'scipy', 'chumpy', 'smplx'}); print(bad)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
