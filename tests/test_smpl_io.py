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


class _ObjectDtypeWithoutFlags:
    """numpy.dtype('O8') pickled with flags 0: numpy would then believe the array holds no objects and read its
    data bytes as pointers (a segfault). Built only from allowlisted names: numpy.dtype."""
    def __reduce__(self):
        return np.dtype, ("O8", False, True), (3, "|", None, None, None, -1, -1, 0)


class _ArrayOf:
    """An ndarray as numpy pickles one (_reconstruct + state), with a chosen dtype object and raw bytes."""
    def __init__(self, dtype, data, shape):
        self.dtype, self.data, self.shape = dtype, data, shape

    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct
        return _reconstruct, (np.ndarray, (0,), b"b"), (1, self.shape, self.dtype, False, self.data)


def test_object_dtype_array_from_allowlisted_names_is_refused_not_dereferenced(tmp_path, small_arrays, capsys):
    from smpl_fixtures import write_crafted_pkl
    path = tmp_path / "pointers.pkl"
    write_crafted_pkl(path, small_arrays, v_template=_ArrayOf(_ObjectDtypeWithoutFlags(), b"\x41" * 8 * 900,
                                                              (300, 3)))
    assert b"numpy\ndtype" in path.read_bytes() and b"_reconstruct" in path.read_bytes()
    with pytest.raises(ModelFileError, match=r"pointers.pkl: key 'v_template' has dtype 'O8' \(kind 'O'\)"):
        smpl_jax.load(path)
    assert convert_main([str(path), str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "dtype 'O8'" in err
    assert sorted(os.listdir(tmp_path)) == ["pointers.pkl"]  # no output, no temporary


def test_array_bytes_must_match_shape_and_dtype(tmp_path, small_arrays):
    from smpl_fixtures import write_crafted_pkl
    short = _ArrayOf(np.dtype("f8"), b"\0" * 8, (300, 3))
    write_crafted_pkl(tmp_path / "short.pkl", small_arrays, v_template=short)
    with pytest.raises(ModelFileError, match="'v_template' is a numpy array whose data does not match"):
        smpl_jax.load(tmp_path / "short.pkl")


def _damaged(small_arrays, what):
    """(file kind, replacements) of a damaged model file, and the message expected."""
    from smpl_fixtures import fake_chumpy, fake_sparse
    a = small_arrays
    loop = fake_chumpy(None)
    loop.x = loop
    huge = fake_sparse(a["J_regressor"])
    huge.shape = (10 ** 12, 24)  # csc: 10^12 columns' worth of index pointers claimed
    nested = 0.0
    for _ in range(5000):
        nested = [nested]
    nan = a["v_template"].copy()
    nan[5, 1] = np.nan
    inf = a["weights"].copy()
    inf[0, 0] = np.inf
    cases = {
        "empty_parents": (dict(kintree_table=np.zeros((2, 0), np.int64)), "key 'parents' has shape"),
        "string_array": (dict(v_template=np.array(["a", "b"])), "key 'v_template' (holds <U1 values|has dtype 'U1')"),
        "zero_d": (dict(shapedirs=np.array(1.0)), "key 'shapedirs' is a single number"),
        "nan": (dict(v_template=nan), "key 'v_template' contains 1 NaN or infinite values"),
        "inf": (dict(weights=inf), "key 'weights' contains 1 NaN or infinite values"),
        "keypoint_ids_out_of_range": (dict(keypoint_vertex_ids=np.array([0, 300])),
                                      r"key 'keypoint_vertex_ids' indexes vertices outside \[0, 300\)"),
        "keypoint_ids_negative": (dict(keypoint_vertex_ids=np.array([-1, 2])),
                                  "key 'keypoint_vertex_ids' indexes vertices outside"),
        "huge_sparse": (dict(J_regressor=huge), "key 'J_regressor' is a sparse matrix of shape"),
        "self_referencing_chumpy": (dict(shapedirs=loop), "key 'shapedirs' nests chumpy objects"),
        "deeply_nested_list": (dict(weights=nested), "(key 'weights' is not an array of numbers|not a readable pickle)"),
    }
    return cases[what]


@pytest.mark.parametrize("what", ["empty_parents", "string_array", "zero_d", "nan", "inf",
                                  "keypoint_ids_out_of_range", "keypoint_ids_negative", "huge_sparse",
                                  "self_referencing_chumpy", "deeply_nested_list"])
def test_damaged_model_files_are_refused_by_key(tmp_path, small_arrays, what):
    from smpl_fixtures import write_crafted_pkl
    replacements, message = _damaged(small_arrays, what)
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(20000)  # the pickler recurses into the nested list
    try:
        write_crafted_pkl(tmp_path / "m.pkl", small_arrays, **replacements)
    finally:
        sys.setrecursionlimit(limit)
    with pytest.raises(ModelFileError, match=message):
        read_model_arrays(tmp_path / "m.pkl")
    if what not in ("huge_sparse", "self_referencing_chumpy", "deeply_nested_list"):  # npz can hold these too
        write_npz(tmp_path / "m.npz", dict(small_arrays, **replacements))
        with pytest.raises(ModelFileError, match=message):
            read_model_arrays(tmp_path / "m.npz")
