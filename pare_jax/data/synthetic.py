"""Synthetic people: random plausible bodies, rendered with clothing colours and lighting over procedural
backgrounds, with occluders, and every label exact. No download; deterministic for a seed.

    scenes = SceneRenderer(body, occluder_bank)
    examples = scenes.crops(split="train", indices=range(8), seed=0, size=96, crop_margin=1.5)

A scene: betas ~ N(0, 1) clipped to +-2.5, a pose within the joint limits of pare_jax.data.poses, an upright
orientation with a random heading (any, or within +-max_heading_deg of facing the camera), the body at 3-12 m
from a pinhole camera (off-axis by up to 0.5 m, so the perspective varies); a person box around the projected mesh (side 1.1-1.3x its bounding square, centre jittered
by 5 %), as a detector would give. Clothing: a skin, top, bottom and shoe colour per person, short or long
sleeves and trousers; Lambertian light from a random direction. Background: a procedural texture.

Splits: "train" (occluders on half the images, anywhere in the box), "test" (none), "test_occluded" (1-2
occluders each centred on a body joint, 30-50 % of the box: body parts are covered, as in 3DPW-OCC).

Visibility of each of the 49 keypoints: inside the box, not under an occluder (alpha < 0.5 at its pixel), and
not self-occluded. Keypoints on the surface (nose, eyes, ears, toes, heels) are self-occluded when the rendered
depth at their pixel is more than 3 cm in front of them. Joints inside the body are visible when the surface seen
at their pixel belongs to a part the joint touches (the parts of the rest-body vertices within 2 cm of its nearest
vertex: the knee touches thigh and shin), or lies within a tolerance in front of them: 1.6 x the joint's
distance to the nearest rest vertex + 3 cm (about 17 cm for the pelvis, 6 cm for the wrists on the open body).
A joint seen through its own limb is visible (as an annotator would say); one behind another part is not.
Part maps are rendered from the mesh alone (as PARE's labels are): an occluder does not change them.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pare_jax import render
from pare_jax.data import occluders, poses, textures
from pare_jax.data.offline_labels import estimate_translation, posed_body
from smpl_jax.joints import SMPL_JOINT_NAMES

SPLITS = ("train", "test", "test_occluded")
_SPLIT_IDS = {name: i for i, name in enumerate(SPLITS)}
DISTANCE_M = (3.0, 12.0)
BOX_FILL = (1.1, 1.3)
BOX_JITTER = 0.05
# Clothing group of each SMPL part; sleeves and trouser legs switch between the garment and skin per person.
_GROUPS = {"skin": ("neck", "head", "left_wrist", "right_wrist", "left_hand", "right_hand"),
           "shoes": ("left_ankle", "right_ankle", "left_foot", "right_foot"),
           "bottom": ("pelvis", "left_hip", "right_hip"), "legs": ("left_knee", "right_knee"),
           "top": ("spine1", "spine2", "spine3", "left_collar", "right_collar", "left_shoulder",
                   "right_shoulder"), "sleeves": ("left_elbow", "right_elbow")}


def sample_rng(seed, split, index):
    """The generator of one sample: independent of how samples are batched, so builds are reproducible."""
    return np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index)])


def clothing_colors(rng):
    """[24, 3] float32 colour of each SMPL part."""
    skin = np.asarray([0.95, 0.76, 0.62]) * rng.uniform(0.35, 1.0)
    top, bottom, shoes = textures.random_color(rng, 3)
    color = {"skin": skin, "shoes": shoes, "bottom": bottom, "top": top,
             "legs": bottom if rng.uniform() < 0.7 else skin, "sleeves": top if rng.uniform() < 0.6 else skin}
    table = np.zeros((24, 3), np.float32)
    for group, names in _GROUPS.items():
        for name in names:
            table[SMPL_JOINT_NAMES.index(name)] = color[group] * rng.uniform(0.9, 1.1)
    return np.clip(table, 0.0, 1.0)


def sample_scene(rng, max_heading_deg=180.0):
    """One scene's random numbers: pose [72], betas [10], transl [3], colours [24, 3], light [3], ambient.
    max_heading_deg: how far from facing the camera the body may turn (180: any heading)."""
    orient = poses.sample_global_orient(rng, 1, max_heading_deg=max_heading_deg)[0]
    pose = np.concatenate([orient, poses.sample_body_pose(rng, 1)[0]])
    distance = rng.uniform(*DISTANCE_M)
    transl = np.asarray([rng.uniform(-0.5, 0.5), rng.uniform(-0.3, 0.3), distance], np.float32)
    light = np.asarray([rng.uniform(-1, 1), rng.uniform(-1, 0.3), -1.0])
    return {"pose": pose.astype(np.float32), "betas": poses.sample_betas(rng, 1)[0], "transl": transl,
            "colors": clothing_colors(rng), "light": (light / np.linalg.norm(light)).astype(np.float32),
            "ambient": np.float32(rng.uniform(0.25, 0.5))}


def person_box(vertices, rng):
    """Box around the projected body in normalised camera coordinates (X/Z, Y/Z): (centre [2], side).
    vertices [V, 3] camera axes with the translation."""
    xy = vertices[:, :2] / vertices[:, 2:3]
    lo, hi = xy.min(0), xy.max(0)
    side = float(np.max(hi - lo)) * rng.uniform(*BOX_FILL)
    centre = (lo + hi) / 2 + rng.uniform(-BOX_JITTER, BOX_JITTER, 2) * side
    return centre.astype(np.float32), np.float32(side)


def box_camera(centre, side, width, height, box_centre_px, box_side_px):
    """K [3, 3] that images the box (centre [2], side, normalised camera units) as a square of box_side_px
    pixels centred at box_centre_px (x, y) in a width x height picture."""
    focal = box_side_px / side
    pp = np.asarray(box_centre_px, np.float64) - np.asarray(centre, np.float64) * focal
    return np.asarray([[focal, 0, pp[0]], [0, focal, pp[1]], [0, 0, 1]], np.float32)


@functools.partial(jax.jit, static_argnames=("height", "width"))
def _render(body, vertices, K, vertex_colors, light, ambient, height, width):
    R = jnp.eye(3, dtype=vertices.dtype)
    frags = render.rasterize_batch(vertices, body.faces, K, R, jnp.zeros(3), height, width)

    def shade_one(frag, verts, colors, light_dir, amb):
        return render.shade(frag, verts, body.faces, R, jnp.zeros(3), vertex_colors=colors, light_dir=light_dir,
                            ambient=amb, diffuse=1.0 - amb)

    rgb, alpha = jax.vmap(shade_one)(frags, vertices, vertex_colors, light, ambient)
    labels = render.part_labels(frags, body.faces, body.vertex_parts())
    return rgb, alpha, labels.astype(jnp.uint8), render.depth_map(frags)


SURFACE_KEYPOINT_M = 0.01


def self_occlusion_rule(body, batch=1):
    """From the rest body: (tolerance [49] metres a keypoint may lie behind the visible surface, touches
    [49, 25] bool: label (0 background, 1..24 parts) whose sight at its pixel counts as visible).
    batch: rest bodies posed at once (the renderer's chunk, to reuse its compiled forward pass)."""
    zeros = jnp.zeros((batch, 72), jnp.float32)
    vertices, joints = posed_body(body, zeros, jnp.zeros((batch, 10), jnp.float32), zeros[:, :3])
    vertices, joints = np.asarray(vertices[0]), np.asarray(joints[0])
    parts = np.asarray(body.vertex_parts())
    touches = np.zeros((len(joints), 25), bool)
    tolerance = np.zeros(len(joints), np.float32)
    for k, joint in enumerate(joints):
        distance = np.sqrt(((vertices - joint) ** 2).sum(-1))
        nearest = distance.min()
        on_surface = nearest < SURFACE_KEYPOINT_M
        tolerance[k] = 0.03 if on_surface else 1.6 * nearest + 0.03
        if not on_surface:
            touches[k, 1 + np.unique(parts[distance <= nearest + 0.02])] = True
    return tolerance, touches


class SceneRenderer:
    """Samples and renders synthetic scenes with one body (e.g. smpl_jax.load("open")) and an occluder bank
    [N, O, O, 4] uint8 (occluders.make_occluder_bank). chunk: at most this many scenes per call; fewer are
    padded to it, so that every call reuses one compilation. max_heading_deg: see sample_scene."""

    def __init__(self, body, occluder_bank, chunk=16, max_heading_deg=180.0):
        self.body, self.bank, self.chunk = body, occluder_bank, chunk
        self.max_heading_deg = max_heading_deg
        self.tolerance, self.touches = self_occlusion_rule(body, chunk)
        self.parts = np.asarray(body.vertex_parts())

    def pose(self, scenes):
        """Pose the scenes' bodies (list of 1..chunk sample_scene dicts), padded to the chunk with the last one.
        Returns (vertices [chunk, V, 3], joints [chunk, 49, 3]) in camera axes, device arrays; take numpy
        copies of the first len(scenes) rows for framing."""
        if not 0 < len(scenes) <= self.chunk:
            raise ValueError(f"pass 1 to {self.chunk} scenes per call (the renderer's chunk), got {len(scenes)}")
        scenes = scenes + scenes[-1:] * (self.chunk - len(scenes))
        stack = lambda key: jnp.asarray(np.stack([s[key] for s in scenes]))  # noqa: E731
        return posed_body(self.body, stack("pose"), stack("betas"), stack("transl"))

    def render(self, scenes, posed, K, height, width):
        """The posed bodies of scenes (from pose) through cameras K [N, 3, 3]. Returns numpy rgb [N, H, W, 3],
        alpha [N, H, W], part labels [N, H, W] uint8, depth [N, H, W], joints [N, 49, 3]."""
        num, K = len(scenes), np.asarray(K)
        padded = scenes + scenes[-1:] * (self.chunk - num)
        K = np.concatenate([K, np.repeat(K[-1:], self.chunk - num, 0)])
        stack = lambda key: jnp.asarray(np.stack([s[key] for s in padded]))  # noqa: E731
        colors = jnp.asarray(np.stack([s["colors"][self.parts] for s in padded]))
        vertices, joints = posed
        out = _render(self.body, vertices, jnp.asarray(K), colors, stack("light"), stack("ambient"), height, width)
        return tuple(np.asarray(x)[:num] for x in out + (joints,))

    def compose(self, rng, rgb, alpha, occluder_plan):
        """Background + body + occluders for one picture. occluder_plan: list of (centre (x, y) px, side px).
        Returns (uint8 image [H, W, 3], occluder alpha [H, W])."""
        height, width = alpha.shape
        image = textures.random_texture(rng, height, width) * (1 - alpha[..., None]) + rgb
        covered = np.zeros((height, width), np.float32)
        for centre, side in occluder_plan:
            image, occ_alpha = occluders.paste(image, self.bank[rng.integers(len(self.bank))], centre, side)
            covered = np.maximum(covered, occ_alpha)
        return np.clip(np.round(image * 255), 0, 255).astype(np.uint8), covered

    def crops(self, split, indices, seed, size, crop_margin):
        """Stored-crop examples (pare_jax.data.schema keys, minus imgname) for sample numbers `indices`."""
        rngs = [sample_rng(seed, split, i) for i in indices]
        scenes = [sample_scene(rng, self.max_heading_deg) for rng in rngs]
        posed = self.pose(scenes)
        boxes = [person_box(v, rng) for v, rng in zip(np.asarray(posed[0]), rngs)]
        K = np.stack([box_camera(c, s, size, size, (size / 2, size / 2), size / crop_margin) for c, s in boxes])
        rgb, alpha, labels, depth, joints = self.render(scenes, posed, K, size, size)
        examples = []
        for i, index in enumerate(indices):
            examples.append(self._crop_example(rngs[i], split, scenes[i], boxes[i], K[i], rgb[i], alpha[i],
                                               labels[i], depth[i], joints[i], size, crop_margin, index))
        return examples

    def _crop_example(self, rng, split, scene, box, K, rgb, alpha, labels, depth, joints, size, crop_margin, index):
        centre, side = box
        keypoints_n = (joints[:, :2] / joints[:, 2:3] - centre) / (side / 2)
        in_box = (np.abs(keypoints_n) <= 1).all(-1)
        pixels = joints @ K.T
        pixels = pixels[:, :2] / pixels[:, 2:3]
        plan = occluder_plan(rng, split, pixels[25:][in_box[25:]], size / 2, size / crop_margin)
        image, covered = self.compose(rng, rgb, alpha, plan)
        visible = keypoint_visibility(pixels, joints[:, 2], depth, labels, covered, self.tolerance,
                                      self.touches) & in_box
        keypoints = np.concatenate([keypoints_n, np.ones((49, 1))], -1).astype(np.float32)
        root_free = joints - scene["transl"]
        cam_t, _ = estimate_translation(root_free[None, 25:], keypoints[None, 25:])
        return {"image": image, "part_map": labels[..., None], "has_part_map": np.float32(1),
                "keypoints": keypoints, "visibility": visible.astype(np.float32),
                "joints3d": np.concatenate([joints[25:], np.ones((24, 1))], -1).astype(np.float32),
                "has_joints3d": np.float32(1), "pose": scene["pose"], "betas": scene["betas"],
                "has_smpl": np.float32(1), "cam_t": cam_t[0].astype(np.float32),
                "crop_margin": np.float32(crop_margin), "gender": np.int32(-1), "sample_index": np.int64(index),
                # A synthetic "original image" is the stored crop itself: box centre and scale in its pixels.
                "box": np.asarray([size / 2, size / 2, size / crop_margin / 200.0], np.float32)}


def occluder_plan(rng, split, joint_pixels, box_centre, box_side):
    """[(centre (x, y), side)] in pixels. joint_pixels [J, 2]: ground-truth joints inside the box."""
    if split == "test" or (split == "train" and rng.uniform() < 0.5):
        return []
    if split == "test_occluded" and len(joint_pixels):
        count = int(rng.integers(1, 3))
        targets = joint_pixels[rng.integers(len(joint_pixels), size=count)]
        return [(tuple(t + rng.normal(0, 0.03 * box_side, 2)), rng.uniform(0.3, 0.5) * box_side) for t in targets]
    count = int(rng.integers(1, 4))
    centres = box_centre + rng.uniform(-0.5, 0.5, (count, 2)) * box_side
    return [(tuple(c), rng.uniform(0.2, 0.6) * box_side) for c in centres]


def keypoint_visibility(pixels, joint_depth, depth, labels, covered, tolerance, touches):
    """pixels [K, 2] continuous, joint_depth [K], depth map [H, W] (0 = background), part labels [H, W],
    occluder alpha [H, W], tolerance [K], touches [K, 25] (see self_occlusion_rule) -> [K] bool: in the picture,
    not under an occluder, and not self-occluded."""
    height, width = depth.shape
    col, row = np.floor(pixels[:, 0]).astype(int), np.floor(pixels[:, 1]).astype(int)
    inside = (col >= 0) & (col < width) & (row >= 0) & (row < height)
    col, row = np.clip(col, 0, width - 1), np.clip(row, 0, height - 1)
    surface = depth[row, col]
    unoccluded = covered[row, col] < 0.5
    own_part = touches[np.arange(len(pixels)), labels[row, col]]
    in_sight = (surface <= 0) | (joint_depth - surface <= tolerance) | own_part
    return inside & unoccluded & in_sight
