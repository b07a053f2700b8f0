"""OCHMR's body-centre context maps (CoNorm's input), one definition for the datasets, evaluation and the demo.

Two channels at the crop: the *local* map, a Gaussian at the target's body centre, and the *global* map, the
pixelwise maximum of the Gaussians of every person in the crop (the target included), values in [0, 1].
OCHMR's main paper defines its centre maps after ROMP; the supplement we follow does not restate them, so
pare_jax fixes its own, stated here and used everywhere:

- centre: the mean of the four torso joints (left / right hip, left / right shoulder) projected into the
  image; where no body is known (a detector box only, as in the demo), the centre of the person's box;
- sigma: scale adaptive, SIGMA_FRACTION (0.1) x the side of the person's box, at least MIN_SIGMA_PX pixels
  (6.4 px for the target in a 64 px crop, 22 px at 224 px).

Maps are rendered once at the stored crop and resampled with the image by the augmentation (so rotation,
scale and flip act on them as on the pixels), then bilinearly resized to each CoNorm layer's resolution.
"""
import numpy as np

SIGMA_FRACTION = 0.1
MIN_SIGMA_PX = 1.0
# SPIN's 24 ground-truth joints: 2 right hip, 3 left hip, 8 right shoulder, 9 left shoulder.
TORSO_GT_JOINTS = (2, 3, 8, 9)


def body_centre(points_2d, box_centre=None):
    """Centre of a person from the [24, 2] or [24, 3] (x, y[, confidence]) SPIN ground-truth joints in pixels:
    the mean of the torso joints that are known (confidence > 0, when given); with none known, box_centre."""
    points = np.asarray(points_2d, np.float64)[list(TORSO_GT_JOINTS)]
    known = points[:, 2] > 0 if points.shape[1] > 2 else np.ones(len(points), bool)
    if known.any():
        return points[known, :2].mean(0)
    if box_centre is None:
        raise ValueError("no torso joint is known and no box centre was given")
    return np.asarray(box_centre, np.float64)


def sigma_for_box(box_side_px):
    """Gaussian sigma in pixels of a person whose box side is box_side_px."""
    return np.maximum(SIGMA_FRACTION * np.asarray(box_side_px, np.float64), MIN_SIGMA_PX)


def gaussian(centre, sigma, height, width):
    """[H, W] float32 exp(-d^2 / (2 sigma^2)) at pixel centres (i + 0.5, j + 0.5), centre (x, y) in pixels."""
    xs = np.arange(width) + 0.5
    ys = np.arange(height) + 0.5
    d2 = (xs[None, :] - centre[0]) ** 2 + (ys[:, None] - centre[1]) ** 2
    return np.exp(-d2 / (2.0 * float(sigma) ** 2)).astype(np.float32)


def context_maps(centres, sigmas, target, height, width):
    """[H, W, 2] float32 (local, global). centres [P, 2] pixels (x, y) of every person (people outside the picture
    are fine: their Gaussians fall off), sigmas [P] pixels, target: the index of the target among them."""
    centres = np.asarray(centres, np.float64).reshape(-1, 2)
    sigmas = np.broadcast_to(np.asarray(sigmas, np.float64), (len(centres),))
    if not 0 <= target < len(centres):
        raise ValueError(f"target {target} is not one of the {len(centres)} people")
    maps = np.stack([gaussian(c, s, height, width) for c, s in zip(centres, sigmas)])
    return np.stack([maps[target], maps.max(0)], axis=-1)
