"""Crops as PARE makes them, and the crop's camera turned into one perspective camera of the whole image.

Image coordinates are continuous pixels: pixel (x, y) is the square [x, x + 1) x [y, y + 1), as in
pare_jax.render. A person box [x0, y0, x1, y1] becomes a square of side BOX_SCALE * max(w, h) about the box centre
(the margin of SPIN's and PARE's crops), resampled to the model's input size.

The model predicts a weak-perspective camera (s, tx, ty) of its crop, i.e. the body at translation
t = (tx, ty, 2 f / (224 s)) seen with focal length f = 5000 px and the principal point at the crop centre
(smpl_jax.cameras). In image pixels that crop camera is a pinhole with focal f * side / 224 and its principal
point at the box centre, a different camera for every person. One camera for the whole image (all people in one
scene, depth-ordered; meshes you can place in a 3D viewer) has focal length F and the principal point at the
image centre. F defaults to the image diagonal in pixels (a 53 degree diagonal field of view), a usual guess for
an unknown camera; pass the true focal length when you know it.

The translation in that camera is fitted so that the body's vertices land where the crop camera put them:
the linear least squares of pare_jax.data.offline_labels.estimate_translation, over all vertices. When F equals
the crop camera's focal length and the box is centred on the image, the two cameras are the same and the fit is
exact; otherwise the fit absorbs what a translation can (position and size). What it cannot absorb is what PARE's
crop camera never modelled: the perspective of a person far from the optical axis of a wide-angle image, which
leans the body by a few pixels at its extremities. `reprojection_px` reports that residual per person.
"""
import numpy as np

from pare_jax.data import context as context_maps_module
from pare_jax.data.offline_labels import estimate_translation
from smpl_jax.cameras import PARE_CROP_SIZE, PARE_FOCAL_LENGTH

BOX_SCALE = 1.2


class BoxError(ValueError):
    """A person box that is empty, not finite, or outside the image."""


def check_boxes(boxes, image_hw, where):
    """boxes [P, 4] (x0, y0, x1, y1) -> float64 copy; raise BoxError naming `where` for a bad one."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    height, width = image_hw
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        if not np.isfinite([x0, y0, x1, y1]).all():
            raise BoxError(f"{where}: box {i} {boxes[i].tolist()} is not finite")
        if x1 - x0 <= 0 or y1 - y0 <= 0:
            raise BoxError(f"{where}: box {i} {boxes[i].tolist()} has zero size: boxes are [x0, y0, x1, y1] with "
                           "x1 > x0 and y1 > y0, in pixels")
        if x1 <= 0 or y1 <= 0 or x0 >= width or y0 >= height:
            raise BoxError(f"{where}: box {i} {boxes[i].tolist()} lies outside the {width}x{height} image")
    return boxes


def square_boxes(boxes, scale=BOX_SCALE):
    """boxes [P, 4] (x0, y0, x1, y1) -> squares [P, 3] (centre x, centre y, side)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = scale * np.max(boxes[:, 2:] - boxes[:, :2], axis=1)
    return np.concatenate([centre, side[:, None]], axis=1)


def crop_images(image, squares, size):
    """image [H, W, 3] uint8, squares [P, 3] -> crops [P, size, size, 3] float32 in [0, 1]; outside the image
    black. Resampled with PIL's antialiasing filter (bilinear support scaled to the reduction)."""
    from PIL import Image
    height, width = image.shape[:2]
    crops = np.zeros((len(squares), size, size, 3), np.float32)
    for i, (cx, cy, side) in enumerate(squares):
        x0, y0 = cx - side / 2, cy - side / 2
        # PIL takes only boxes inside the image: pad the part of the image the square needs, black outside.
        lo = np.floor([x0, y0]).astype(int)
        hi = np.ceil([x0 + side, y0 + side]).astype(int)
        canvas = np.zeros((hi[1] - lo[1], hi[0] - lo[0], 3), np.uint8)
        sx0, sy0 = max(lo[0], 0), max(lo[1], 0)
        sx1, sy1 = min(hi[0], width), min(hi[1], height)
        if sx1 > sx0 and sy1 > sy0:
            canvas[sy0 - lo[1]:sy1 - lo[1], sx0 - lo[0]:sx1 - lo[0]] = image[sy0:sy1, sx0:sx1]
        box = (x0 - lo[0], y0 - lo[1], x0 - lo[0] + side, y0 - lo[1] + side)
        crop = Image.fromarray(canvas).resize((size, size), Image.Resampling.BILINEAR, box=box)
        crops[i] = np.asarray(crop, np.float32) / 255.0
    return crops


def image_to_crop_pixels(points, square, size):
    """points [..., 2] in image pixels -> pixels of the size x size crop of square (cx, cy, side); the inverse of
    crop_to_image_pixels."""
    cx, cy, side = np.asarray(square, np.float64)
    return (np.asarray(points, np.float64) - [cx, cy]) * (size / side) + size / 2


def crop_context_maps(squares, size):
    """CoNorm's context maps (pare_jax.data.context) of every crop: [P, size, size, 2] float32, crop i's local
    map at person i, its global map at every person of the image. A detector box has no body, so each person's
    centre is its box centre, and its sigma sigma_for_box of its crop square's side (BOX_SCALE x the longer
    box side, as the datasets' crops), both in crop i's pixels. squares [P, 3] of square_boxes."""
    squares = np.asarray(squares, np.float64).reshape(-1, 3)
    maps = np.zeros((len(squares), size, size, 2), np.float32)
    for i, square in enumerate(squares):
        centres = image_to_crop_pixels(squares[:, :2], square, size)
        sigmas = context_maps_module.sigma_for_box(squares[:, 2] * size / square[2])
        maps[i] = context_maps_module.context_maps(centres, sigmas, i, size, size)
    return maps


def default_focal_length(image_hw):
    """The image diagonal in pixels."""
    return float(np.hypot(*image_hw))


def crop_to_image_pixels(points_crop, squares, crop_size=PARE_CROP_SIZE):
    """points [P, N, 2] in crop pixels (of a crop_size crop) -> image pixels [P, N, 2]."""
    squares = np.asarray(squares, np.float64)
    scale = squares[:, None, 2:3] / crop_size
    return squares[:, None, :2] + (np.asarray(points_crop, np.float64) - crop_size / 2) * scale


def crop_camera_pixels(points, cam, squares):
    """Where the crop camera puts root-relative body points [P, N, 3] (cam [P, 3] = s, tx, ty), in image
    pixels [P, N, 2]."""
    points = np.asarray(points, np.float64)
    cam = np.asarray(cam, np.float64)
    tz = 2 * PARE_FOCAL_LENGTH / (PARE_CROP_SIZE * cam[:, 0] + 1e-9)
    t = np.stack([cam[:, 1], cam[:, 2], tz], -1)[:, None]
    crop = PARE_FOCAL_LENGTH * (points[..., :2] + t[..., :2]) / (points[..., 2:] + t[..., 2:]) + PARE_CROP_SIZE / 2
    return crop_to_image_pixels(crop, squares)


def image_camera(focal_length, image_hw):
    """K [3, 3] of the image camera: focal F, principal point at the image centre."""
    height, width = image_hw
    return np.array([[focal_length, 0, width / 2], [0, focal_length, height / 2], [0, 0, 1]], np.float32)


def image_camera_pixels(points, translation, focal_length, image_hw):
    """Pinhole projection [P, N, 2] of points [P, N, 3] + translation [P, 3] with focal F and the principal
    point at the image centre."""
    cam_points = np.asarray(points, np.float64) + np.asarray(translation, np.float64)[:, None]
    centre = np.array([image_hw[1] / 2, image_hw[0] / 2])
    return focal_length * cam_points[..., :2] / cam_points[..., 2:] + centre


def crop_to_image_translation(points, cam, squares, image_hw, focal_length=None):
    """The translation [P, 3] of each body in the image camera (focal F, principal point at the centre) that
    puts its points [P, N, 3] (vertices, without translation) where the crop camera cam [P, 3] puts them.
    Returns (translation [P, 3], focal length F, reprojection_px [P]: mean distance between the two)."""
    focal = default_focal_length(image_hw) if focal_length is None else float(focal_length)
    target = crop_camera_pixels(points, cam, squares)
    centre = np.array([image_hw[1] / 2, image_hw[0] / 2])
    # estimate_translation reads box-normalised keypoints x * crop_size / 2 as pixels from the principal point.
    keypoints = np.concatenate([target - centre, np.ones(target.shape[:-1] + (1,))], -1)
    translation, _ = estimate_translation(points, keypoints, focal_length=focal, crop_size=2.0)
    residual = np.linalg.norm(image_camera_pixels(points, translation, focal, image_hw) - target, axis=-1)
    return translation, focal, residual.mean(-1)
