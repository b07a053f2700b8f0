"""PARE's augmentations in TensorFlow, applied consistently to the image, keypoints, part map and SMPL pose.

    params = sample_params(key [2] int64, config, crop_active)      # stateless: same key, same augmentation
    out = apply(example, params, occluder_bank, out_size)            # one decoded stored example -> training crop

All geometry is one affine map from the output crop to the stored crop (no intermediate images): in box-normalised
coordinates x (stored example, the box is [-1, 1]) and y (output crop, [-1, 1]),

    y = F R(theta) (x - c) / s

with F = diag(-1, 1) when flipped, R(theta) the in-plane rotation (x right, y down), s the scale (s > 1 zooms
out) times the random-crop zoom, c the random-crop centre. The image is resampled bilinearly (black outside
the stored crop, as SPIN), the part map with nearest neighbours (crop_and_resize when there is no rotation, a
projective warp otherwise: the first is several times faster on a CPU). 2D keypoints follow the same map; the 3D
joints and the SMPL global orientation turn by R(theta) about the camera axis, then a flip mirrors x -> -x and
swaps left and right (joints, SMPL pose via smpl_jax.joints, and the part labels).

Sampling (AugmentConfig defaults = the authors' code): flip p = 0.5; rotation N(0, 30 deg) clipped to +-60,
zeroed with p = 0.6; scale N(1, 0.25) clipped to [0.75, 1.25]; per-channel colour factors U(0.6, 1.4);
synthetic occlusion: 1-7 occluders from the bank, centres uniform over the crop, each side U(0.2, 1.0) x half
the crop; random crop with p = crop_prob once active: one side of the box (top, bottom, left or right) loses
30-50 % and the crop zooms onto the remaining square. Visibility (where known) becomes 0 for keypoints that
leave the crop or land under an occluder (alpha > 0.5).
"""
import dataclasses
import math

import numpy as np

from pare_jax.data.schema import NUM_KEYPOINTS
from pare_jax.data.tensorflow_cpu import tf
from smpl_jax import joints as joint_sets

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MAX_OCCLUDERS = 7
KEYPOINT_FLIP = joint_sets.joint_set_flip_permutation("spin49")
GT_JOINT_FLIP = joint_sets.flip_permutation(joint_sets.SPIN_GT_NAMES)
# Part label l (1..24) of SMPL joint l - 1 becomes the label of its mirrored joint; 0 stays background.
PART_LABEL_FLIP = np.concatenate([[0], 1 + joint_sets.SMPL_FLIP_PERMUTATION]).astype(np.int32)


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges; see the module docstring. crop_start_step: training step from which the random
    crop is applied with crop_prob (the paper: after 175K steps); occlusion_prob: chance that an image gets
    occluders at all (each occluded image gets 1-7)."""
    flip_prob: float = 0.5
    rotation_sd_deg: float = 30.0
    rotation_max_deg: float = 60.0
    rotation_zero_prob: float = 0.6
    scale_sd: float = 0.25
    scale_range: tuple = (0.75, 1.25)
    color_noise: float = 0.4
    occlusion_prob: float = 1.0
    max_occluders: int = MAX_OCCLUDERS
    occluder_scale: tuple = (0.2, 1.0)
    occluder_size: float = 0.5
    crop_prob: float = 0.3
    crop_fraction: tuple = (0.3, 0.5)
    crop_start_step: int = 175_000

    def __post_init__(self):
        for name in ("flip_prob", "rotation_zero_prob", "occlusion_prob", "crop_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"AugmentConfig.{name} is a probability, got {getattr(self, name)}")
        if not 0.0 <= self.color_noise < 1.0:
            raise ValueError(f"AugmentConfig.color_noise must be in [0, 1) (factors U(1 - c, 1 + c) stay "
                             f"positive), got {self.color_noise}")
        if self.max_occluders < 1 or not 0.0 < self.occluder_scale[0] <= self.occluder_scale[1]:
            raise ValueError("AugmentConfig needs max_occluders >= 1 and 0 < occluder_scale[0] <= occluder_scale[1]"
                             f", got {self.max_occluders}, {self.occluder_scale}")
        if not 0.0 <= self.crop_fraction[0] <= self.crop_fraction[1] < 1.0:
            raise ValueError(f"AugmentConfig.crop_fraction must satisfy 0 <= low <= high < 1, got {self.crop_fraction}")


def sample_params(key, config, crop_active):
    """key: [2] int64 stateless seed; crop_active: scalar bool tensor. Returns a dict of scalar/small tensors:
    flip, angle (radians), scale, centre [2], color [3], occluders (index [M], centre [M, 2] in output pixels
    per unit out_size, side [M] per unit out_size, active [M]: the first 1-7 slots, or none)."""
    keys = tf.random.experimental.stateless_split(tf.cast(key, tf.int64), num=12)
    uniform = lambda i, shape=(), lo=0.0, hi=1.0: tf.random.stateless_uniform(shape, keys[i], lo, hi)  # noqa
    flip = uniform(0) < config.flip_prob
    angle = tf.clip_by_value(tf.random.stateless_normal((), keys[1]) * config.rotation_sd_deg,
                             -config.rotation_max_deg, config.rotation_max_deg)
    angle = tf.where(uniform(2) < config.rotation_zero_prob, 0.0, angle) * (math.pi / 180.0)
    scale = tf.clip_by_value(1.0 + config.scale_sd * tf.random.stateless_normal((), keys[3]), *config.scale_range)
    crop = crop_active & (uniform(4) < config.crop_prob)
    fraction = uniform(5, (), *config.crop_fraction)
    side = tf.random.stateless_uniform((), keys[6], 0, 4, dtype=tf.int32)  # 0 top, 1 bottom, 2 left, 3 right
    # The kept square of side 2 (1 - f) sits against the side opposite to the one cut.
    shift = tf.where(side % 2 == 0, fraction, -fraction)
    centre = tf.where(side < 2, tf.stack([0.0, shift]), tf.stack([shift, 0.0]))
    m = config.max_occluders
    count = tf.random.stateless_uniform((), keys[7], 1, m + 1, dtype=tf.int32)
    occluded = uniform(8) < config.occlusion_prob
    return {
        "flip": flip, "angle": angle, "scale": scale * tf.where(crop, 1.0 - fraction, 1.0),
        "centre": tf.where(crop, centre, tf.zeros(2)), "color": uniform(9, (3,), 1 - config.color_noise,
                                                                         1 + config.color_noise),
        "occluder_index": tf.random.stateless_uniform((m,), keys[10], 0, 2**30, dtype=tf.int32),
        "occluder_centre": tf.random.stateless_uniform((m, 2), keys[11], 0.0, 1.0),
        "occluder_side": config.occluder_size * tf.random.stateless_uniform(
            (m,), tf.random.experimental.stateless_fold_in(keys[11], 1), *config.occluder_scale),
        "occluder_active": occluded & (tf.range(m) < count),
    }


def identity_params(max_occluders=MAX_OCCLUDERS):
    """Parameters that only resample the box to the output crop (evaluation)."""
    m = max_occluders
    return {"flip": tf.constant(False), "angle": tf.constant(0.0), "scale": tf.constant(1.0),
            "centre": tf.zeros(2), "color": tf.ones(3), "occluder_index": tf.zeros(m, tf.int32),
            "occluder_centre": tf.zeros((m, 2)), "occluder_side": tf.ones(m), "occluder_active": tf.zeros(m, bool)}


def _rotation_2d(angle):
    c, s = tf.cos(angle), tf.sin(angle)
    return tf.reshape(tf.stack([c, -s, s, c]), (2, 2))


def _mirror(flip):
    return tf.linalg.diag(tf.stack([tf.where(flip, -1.0, 1.0), 1.0]))


def output_to_stored(params, stored_size, crop_margin, out_size):
    """Transform [8] for ImageProjectiveTransformV3: output pixel index -> stored-crop pixel index (pixel centres
    at integer indices, hence the half-pixel terms)."""
    M = tf.transpose(_rotation_2d(params["angle"])) @ _mirror(params["flip"])  # x = c + s M y
    half = stored_size / (2.0 * crop_margin)
    linear = half * params["scale"] * M * (2.0 / out_size)
    y0 = tf.fill([2], 1.0 / out_size - 1.0)
    offset = half * (params["centre"] + params["scale"] * tf.linalg.matvec(M, y0)) + (stored_size / 2.0 - 0.5)
    return tf.stack([linear[0, 0], linear[0, 1], offset[0], linear[1, 0], linear[1, 1], offset[1], 0.0, 0.0])


def _warp(images, transforms, out_size, interpolation):
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=images, transforms=transforms, output_shape=tf.constant([out_size, out_size], tf.int32),
        fill_value=0.0, interpolation=interpolation, fill_mode="CONSTANT")


def _axis_aligned(images, transform, out_size, method):
    """The same resampling as _warp for a transform without rotation, through crop_and_resize (several times
    faster on a CPU). images [1, H, W, C]; a negative scale (a flip) becomes a reversed box."""
    size = tf.cast(tf.shape(images)[1:3] - 1, tf.float32)  # crop_and_resize boxes are in units of (size - 1)
    last = float(out_size - 1)
    x0, x1 = transform[2], transform[0] * last + transform[2]
    y0, y1 = transform[5], transform[4] * last + transform[5]
    box = tf.stack([y0 / size[0], x0 / size[1], y1 / size[0], x1 / size[1]])[None]
    return tf.image.crop_and_resize(images, box, tf.zeros(1, tf.int32), (out_size, out_size), method=method)


def resample(image, transform, out_size, method):
    """image [H, W, C] uint8 -> [out, out, C] float32 through transform [8] (output index -> input index);
    0 outside. method: "bilinear" or "nearest"."""
    rotated = tf.logical_or(tf.abs(transform[1]) > 1e-6, tf.abs(transform[3]) > 1e-6)
    general = lambda: tf.cast(_warp(image[None], transform[None], out_size, method.upper()), tf.float32)  # noqa
    aligned = lambda: _axis_aligned(image[None], transform, out_size, method)  # noqa: E731
    out = tf.cond(rotated, general, aligned)[0]
    return tf.ensure_shape(out, (out_size, out_size, image.shape[-1]))


def transform_keypoints(keypoints, params):
    """keypoints [49, 3] box-normalised (x, y, conf) -> output-normalised, joints swapped when flipped."""
    R = _rotation_2d(params["angle"])
    xy = tf.linalg.matvec(_mirror(params["flip"]) @ R, keypoints[:, :2] - params["centre"]) / params["scale"]
    out = tf.concat([xy, keypoints[:, 2:]], axis=-1)
    return tf.where(params["flip"], tf.gather(out, KEYPOINT_FLIP), out)


def transform_joints3d(joints, params):
    """joints [24, 4] (xyz + conf, camera axes): turned about the camera axis, mirrored x -> -x when flipped."""
    R = _rotation_2d(params["angle"])
    xy = tf.linalg.matvec(_mirror(params["flip"]) @ R, joints[:, :2])
    out = tf.concat([xy, joints[:, 2:]], axis=-1)
    return tf.where(params["flip"], tf.gather(out, GT_JOINT_FLIP), out)


def transform_pose(pose, params):
    """pose [72] axis-angle: global orientation turned by the in-plane rotation, then the SMPL flip."""
    aa = tf.reshape(pose, (24, 3))
    half = params["angle"] / 2.0
    turn = tf.stack([tf.cos(half), 0.0, 0.0, tf.sin(half)])  # quaternion (w, x, y, z) about the camera z axis
    root = quaternion_to_axis_angle(quaternion_multiply(turn, axis_angle_to_quaternion(aa[0])))
    aa = tf.concat([root[None], aa[1:]], axis=0)
    flipped = tf.gather(aa, joint_sets.SMPL_FLIP_PERMUTATION) * tf.constant([1.0, -1.0, -1.0])
    return tf.reshape(tf.where(params["flip"], flipped, aa), (72,))


def axis_angle_to_quaternion(aa):
    """[3] -> [4] (w, x, y, z); exact at zero angle."""
    angle = tf.norm(aa)
    scale = tf.where(angle > 1e-6, tf.sin(angle / 2) / tf.maximum(angle, 1e-12), 0.5 - angle**2 / 48.0)
    return tf.concat([[tf.cos(angle / 2)], aa * scale], axis=0)


def quaternion_multiply(a, b):
    """Hamilton product of (w, x, y, z) quaternions [4]: rotation b, then a."""
    aw, ax, ay, az = tf.unstack(a)
    bw, bx, by, bz = tf.unstack(b)
    return tf.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw])


def quaternion_to_axis_angle(q):
    """[4] (w, x, y, z) -> [3] with angle in [0, pi]."""
    q = tf.where(q[0] < 0, -q, q)
    sin_half = tf.norm(q[1:])
    angle = 2.0 * tf.atan2(sin_half, q[0])
    scale = tf.where(sin_half > 1e-6, angle / tf.maximum(sin_half, 1e-12), 2.0 / tf.maximum(q[0], 1e-12))
    return q[1:] * scale


def occlude(image, params, bank, out_size):
    """Paste the active occluders of params. image [H, W, 3] float 0..255, bank [N, O, O, 4] float32 (RGB 0..255,
    alpha 0..1). Returns (image, coverage [H, W] = 1 - prod(1 - alpha)).
    Each occluder is resampled and composited on its own patch only and written back with a scatter: whole-crop
    arithmetic per occluder would cost more than everything else in the pipeline. Active slots come first
    (sample_params), so a loop over them skips the rest; its body is traced once."""
    count = tf.reduce_sum(tf.cast(params["occluder_active"], tf.int32))
    _, image, coverage = tf.while_loop(
        lambda k, *_: k < count,
        lambda k, image, coverage: (k + 1,) + _paste(image, coverage, params, k, bank, out_size),
        (tf.constant(0), image, tf.zeros((out_size, out_size))))
    return image, coverage


def _paste(image, coverage, params, k, bank, out_size):
    """Composite occluder slot k. Its centre lies inside the crop, so its patch is never empty."""
    num, canvas = tf.shape(bank)[0], tf.cast(tf.shape(bank)[1], tf.float32)
    side = params["occluder_side"][k] * out_size
    corner = params["occluder_centre"][k] * out_size - side / 2.0
    low = tf.clip_by_value(tf.cast(tf.floor(corner), tf.int32), 0, out_size - 1)  # (x, y) of the patch
    high = tf.clip_by_value(tf.cast(tf.math.ceil(corner + side), tf.int32) + 1, low + 1, out_size)
    # Output pixel q (centre q + 0.5) sits at canvas index (q + 0.5 - corner) * zoom - 0.5.
    zoom = canvas / side
    start = (tf.cast(low, tf.float32) + 0.5 - corner) * zoom - 0.5
    end = start + zoom * tf.cast(high - low - 1, tf.float32)
    box = tf.stack([start[1], start[0], end[1], end[0]]) / (canvas - 1.0)
    rgba = tf.image.crop_and_resize(bank[params["occluder_index"][k] % num][None], box[None],
                                    tf.zeros(1, tf.int32), high[::-1] - low[::-1])[0]
    rows, cols = tf.meshgrid(tf.range(low[1], high[1]), tf.range(low[0], high[0]), indexing="ij")
    where = tf.stack([rows, cols], axis=-1)
    alpha = rgba[..., 3:]
    region = image[low[1]:high[1], low[0]:high[0]]
    covered = coverage[low[1]:high[1], low[0]:high[0]]
    return (tf.tensor_scatter_nd_update(image, where, region * (1.0 - alpha) + rgba[..., :3] * alpha),
            tf.tensor_scatter_nd_update(coverage, where, 1.0 - (1.0 - covered) * (1.0 - alpha[..., 0])))


def apply(example, params, bank, out_size, normalize=True):
    """One decoded stored example (pare_jax.data.schema keys; image [S, S, 3] uint8, part_map [S, S, 1] uint8,
    masks [S, S, 4] uint8) and the occluder bank (None: no occlusion) -> img [out, out, 3] float32
    (ImageNet-normalised, or 0..255 with normalize=False), part_map [out, out] int32, silhouette [out, out, 2]
    and context [out, out, 2] float32 in [0, 1] (bilinear, moved with the pixels; the visible silhouette also
    loses what the pasted occluders cover), keypoints [49, 3], visibility [49], joints3d [24, 4], pose [72];
    other keys pass through."""
    stored = tf.shape(example["image"])[0]
    transform = output_to_stored(params, tf.cast(stored, tf.float32), example["crop_margin"], out_size)
    image = resample(example["image"], transform, out_size, "bilinear")
    labels = tf.cast(resample(example["part_map"], transform, out_size, "nearest")[..., 0], tf.int32)
    labels = tf.cond(params["flip"], lambda: tf.gather(PART_LABEL_FLIP, labels), lambda: labels)
    if bank is None:
        coverage = tf.zeros((out_size, out_size))
    else:
        image, coverage = occlude(image, params, bank, out_size)
    # Inputs are >= 0 and the colour factors positive, so only the upper clip can act.
    image = tf.minimum(image * params["color"], 255.0)
    if normalize:
        image = image * (1.0 / (255.0 * np.asarray(IMAGENET_STD, np.float32))) - (
            np.asarray(IMAGENET_MEAN, np.float32) / np.asarray(IMAGENET_STD, np.float32))
    masks = resample(example["masks"], transform, out_size, "bilinear") * (1.0 / 255.0)
    silhouette = tf.stack([masks[..., 0], masks[..., 1] * (1.0 - coverage)], axis=-1)
    keypoints = transform_keypoints(example["keypoints"], params)
    out = dict(example, img=image, part_map=labels, keypoints=keypoints, silhouette=silhouette,
               context=masks[..., 2:],
               visibility=_visibility(example["visibility"], keypoints, coverage, params, out_size),
               joints3d=transform_joints3d(example["joints3d"], params), pose=transform_pose(example["pose"], params))
    del out["image"], out["masks"]
    return out


def _visibility(visibility, keypoints, coverage, params, out_size):
    """Known visibility [49] (flipped with the keypoints) -> 0 where a keypoint left the crop or is occluded."""
    visibility = tf.where(params["flip"], tf.gather(visibility, KEYPOINT_FLIP), visibility)
    pixel = tf.cast(tf.floor((keypoints[:, :2] + 1.0) * (out_size / 2.0)), tf.int32)
    inside = tf.reduce_all((pixel >= 0) & (pixel < out_size), axis=-1)
    covered = tf.gather_nd(coverage, tf.clip_by_value(pixel[:, ::-1], 0, out_size - 1)) > 0.5
    hidden = ~inside | covered
    return tf.where((visibility >= 0) & hidden, 0.0, visibility)


assert KEYPOINT_FLIP.shape == (NUM_KEYPOINTS,)
