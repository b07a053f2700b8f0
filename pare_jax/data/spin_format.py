"""The SPIN/PARE preprocessed format: one .npz per split plus the image folders. Reading, validation, cropping.

npz keys (N samples; only imgname, center and scale are required, the others default to "not annotated"):

| key       | shape        | meaning |
|-----------|--------------|---------|
| imgname   | [N] str      | image path relative to the dataset's image root |
| center    | [N, 2]       | person box centre, pixels |
| scale     | [N]          | person box side / 200 |
| part      | [N, 24, 3]   | the 24 ground-truth 2D keypoints (SPIN order), pixels + confidence |
| openpose  | [N, 25, 3]   | OpenPose-order 2D keypoints, pixels + confidence |
| S         | [N, 24, 4]   | 3D joints (metres, camera axes) + confidence |
| pose      | [N, 72]      | SMPL axis-angle, global orientation in camera axes |
| shape     | [N, 10]      | SMPL betas |
| has_smpl  | [N]          | 1 where pose/shape are valid (default: 1 if the file has pose, else 0) |
| gender    | [N] str      | 'm' / 'f' (3DPW); absent for neutral fits |

`read_annotations` returns a dict of arrays with every key filled in, `crop_image` cuts the stored crop
(box plus margin) out of an image.
"""
import logging
import os

import numpy as np

from pare_jax.data.schema import NUM_GT_JOINTS

log = logging.getLogger(__name__)

REQUIRED_KEYS = ("imgname", "center", "scale")
# key -> trailing shape; every key is [N, ...].
KEY_SHAPES = {"center": (2,), "scale": (), "part": (NUM_GT_JOINTS, 3), "openpose": (25, 3),
              "S": (NUM_GT_JOINTS, 4), "pose": (72,), "shape": (10,), "has_smpl": (), "gender": ()}


class SpinFormatError(ValueError):
    """A SPIN/PARE-format file is missing or malformed; the message names the file and the fix."""


def read_annotations(npz_path):
    """Load and validate one SPIN/PARE npz. Returns a dict with imgname [N] str, center [N, 2], scale [N],
    part [N, 24, 3], openpose [N, 25, 3], S [N, 24, 4], pose [N, 72], shape [N, 10] (float32),
    has_smpl [N] float32, has_joints3d [N] float32, gender [N] int32 (0 male, 1 female, -1 unknown)."""
    npz_path = os.fspath(npz_path)
    try:
        with np.load(npz_path, allow_pickle=False) as data:
            raw = {key: data[key] for key in data.files}
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated zips (BadZipFile, EOFError), pickled objects (ValueError), ...
        raise SpinFormatError(f"{npz_path}: cannot read it as a .npz without pickles ({type(exc).__name__}: "
                              f"{exc}); a truncated copy? Re-copy it, or re-save it with numpy.savez using plain "
                              "arrays (strings as a unicode array, not objects)") from None
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise SpinFormatError(f"{npz_path}: missing required keys {missing}; a SPIN/PARE npz has at least "
                              f"{list(REQUIRED_KEYS)} (found {sorted(raw)})")
    num = len(raw["imgname"])
    for key, trailing in KEY_SHAPES.items():
        if key in raw and tuple(raw[key].shape) != (num,) + trailing:
            raise SpinFormatError(f"{npz_path}: '{key}' has shape {tuple(raw[key].shape)}, expected "
                                  f"{(num,) + trailing} (N = {num} from 'imgname')")
    bad = np.nonzero(~(np.asarray(raw["scale"], np.float64) > 0) | ~np.isfinite(raw["center"]).all(-1))[0]
    if len(bad):
        raise SpinFormatError(f"{npz_path}: {len(bad)} rows have a non-positive or non-finite box (scale / center), "
                              f"e.g. rows {bad[:10].tolist()}; drop them from the file")
    return _drop_non_finite_labels(_fill_defaults(raw, num), npz_path)


# label key -> (the flag or confidence that marks it as absent)
_LABEL_FLAGS = {"pose": "has_smpl", "shape": "has_smpl", "part": None, "openpose": None, "S": "has_joints3d"}


def _drop_non_finite_labels(out, npz_path):
    """NaN or infinite labels would turn every loss they reach into NaN: such a label is marked absent (flag or
    keypoint confidence 0, values 0) and the rows are reported by name, never used silently."""
    for key, flag in _LABEL_FLAGS.items():
        bad = ~np.isfinite(out[key])
        if not bad.any():
            continue
        rows = np.flatnonzero(bad.reshape(len(bad), -1).any(-1))
        if flag is None:  # keypoints: drop only the joints with a non-finite coordinate
            joints = bad.any(-1)
            out[key][joints] = 0.0
        else:
            out[key][rows] = 0.0
            out[flag][rows] = 0.0
            if key == "S":
                out["S"][rows, :, 3] = 0.0
        log.warning("%s: '%s' has non-finite values in %d rows (e.g. %s, imgname %s); those labels are treated "
                    "as absent", npz_path, key, len(rows), rows[:5].tolist(), out["imgname"][rows[0]])
    return out


def _fill_defaults(raw, num):
    f32 = lambda key, shape: (np.asarray(raw[key], np.float32) if key in raw  # noqa: E731
                              else np.zeros((num,) + shape, np.float32))
    out = {"imgname": np.asarray([str(name) for name in raw["imgname"]]),
           "center": f32("center", (2,)), "scale": f32("scale", ())}
    for key in ("part", "openpose", "S", "pose", "shape"):
        out[key] = f32(key, KEY_SHAPES[key])
    if "has_smpl" in raw:
        out["has_smpl"] = (np.asarray(raw["has_smpl"]) > 0).astype(np.float32)
    else:
        out["has_smpl"] = np.full(num, 1.0 if "pose" in raw else 0.0, np.float32)
    out["has_joints3d"] = (out["S"][..., 3].sum(-1) > 0).astype(np.float32)
    out["gender"] = parse_gender(raw.get("gender"), num)
    return out


def parse_gender(values, num):
    """'m'/'male' -> 0, 'f'/'female' -> 1, anything else (or no key) -> -1. Returns [N] int32."""
    if values is None:
        return np.full(num, -1, np.int32)
    codes = {"m": 0, "male": 0, "f": 1, "female": 1}
    return np.asarray([codes.get(str(v).strip().lower(), -1) for v in values], np.int32)


def missing_files(root, names):
    """Paths under root (relative names) that do not exist, in input order, without duplicates."""
    seen, missing = set(), []
    for name in names:
        if name not in seen:
            seen.add(name)
            if not os.path.isfile(os.path.join(root, name)):
                missing.append(name)
    return missing


def describe_missing(what, root, paths, limit=20):
    """A readable list of missing files for an error message."""
    shown = "\n  ".join(os.path.join(root, p) for p in paths[:limit])
    more = f"\n  ... and {len(paths) - limit} more" if len(paths) > limit else ""
    return f"{len(paths)} {what} missing under {root}:\n  {shown}{more}"


def load_image(path):
    """RGB uint8 [H, W, 3]. Raises OSError for a missing, truncated or undecodable file."""
    from PIL import Image
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError) as exc:  # PIL signals corrupt data with all three
        raise OSError(f"{path}: not a readable image ({exc})") from exc


def crop_box(center, scale, crop_margin):
    """(x0, y0, side) of the stored crop in original pixels: the box of side 200 * scale, times the margin."""
    side = 200.0 * float(scale) * crop_margin
    return float(center[0]) - side / 2, float(center[1]) - side / 2, side


def crop_image(image, center, scale, size, crop_margin):
    """Stored crop [size, size, 3] uint8 of image [H, W, 3] around the box (center [2], scale), with the margin.
    Outside the image is black (as in SPIN). Antialiased when shrinking."""
    from PIL import Image
    if float(scale) <= 0:
        raise ValueError(f"box scale must be positive, got {scale}")
    x0, y0, side = crop_box(center, scale, crop_margin)
    # PIL's resize box must lie inside the image, so pad first with an integer crop (which fills with black).
    ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
    ix1, iy1 = int(np.ceil(x0 + side)), int(np.ceil(y0 + side))
    padded = Image.fromarray(image).crop((ix0, iy0, ix1, iy1))
    box = (x0 - ix0, y0 - iy0, x0 - ix0 + side, y0 - iy0 + side)
    return np.asarray(padded.resize((size, size), Image.BILINEAR, box=box))


def normalize_keypoints(keypoints, center, scale):
    """Pixel keypoints [..., K, 3] (x, y, conf) -> box-normalised (box = [-1, 1]) with the confidence kept.
    center [..., 2], scale [...]."""
    half = 100.0 * np.asarray(scale, np.float32)[..., None, None]
    xy = (keypoints[..., :2] - np.asarray(center, np.float32)[..., None, :]) / half
    return np.concatenate([xy, keypoints[..., 2:3]], axis=-1).astype(np.float32)


def keypoints49(annotations):
    """SPIN's 49 keypoints [N, 49, 3] in pixels: OpenPose 25 then the 24 ground-truth joints."""
    return np.concatenate([annotations["openpose"], annotations["part"]], axis=1)
