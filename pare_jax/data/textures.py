"""Procedural textures (numpy): gradients, value noise, stripes, checkers, for backgrounds and occluders.

    texture = random_texture(rng, height, width) -> [H, W, 3] float32 in [0, 1]

Nothing is downloaded or shipped: every picture comes from a few random numbers, so backgrounds and occluders
are free of licences and deterministic for a seed.
"""
import numpy as np

KINDS = ("gradient", "noise", "stripes", "checkers")


def random_color(rng, num=1):
    """[num, 3] float32 colours, spread over hue, saturation and brightness."""
    import colorsys
    hsv = np.stack([rng.uniform(0, 1, num), rng.uniform(0.1, 0.9, num), rng.uniform(0.15, 0.95, num)], -1)
    return np.asarray([colorsys.hsv_to_rgb(*c) for c in hsv], np.float32)


def _grid(height, width, angle):
    """Coordinates along a direction at `angle`, in units of the image diagonal, [H, W]."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    scale = float(np.hypot(height, width))
    return (x * np.cos(angle) + y * np.sin(angle)) / scale, (-x * np.sin(angle) + y * np.cos(angle)) / scale


def _blend(colors, weight):
    """Mix two colours [2, 3] with weight [H, W] in [0, 1] -> [H, W, 3]."""
    return colors[0] * (1.0 - weight[..., None]) + colors[1] * weight[..., None]


def gradient(rng, height, width):
    along, _ = _grid(height, width, rng.uniform(0, 2 * np.pi))
    weight = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    return _blend(random_color(rng, 2), weight)


def value_noise(rng, height, width, octaves=4):
    """Sum of bilinearly upsampled random grids at doubling frequencies, mapped between two colours."""
    total = np.zeros((height, width), np.float32)
    amplitude, cells = 1.0, int(rng.integers(2, 5))
    for _ in range(octaves):
        coarse = rng.uniform(0, 1, (cells + 1, cells + 1)).astype(np.float32)
        total += amplitude * _upsample(coarse, height, width)
        amplitude, cells = amplitude * 0.5, cells * 2
    total = (total - total.min()) / max(float(np.ptp(total)), 1e-6)
    return _blend(random_color(rng, 2), total)


def _upsample(grid, height, width):
    """Bilinear resize of a small [h, w] grid to [H, W] (corners aligned)."""
    gy = np.linspace(0, grid.shape[0] - 1, height, dtype=np.float32)
    gx = np.linspace(0, grid.shape[1] - 1, width, dtype=np.float32)
    y0, x0 = np.minimum(gy.astype(int), grid.shape[0] - 2), np.minimum(gx.astype(int), grid.shape[1] - 2)
    fy, fx = (gy - y0)[:, None], (gx - x0)[None, :]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def stripes(rng, height, width):
    along, _ = _grid(height, width, rng.uniform(0, np.pi))
    period = rng.uniform(0.03, 0.25)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * along / period)
    weight = wave if rng.uniform() < 0.5 else (wave > 0.5).astype(np.float32)
    return _blend(random_color(rng, 2), weight)


def checkers(rng, height, width):
    along, across = _grid(height, width, rng.uniform(0, np.pi / 2))
    period = rng.uniform(0.04, 0.3)
    weight = ((np.floor(along / period) + np.floor(across / period)) % 2).astype(np.float32)
    return _blend(random_color(rng, 2), weight)


_MAKERS = {"gradient": gradient, "noise": value_noise, "stripes": stripes, "checkers": checkers}


def random_texture(rng, height, width, kinds=KINDS):
    """[H, W, 3] float32 in [0, 1]: one of `kinds`, lit by a soft brightness ramp (so flat ones vary a bit)."""
    kind = kinds[int(rng.integers(len(kinds)))]
    texture = _MAKERS[kind](rng, height, width)
    along, _ = _grid(height, width, rng.uniform(0, 2 * np.pi))
    light = 1.0 + rng.uniform(-0.25, 0.25) * (along - along.mean()) / max(float(np.ptp(along)), 1e-6) * 2
    return np.clip(texture * light[..., None], 0.0, 1.0).astype(np.float32)
