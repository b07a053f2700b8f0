"""Occluders: procedural RGBA cut-outs (textured polygons and ellipses with soft, eroded borders), or the
user's own cut-outs from an .npz file.

    bank = make_occluder_bank(num=256, size=96, seed=0)       # [N, size, size, 4] uint8 RGBA
    bank = load_occluder_file("occluders.npz", size=96)       # same layout, from the user's cut-outs
    image, alpha = paste(image [H, W, 3] float, occluder [O, O, 4] uint8, centre (x, y), side)

PARE pastes Pascal VOC object cut-outs, which cannot be redistributed; these shapes play their part (the
paper's augmentation, and the synthetic dataset's occluded split). A bank stores each cut-out centred in a
square canvas with its longer side spanning the canvas, so that a "side" in pixels sizes it when pasted.

User file: an .npz whose arrays are either one stack [N, H, W, 4] or any number of single cut-outs [H, W, 4]
(ragged sizes are fine); uint8 RGBA, or float RGBA in [0, 1]; alpha 0 outside the object.
"""
import os

import numpy as np

from pare_jax.data import textures

SUPERSAMPLE = 4


class OccluderFileError(ValueError):
    """The user's occluder file is unusable; the message says what is wrong and what the file must hold."""


def random_shape_alpha(rng, size):
    """[size, size] float32 alpha in [0, 1]: a star-shaped polygon or an ellipse, randomly stretched and turned,
    with its border eroded by about a pixel and softened (as cut-out masks are)."""
    from PIL import Image, ImageDraw, ImageFilter
    big = size * SUPERSAMPLE
    if rng.uniform() < 0.5:
        count = int(rng.integers(3, 11))
        angles = np.sort(rng.uniform(0, 2 * np.pi, count))
        radii = rng.uniform(0.45, 1.0, count)
    else:
        angles = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radii = np.ones_like(angles)
    stretch, turn = rng.uniform(0.35, 1.0), rng.uniform(0, np.pi)
    x, y = radii * np.cos(angles), radii * np.sin(angles) * stretch
    x, y = x * np.cos(turn) - y * np.sin(turn), x * np.sin(turn) + y * np.cos(turn)
    extent = max(np.ptp(x), np.ptp(y))  # longer side spans the canvas
    x, y = (x - (x.max() + x.min()) / 2) / extent, (y - (y.max() + y.min()) / 2) / extent
    points = [(float(big / 2 + px * (big - 1)), float(big / 2 + py * (big - 1))) for px, py in zip(x, y)]
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).polygon(points, fill=255)
    coverage = mask.resize((size, size), Image.BOX).filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 1.5)))
    # Thresholding the blurred coverage above one half moves the border inwards (erodes) and leaves a soft ramp.
    return np.clip((np.asarray(coverage, np.float32) / 255.0 - 0.55) / 0.35, 0.0, 1.0)


def make_occluder_bank(num=256, size=96, seed=0):
    """[num, size, size, 4] uint8 RGBA procedural occluders, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    bank = np.zeros((num, size, size, 4), np.uint8)
    for i in range(num):
        rgb = textures.random_texture(rng, size, size)
        alpha = random_shape_alpha(rng, size)
        bank[i] = np.round(np.concatenate([rgb, alpha[..., None]], -1) * 255).astype(np.uint8)
    return bank


def load_occluder_file(path, size=96):
    """Read the user's RGBA cut-outs (see the module docstring) into a bank [N, size, size, 4] uint8."""
    path = os.fspath(path)
    expected = ("an .npz of RGBA cut-outs: one array [N, H, W, 4] or several arrays [H, W, 4], uint8 (or float in "
                "[0, 1]) with alpha 0 outside the object")
    if not os.path.isfile(path):
        raise OccluderFileError(f"occluder file {path} does not exist; it must be {expected}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as exc:
        raise OccluderFileError(f"{path}: cannot read it ({exc}); it must be {expected}") from exc
    cutouts = []
    for key, array in arrays.items():
        stack = array[None] if array.ndim == 3 else array
        if stack.ndim != 4 or stack.shape[-1] != 4 or min(stack.shape[1:3]) < 2:
            raise OccluderFileError(f"{path}: array '{key}' has shape {array.shape}; it must be {expected}")
        array = stack
        cutouts.extend(_as_uint8(path, key, a) for a in array)
    if not cutouts:
        raise OccluderFileError(f"{path} holds no arrays; it must be {expected}")
    empty = [i for i, c in enumerate(cutouts) if c[..., 3].max() == 0]
    if empty:
        raise OccluderFileError(f"{path}: cut-outs {empty[:10]} have an all-zero alpha channel (nothing to "
                                "paste); alpha must be > 0 on the object")
    return np.stack([_fit_square(c, size) for c in cutouts])


def _as_uint8(path, key, array):
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating) and np.isfinite(array).all() and 0 <= array.min() and \
            array.max() <= 1:
        return np.round(array * 255).astype(np.uint8)
    raise OccluderFileError(f"{path}: array '{key}' is {array.dtype} with values outside [0, 1] or non-finite; "
                            "use uint8 RGBA, or float RGBA in [0, 1]")


def _fit_square(cutout, size):
    """Resize a cut-out [h, w, 4] so its longer side is `size`, centred on a transparent square canvas."""
    from PIL import Image
    h, w = cutout.shape[:2]
    scale = size / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    # Premultiply so transparent pixels' colours do not bleed into the border when resampling.
    premultiplied = cutout.astype(np.float32)
    premultiplied[..., :3] *= premultiplied[..., 3:] / 255.0
    channels = [np.asarray(Image.fromarray(premultiplied[..., c]).resize((new_w, new_h), Image.BILINEAR))
                for c in range(4)]
    resized = np.stack(channels, -1)
    resized[..., :3] /= np.maximum(resized[..., 3:], 1e-3) / 255.0
    canvas = np.zeros((size, size, 4), np.float32)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    canvas[top:top + new_h, left:left + new_w] = resized
    return np.clip(np.round(canvas), 0, 255).astype(np.uint8)


def paste(image, occluder, centre, side):
    """Alpha-composite one occluder onto image [H, W, 3] float in [0, 1], centred at `centre` (x, y pixels,
    continuous) with its canvas `side` pixels wide. Returns (image [H, W, 3], alpha [H, W] of this occluder)."""
    from PIL import Image
    height, width = image.shape[:2]
    side = max(int(round(side)), 2)
    x0, y0 = int(round(centre[0] - side / 2)), int(round(centre[1] - side / 2))
    resized = np.asarray(Image.fromarray(occluder).resize((side, side), Image.BILINEAR), np.float32) / 255.0
    alpha = np.zeros((height, width), np.float32)
    rgb = np.zeros((height, width, 3), np.float32)
    ty0, tx0, ty1, tx1 = max(y0, 0), max(x0, 0), min(y0 + side, height), min(x0 + side, width)
    if ty0 >= ty1 or tx0 >= tx1:
        return image, alpha
    patch = resized[ty0 - y0:ty1 - y0, tx0 - x0:tx1 - x0]
    alpha[ty0:ty1, tx0:tx1], rgb[ty0:ty1, tx0:tx1] = patch[..., 3], patch[..., :3]
    return image * (1 - alpha[..., None]) + rgb * alpha[..., None], alpha
