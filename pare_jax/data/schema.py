"""The stored example: one schema for every builder (SPIN/PARE-format datasets and the synthetic one).

Every example holds a square crop around the person WITH a margin (for rotation and scale augmentation): the
person box (SPIN's center and scale: side = 200 * scale pixels of the original image) is the central
1 / crop_margin of the stored crop. Coordinates are "box-normalised": x_n = (x_pixel - center) / (box side / 2),
so the box spans [-1, 1] and the stored crop [-crop_margin, crop_margin]; pixel (i, j) of the stored crop covers
[i, i + 1) x [j, j + 1) in continuous pixel units (the rasterizer's convention).

| key           | shape / dtype           | meaning |
|---------------|-------------------------|---------|
| image         | [S, S, 3] uint8 (JPEG)  | stored crop, S = stored_size(crop_size, crop_margin) |
| part_map      | [S, S, 1] uint8 (PNG)   | 0 background, 1..24 = SMPL part + 1; all zero when has_part_map = 0 |
| has_part_map  | () float32              | 1 when part_map was rendered from ground-truth SMPL |
| keypoints     | [49, 3] float32         | SPIN's 49 joints (25 OpenPose + 24 ground truth): box-normalised x, y, confidence |
| visibility    | [49] float32            | 1 visible, 0 occluded / outside the box, -1 unknown (real datasets) |
| joints3d      | [24, 4] float32         | SPIN's 24 ground-truth joints in camera axes (metres) + confidence |
| has_joints3d  | () float32              | |
| pose          | [72] float32            | SMPL axis-angle, global orientation in camera axes (x right, y down, z forward) |
| betas         | [10] float32            | |
| has_smpl      | () float32              | |
| cam_t         | [3] float32             | translation putting the GT body on the keypoints with focal 5000 at a 224 box (PARE's label camera) |
| crop_margin   | () float32              | stored crop side / box side |
| box           | [3] float32             | center x, y (pixels of the original image) and scale (box side / 200) |
| gender        | () int32                | 0 male, 1 female, -1 unknown / neutral |
| imgname       | string                  | image path relative to the dataset's image root |
| sample_index  | () int64                | row of the source npz (or synthetic sample number): stable across builds |
| masks         | [S, S, 4] uint8 (PNG)   | x 255: target's full silhouette, visible silhouette, local and global context map |
| has_silhouette| () float32              | 1 when the silhouettes are known (rendered from ground truth) |
| has_context   | () float32              | 1 when the context maps are filled (pare_jax.data.context) |

Silhouettes are LASOR's targets (the visible one: the target minus whatever is in front of it); the context
maps are OCHMR's CoNorm input: a Gaussian at the target's body centre, and at everyone's in the crop.
"""
import numpy as np

NUM_KEYPOINTS = 49  # SPIN: 25 OpenPose joints, then the 24 ground-truth joints
NUM_GT_JOINTS = 24
NUM_PARTS = 24
DEFAULT_CROP_SIZE = 224
DEFAULT_CROP_MARGIN = 1.5


def stored_size(crop_size=DEFAULT_CROP_SIZE, crop_margin=DEFAULT_CROP_MARGIN):
    """Side in pixels of the stored crop: the box at crop_size pixels plus the margin, rounded to even."""
    if crop_margin < 1.0:
        raise ValueError(f"crop_margin must be >= 1 (the stored crop contains the box), got {crop_margin}")
    return int(2 * round(crop_size * crop_margin / 2))


def features(size):
    """tfds FeaturesDict of the stored example for stored crops of `size` pixels."""
    import tensorflow_datasets as tfds

    from pare_jax.data.tensorflow_cpu import tf

    tensor = tfds.features.Tensor
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(size, size, 3), encoding_format="jpeg"),
        "part_map": tfds.features.Image(shape=(size, size, 1), encoding_format="png"),
        "has_part_map": tensor(shape=(), dtype=tf.float32),
        "keypoints": tensor(shape=(NUM_KEYPOINTS, 3), dtype=tf.float32),
        "visibility": tensor(shape=(NUM_KEYPOINTS,), dtype=tf.float32),
        "joints3d": tensor(shape=(NUM_GT_JOINTS, 4), dtype=tf.float32),
        "has_joints3d": tensor(shape=(), dtype=tf.float32),
        "pose": tensor(shape=(72,), dtype=tf.float32),
        "betas": tensor(shape=(10,), dtype=tf.float32),
        "has_smpl": tensor(shape=(), dtype=tf.float32),
        "cam_t": tensor(shape=(3,), dtype=tf.float32),
        "crop_margin": tensor(shape=(), dtype=tf.float32),
        "box": tensor(shape=(3,), dtype=tf.float32),
        "gender": tensor(shape=(), dtype=tf.int32),
        "imgname": tfds.features.Text(),
        "sample_index": tensor(shape=(), dtype=tf.int64),
        "masks": tfds.features.Image(shape=(size, size, 4), encoding_format="png"),
        "has_silhouette": tensor(shape=(), dtype=tf.float32),
        "has_context": tensor(shape=(), dtype=tf.float32),
    })


def encode_jpeg(pixels, quality=95):
    """[H, W, 3] uint8 -> JPEG bytes (4:4:4 chroma, so thin coloured parts keep their colour)."""
    import io

    from PIL import Image
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, format="JPEG", quality=quality, subsampling=0)
    return buffer.getvalue()


def encode_png(pixels):
    """[H, W], [H, W, 1] (grey) or [H, W, 4] (four channels, stored as RGBA) uint8 -> PNG bytes."""
    import io

    from PIL import Image
    buffer = io.BytesIO()
    pixels = np.ascontiguousarray(pixels if pixels.ndim == 3 and pixels.shape[2] == 4 else
                                  pixels.reshape(pixels.shape[:2]))
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()
