"""Convert an SMPL-format model file (official .pkl, with or without chumpy installed) to a clean .npz.

    python -m smpl_jax.convert SMPL_NEUTRAL.pkl smpl_neutral.npz [--extra-regressor J_regressor_extra.npy]
                                                                  [--h36m-regressor J_regressor_h36m.npy]

The .npz holds plain arrays only (no pickles), loads faster and can be read with allow_pickle=False. The regressors
from the SPIN/PARE data can be stored in it so that smpl_jax.load needs one path.
"""
import argparse
import sys

import numpy as np

from smpl_jax.io import ModelFileError, load_matrix, read_model_arrays, write_npz_atomic


def convert(src, dst, extra_regressor=None, h36m_regressor=None, num_betas=None):
    """Read src, optionally attach regressors, write dst atomically. Returns the dict written."""
    arrays = read_model_arrays(src)
    num_v = arrays["v_template"].shape[0]
    if extra_regressor:
        arrays["extra_regressor"] = load_matrix(extra_regressor, "SPIN extra joint regressor", num_v)
    if h36m_regressor:
        arrays["h36m_regressor"] = load_matrix(h36m_regressor, "H36M joint regressor", num_v)
    if num_betas:
        arrays["shapedirs"] = arrays["shapedirs"][:, :, :num_betas]
    if not str(dst).endswith(".npz"):
        raise ModelFileError(f"{dst}: the output must end in .npz")
    write_npz_atomic(dst, {k: np.asarray(v) for k, v in arrays.items()})
    return arrays


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m smpl_jax.convert", description=__doc__.splitlines()[0])
    parser.add_argument("src", help="SMPL model file (.pkl or .npz)")
    parser.add_argument("dst", help="output .npz")
    parser.add_argument("--extra-regressor", help="J_regressor_extra.npy [9, V] from the SPIN/PARE data")
    parser.add_argument("--h36m-regressor", help="J_regressor_h36m.npy [17, V] from the SPIN/PARE data")
    parser.add_argument("--num-betas", type=int, help="keep only the first shape components")
    args = parser.parse_args(argv)
    try:
        arrays = convert(args.src, args.dst, args.extra_regressor, args.h36m_regressor, args.num_betas)
    except (ModelFileError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.dst}: {arrays['v_template'].shape[0]} vertices, {arrays['faces'].shape[0]} faces, "
          f"{arrays['shapedirs'].shape[2]} shape components, keys {sorted(arrays)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
