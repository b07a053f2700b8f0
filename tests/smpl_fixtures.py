"""Random but valid SMPL-format bodies for tests, written the way the official files are.

The official .pkl files are Python 2 pickles with chumpy arrays and a scipy sparse J_regressor. We reproduce that
structure without chumpy: stand-in classes registered under chumpy's and scipy's old module paths only while
pickling, so the bytes name exactly the globals an official file names.
"""
import contextlib
import pickle
import sys
import types

import numpy as np

from smpl_jax.joints import SMPL_PARENTS


def random_smpl_arrays(seed=0, num_vertices=6890, num_betas=10, num_faces=None):
    """Dict in smplx's key layout: v_template [V,3], shapedirs [V,3,S], posedirs [V,3,207], J_regressor [24,V],
    weights [V,24], kintree_table [2,24], f [F,3]. Valid: weights and regressor rows are convex combinations."""
    rng = np.random.default_rng(seed)
    v = num_vertices
    template = rng.uniform(-0.8, 0.8, (v, 3)) * np.array([0.4, 1.0, 0.2])
    weights = np.zeros((v, 24))
    for i in range(v):  # each vertex bound to 1-4 joints, as in real skinning weights
        k = rng.integers(1, 5)
        idx = rng.choice(24, size=k, replace=False)
        weights[i, idx] = rng.dirichlet(np.ones(k))
    j_reg = np.zeros((24, v))
    for j in range(24):
        idx = rng.choice(v, size=8, replace=False)
        j_reg[j, idx] = rng.dirichlet(np.ones(8))
    num_faces = num_faces or 2 * v - 4
    faces = np.stack([rng.choice(v, size=3, replace=False) for _ in range(num_faces)]).astype(np.uint32)
    kintree = np.stack([np.array(SMPL_PARENTS, dtype=np.int64) % (2 ** 32), np.arange(24)]).astype(np.uint32)
    # Values exactly representable in float32: smplx stores its buffers through float32 even in float64 mode,
    # so float64 parity at 1e-9 needs the data itself to agree.
    f32 = lambda x: x.astype(np.float32).astype(np.float64)  # noqa: E731
    return {
        "v_template": f32(template),
        "shapedirs": f32(rng.normal(0, 0.02, (v, 3, num_betas))),
        "posedirs": f32(rng.normal(0, 0.01, (v, 3, 207))),
        "J_regressor": f32(j_reg),
        "weights": f32(weights),
        "kintree_table": kintree,
        "f": faces,
    }


class _FakeCh:
    def __init__(self, x):
        self.x = x

    def __getstate__(self):
        return {"x": self.x, "_depends_on_deps": {}, "_dirty_vars": set(), "_itr": None}


class _FakeCsc:
    def __init__(self, dense):
        cols = [np.flatnonzero(dense[:, c]) for c in range(dense.shape[1])]
        self.indptr = np.concatenate([[0], np.cumsum([len(c) for c in cols])]).astype(np.int32)
        self.indices = np.concatenate(cols).astype(np.int32)
        self.data = np.concatenate([dense[c, i] for i, c in enumerate(cols)])
        self.shape = dense.shape

    def __getstate__(self):
        return {"data": self.data, "indices": self.indices, "indptr": self.indptr, "_shape": self.shape,
                "format": "csc", "maxprint": 50}


@contextlib.contextmanager
def _fake_modules():
    names = {"chumpy": None, "chumpy.ch": ("Ch", _FakeCh), "scipy.sparse.csc": ("csc_matrix", _FakeCsc)}
    saved = {n: sys.modules.get(n) for n in names}
    try:
        for name, entry in names.items():
            mod = types.ModuleType(name)
            if entry:
                cls_name, cls = entry
                cls.__module__, cls.__qualname__, cls.__name__ = name, cls_name, cls_name
                setattr(mod, cls_name, cls)
            sys.modules[name] = mod
        yield
    finally:
        for name, mod in saved.items():
            if mod is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = mod


def write_official_pkl(path, arrays):
    """Write arrays (smplx layout) as an official-style SMPL .pkl: protocol 2, chumpy shapedirs, sparse
    J_regressor, uint32 root parent, plus the extra keys the official files carry."""
    data = dict(arrays)
    data["shapedirs"] = _FakeCh(arrays["shapedirs"])
    data["J_regressor"] = _FakeCsc(arrays["J_regressor"])
    data["J_regressor_prior"] = _FakeCsc(arrays["J_regressor"])
    data["J"] = arrays["J_regressor"] @ arrays["v_template"]
    data["bs_style"], data["bs_type"] = "lbs", "lrotmin"
    data["weights_prior"] = arrays["weights"]
    with _fake_modules(), open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=2)


def write_npz(path, arrays):
    """smplx-readable .npz with the official key names."""
    np.savez(path, **arrays)


def write_crafted_pkl(path, arrays, **replacements):
    """An official-style .pkl whose values are replaced (e.g. by fake_chumpy / fake_sparse objects or crafted
    reducers), to test how the loader treats damaged or hostile files."""
    data = dict(arrays, **replacements)
    with _fake_modules(), open(path, "wb") as fh:
        pickle.dump(data, fh, protocol=2)


fake_chumpy, fake_sparse = _FakeCh, _FakeCsc
