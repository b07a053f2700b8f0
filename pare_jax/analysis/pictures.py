"""Pictures of the occlusion sensitivity analysis: heatmaps over images, labelled panels, the sensitivity mesh.

    colormap(values [...], vmin, vmax) -> [..., 3] uint8 (NaN -> grey)
    heat_overlay(image [H, W, 3] uint8, heat [H, W], vmin, vmax) -> [H, W, 3] uint8
    sensitivity_mesh(body, part_values [24], vmin, vmax, size) -> [size, size, 3] uint8 (front view, rest pose)
    compose([[panel, ...], ...]) -> one picture, rows of titled panels; png_bytes(picture)

Colours: a perceptually ordered dark-to-bright ramp through the anchors of matplotlib's "inferno" (CC0), written
out here so that drawing needs only numpy and PIL.
"""
import io

import jax.numpy as jnp
import numpy as np

from pare_jax import render
from pare_jax.body_demo import framing_camera
from pare_jax.models.pare import IMAGENET_MEAN, IMAGENET_STD

_ANCHORS = np.array([[0, 0, 4], [40, 11, 84], [101, 21, 110], [159, 42, 99], [212, 72, 66], [245, 125, 21],
                     [250, 193, 39], [252, 255, 164]], np.float64) / 255.0
MISSING = np.array([200, 200, 200], np.uint8)
BACKGROUND = 255
TITLE_HEIGHT = 14


def colormap(values, vmin, vmax):
    """values [...] -> [..., 3] uint8 on the dark-to-bright ramp over [vmin, vmax]; NaN -> light grey."""
    values = np.asarray(values, np.float64)
    t = np.clip((values - vmin) / max(vmax - vmin, 1e-9), 0.0, 1.0)
    t = np.where(np.isfinite(values), t, 0.0) * (len(_ANCHORS) - 1)
    low = np.minimum(np.floor(t).astype(int), len(_ANCHORS) - 2)
    frac = (t - low)[..., None]
    rgb = np.round((_ANCHORS[low] * (1 - frac) + _ANCHORS[low + 1] * frac) * 255).astype(np.uint8)
    return np.where(np.isfinite(values)[..., None], rgb, MISSING)


def value_range(*arrays):
    """(min, max) over the finite entries of all arrays; (0, 1) when there are none."""
    finite = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
    finite = finite[np.isfinite(finite)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)


def input_picture(image):
    """ImageNet-normalised image [H, W, 3] -> RGB uint8 (what the model saw, denormalised)."""
    return np.clip(np.round((np.asarray(image) * IMAGENET_STD + IMAGENET_MEAN) * 255), 0, 255).astype(np.uint8)


def upscale(pixels, factor):
    """Nearest-neighbour enlargement by an integer factor (64 px crops are too small to read)."""
    return np.repeat(np.repeat(pixels, factor, axis=0), factor, axis=1) if factor > 1 else pixels


def heat_overlay(image, heat, vmin, vmax, opacity=0.65):
    """The heatmap over a dimmed image: image [H, W, 3] uint8, heat [H, W] -> [H, W, 3] uint8."""
    mixed = (1 - opacity) * image.astype(np.float64) + opacity * colormap(heat, vmin, vmax)
    return np.round(mixed).astype(np.uint8)


def sensitivity_mesh(body, part_values, vmin, vmax, size=256):
    """The rest-pose mean body (betas = 0) seen from the front, each vertex coloured by the value of its part.
    part_values [24] (NaN -> grey) -> [size, size, 3] uint8 on white."""
    vertices = np.asarray(body(betas=jnp.zeros((1, 10))).vertices[0])
    colors = colormap(np.asarray(part_values)[np.asarray(body.vertex_parts())], vmin, vmax) / 255.0
    # The body is y-up and faces +z; the camera looks down +z with image y down: rotate 180 degrees about x.
    R = np.diag([1.0, -1.0, -1.0]).astype(np.float32)
    K, t = framing_camera(vertices @ R.T, size)
    verts = jnp.asarray(vertices, jnp.float32)
    frags = render.rasterize(verts, body.faces, jnp.asarray(K), jnp.asarray(R), jnp.asarray(t), size, size)
    rgb, alpha = render.shade(frags, verts, body.faces, jnp.asarray(R), jnp.asarray(t),
                              vertex_colors=jnp.asarray(colors, jnp.float32))
    shaded = np.asarray(render.overlay(jnp.ones((size, size, 3)), rgb, alpha, 1.0))
    return np.clip(np.round(shaded * 255), 0, 255).astype(np.uint8)


def colorbar(width, vmin, vmax, unit="mm"):
    """A labelled horizontal ramp [TITLE_HEIGHT + 10, width, 3] uint8 from vmin to vmax."""
    ramp = colormap(np.broadcast_to(np.linspace(vmin, vmax, width), (10, width)), vmin, vmax)
    return titled(ramp, f"{vmin:.0f}  ->  {vmax:.0f} {unit}")


def titled(panel, text):
    """A white strip with `text` above the panel."""
    from PIL import Image, ImageDraw
    strip = Image.new("RGB", (panel.shape[1], TITLE_HEIGHT), (BACKGROUND,) * 3)
    ImageDraw.Draw(strip).text((2, 1), text, fill=(0, 0, 0))
    return np.concatenate([np.asarray(strip), panel], axis=0)


def compose(rows, gap=4):
    """rows: lists of uint8 panels [h, w, 3] -> one picture, panels left to right, rows top to bottom, on white."""
    row_pictures = []
    for panels in rows:
        height = max(p.shape[0] for p in panels)
        padded = [np.pad(p, ((0, height - p.shape[0]), (0, gap), (0, 0)), constant_values=BACKGROUND)
                  for p in panels]
        row_pictures.append(np.concatenate(padded, axis=1))
    width = max(r.shape[1] for r in row_pictures)
    return np.concatenate([np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=BACKGROUND)
                           for r in row_pictures], axis=0)


def png_bytes(pixels):
    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="PNG")
    return buffer.getvalue()


def _scale_for(size, target=192):
    return max(1, target // size)


def image_figure(image, maps, joint_names=None):
    """One image: rows = models, panels = input then one heatmap per metric (colour range shared by the models).
    image [H, W, 3] ImageNet-normalised; maps {model label: {metric: [H, W]}} (or [H, W, J] per joint with
    joint_names: one panel per joint of the first metric)."""
    scale = _scale_for(image.shape[0])
    base = upscale(input_picture(image), scale)
    metrics = list(next(iter(maps.values())))
    rows = []
    if joint_names is None:
        ranges = {k: value_range(*(m[k] for m in maps.values())) for k in metrics}
        for label, by_metric in maps.items():
            rows.append([titled(base, label)] + [
                titled(heat_overlay(base, upscale(by_metric[k], scale), *ranges[k]),
                       f"{k.upper()} {ranges[k][0]:.0f}-{ranges[k][1]:.0f}") for k in metrics])
        rows.append([colorbar(base.shape[1], *ranges[k]) for k in metrics])
        return compose(rows)
    metric = metrics[0]
    vmin, vmax = value_range(*(m[metric] for m in maps.values()))
    for label, by_metric in maps.items():
        heat = by_metric[metric]
        rows.append([titled(base, label)] + [titled(heat_overlay(base, upscale(heat[..., j], scale), vmin, vmax),
                                                    name) for j, name in enumerate(joint_names)])
    rows.append([colorbar(base.shape[1], vmin, vmax, f"mm {metric.upper()}")])  # one range for all joints
    return compose(rows)


def part_figure(body, part_values, size=256):
    """The sensitivity mesh: rows = models, one body per metric coloured by the error increase (mm) when each
    part is under the patch; part_values {model label: {metric: [24]}}; colour range shared by the models."""
    metrics = list(next(iter(part_values.values())))
    ranges = {k: value_range(*(v[k] for v in part_values.values())) for k in metrics}
    rows = [[titled(sensitivity_mesh(body, values[k], *ranges[k], size), f"{label} {k.upper()} increase")
             for k in metrics] for label, values in part_values.items()]
    rows.append([colorbar(size, *ranges[k]) for k in metrics])
    return compose(rows)
