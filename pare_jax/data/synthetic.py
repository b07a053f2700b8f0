"""Synthetic people: random plausible bodies, rendered with clothing colours and lighting over procedural
backgrounds, with occluders, and every label exact. No download; deterministic for a seed.

    scenes = SceneRenderer(body, occluder_bank)
    examples = scenes.crops(split="train", indices=range(8), seed=0, size=96, crop_margin=1.5)

A scene: betas ~ N(0, 1) clipped to +-2.5, a pose within the joint limits of pare_jax.data.poses, an upright
orientation with a random heading (any, or within +-max_heading_deg of facing the camera), the body at 3-12 m
from a pinhole camera (off-axis by up to 0.5 m, so the perspective varies); a person box around the projected mesh (side 1.1-1.3x its bounding square, centre jittered
by 5 %), as a detector would give. Clothing: a skin, top, bottom and shoe colour per person, short or long
sleeves and trousers; Lambertian light from a random direction. Background: a procedural texture.

Splits: "train" (occluders on half the images, anywhere in the box; a fraction multi_person_ratio of the scenes
with other people), "test" (none), "test_occluded" (1-2 occluders each centred on a body joint, 30-50 % of the
box: body parts are covered, as in 3DPW-OCC), "test_person_occluded" (no objects; 1-3 other people, the first
of them in front of the target and overlapping it: the target is partly hidden by a person, as in 3DPW-PC).

People occluding people: a multi-person scene holds the target and 1-3 others (MAX_PEOPLE in all), each with
its own shape, pose (any heading), clothing and light. Each other person stands in front of the target (0.6-2 m
closer, probability 0.65, never nearer than 2 m to the camera) or behind it (0.5-3 m farther), its torso centre
offset sideways by 0.1-0.6 of the target's box side (in front) or 0.1-0.8 (behind) and a little up or down; in
test_person_occluded the first other person is in front and offset by only 0.05-0.3 box sides. The scene is
rendered as one z-buffered mesh; every label is for the target and exact: the part map holds the target's
visible pixels only (other people are background; objects pasted on top still do not change it, as for single
people), keypoint visibility comes from the whole scene's z-buffer, the full silhouette from the target
rendered alone, the visible one from the scene (the target's pixels not hidden by a person in front nor by an
object occluder: LASOR's S1 - S1 * S2), and OCHMR's context maps (pare_jax.data.context) from the projected
torso centres of everyone in the scene. The random numbers of the other people come from a stream of their own,
so the target of a sample is the same person at any multi_person_ratio.

Visibility of each of the 49 keypoints: inside the box, not under an occluder (alpha < 0.5 at its pixel), and
not self-occluded. Keypoints on the surface (nose, eyes, ears, toes, heels) are self-occluded when the rendered
depth at their pixel is more than 3 cm in front of them. Joints inside the body are visible when the surface seen
at their pixel belongs to a part the joint touches (the parts of the rest-body vertices within 2 cm of its nearest
vertex: the knee touches thigh and shin), or lies within a tolerance in front of them: 1.6 x the joint's
distance to the nearest rest vertex + 3 cm (about 17 cm for the pelvis, 6 cm for the wrists on the open body).
A joint seen through its own limb is visible (as an annotator would say); one behind another part is not.
Part maps are rendered from the mesh alone (as PARE's labels are): an occluder does not change them.

Stored besides the schema's labels: masks [S, S, 4] uint8 = (full silhouette, visible silhouette, local
context, global context) x 255.
"""
import functools

import jax
import jax.numpy as jnp
import numpy as np

from pare_jax import render
from pare_jax.data import context, occluders, poses, textures
from pare_jax.data.offline_labels import estimate_translation, posed_body
from smpl_jax.joints import SMPL_JOINT_NAMES

SPLITS = ("train", "test", "test_occluded", "test_person_occluded")
MAX_PEOPLE = 4  # the target and up to 3 others: one static scene mesh, absent people parked behind the camera
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


def sample_scene(rng, max_heading_deg=180.0, tilt_deg=poses.DEFAULT_TILT_DEG):
    """One scene's random numbers: pose [72], betas [10], transl [3], colours [24, 3], light [3], ambient.
    max_heading_deg: how far from facing the camera the body may turn (180: any heading); tilt_deg: the standard
    deviation of the forward / sideways lean (view augmentation widens both)."""
    orient = poses.sample_global_orient(rng, 1, tilt_deg=tilt_deg, max_heading_deg=max_heading_deg)[0]
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


@functools.partial(jax.jit, static_argnames=("height", "width"))
def _render_scene(vertices, faces, K, vertex_colors, light, ambient, height, width):
    """Several people as one mesh: vertices [N, P * V, 3], faces [P * F, 3] (person p's faces offset by p * V)
    -> rgb, alpha, face_index [N, H, W] (face // F is the person), depth."""
    R = jnp.eye(3, dtype=vertices.dtype)
    frags = render.rasterize_batch(vertices, faces, K, R, jnp.zeros(3), height, width)

    def shade_one(frag, verts, colors, light_dir, amb):
        return render.shade(frag, verts, faces, R, jnp.zeros(3), vertex_colors=colors, light_dir=light_dir,
                            ambient=amb, diffuse=1.0 - amb)

    rgb, alpha = jax.vmap(shade_one)(frags, vertices, vertex_colors, light, ambient)
    return rgb, alpha, frags.face_index, render.depth_map(frags)


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
    padded to it, so that every call reuses one compilation. max_heading_deg, tilt_deg: of the target, see
    sample_scene. multi_person_ratio: the fraction of training scenes with other people (test_person_occluded:
    all; test, test_occluded: none)."""

    def __init__(self, body, occluder_bank, chunk=16, max_heading_deg=180.0, multi_person_ratio=0.0,
                 tilt_deg=poses.DEFAULT_TILT_DEG):
        if not 0.0 <= multi_person_ratio <= 1.0:
            raise ValueError(f"multi_person_ratio must be in [0, 1], got {multi_person_ratio}")
        self.body, self.bank, self.chunk = body, occluder_bank, chunk
        self.max_heading_deg, self.tilt_deg = max_heading_deg, tilt_deg
        self.multi_person_ratio = multi_person_ratio
        self.tolerance, self.touches = self_occlusion_rule(body, chunk)
        self.parts = np.asarray(body.vertex_parts())
        self.face_parts = np.asarray(render.face_part_labels(body.faces, self.parts))
        num_vertices = body.num_vertices
        self.scene_faces = jnp.asarray(np.concatenate([np.asarray(body.faces) + p * num_vertices
                                                       for p in range(MAX_PEOPLE)]))

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

    def others(self, seed, split, index, target, box):
        """The other people of sample `index` (sample_scene dicts with their placement; [] for a single person),
        from their own random stream. target: the target's scene; box: its person_box (centre, side)."""
        rng = np.random.default_rng([int(seed), _SPLIT_IDS[split], int(index), 1])
        if split == "test_person_occluded" or (split == "train" and rng.uniform() < self.multi_person_ratio):
            count = int(rng.integers(1, MAX_PEOPLE))
        else:
            return []
        centre, side = box
        target_z = float(target["transl"][2])
        people = []
        for j in range(count):
            person = sample_scene(rng, 180.0, self.tilt_deg)
            overlapping = j == 0 and split == "test_person_occluded"  # the person that hides part of the target
            if overlapping or rng.uniform() < 0.65:
                depth = max(target_z - rng.uniform(0.6, 2.0), 2.0)
                shift = rng.uniform(0.05, 0.3) if overlapping else rng.uniform(0.1, 0.6)
            else:
                depth = target_z + rng.uniform(0.5, 3.0)
                shift = rng.uniform(0.1, 0.8)
            offset = np.asarray([rng.choice([-1.0, 1.0]) * shift, rng.uniform(-0.15, 0.15)]) * side
            person["image_centre"] = (centre + offset).astype(np.float32)  # where its torso centre lands (X/Z)
            person["depth"] = np.float32(depth)
            people.append(person)
        return people

    def _pose_others(self, others):
        """Pose every other person (flat list), translated so its torso centre lands at image_centre at depth.
        Returns [(vertices [V, 3], joints [49, 3], colours [24, 3])] numpy, camera axes."""
        out = []
        for start in range(0, len(others), self.chunk):
            group = [dict(p, transl=np.zeros(3, np.float32)) for p in others[start:start + self.chunk]]
            vertices, joints = (np.asarray(x)[:len(group)] for x in self.pose(group))
            for person, v, j in zip(group, vertices, joints):
                torso = j[[25 + k for k in context.TORSO_GT_JOINTS]].mean(0)
                z = float(person["depth"])
                transl = np.asarray([person["image_centre"][0] * z, person["image_centre"][1] * z, z]) - torso
                out.append((v + transl, j + transl, person["colors"]))
        return out

    def render_scenes(self, scenes, posed, others, K, height, width):
        """Every picture of the chunk as one scene mesh: the target (from pose) and its others (from
        _pose_others, per picture). Returns numpy rgb, alpha, face_index [N, H, W] (face // F is the person,
        0 the target), depth. Absent people are parked behind the camera, whose faces the rasterizer drops."""
        num, K = len(scenes), np.asarray(K)
        targets = np.asarray(posed[0])[:num]
        vertices, colors = [], []
        for i in range(self.chunk):
            k = min(i, num - 1)
            people = [targets[k]] + [v for v, _, _ in others[k]]
            palette = [scenes[k]["colors"]] + [c for _, _, c in others[k]]
            parked = targets[k] * np.asarray([1.0, 1.0, -1.0], np.float32)
            while len(people) < MAX_PEOPLE:
                people.append(parked)
                palette.append(scenes[k]["colors"])
            vertices.append(np.concatenate(people))
            colors.append(np.concatenate([c[self.parts] for c in palette]))
        padded = scenes + scenes[-1:] * (self.chunk - num)
        stack = lambda key: jnp.asarray(np.stack([s[key] for s in padded]))  # noqa: E731
        K = np.concatenate([K, np.repeat(K[-1:], self.chunk - num, 0)])
        out = _render_scene(jnp.asarray(np.stack(vertices)), self.scene_faces, jnp.asarray(K),
                            jnp.asarray(np.stack(colors)), stack("light"), stack("ambient"), height, width)
        return tuple(np.asarray(x)[:num] for x in out)

    def crops(self, split, indices, seed, size, crop_margin):
        """Stored-crop examples (pare_jax.data.schema keys, minus imgname) for sample numbers `indices`."""
        rngs = [sample_rng(seed, split, i) for i in indices]
        scenes = [sample_scene(rng, self.max_heading_deg, self.tilt_deg) for rng in rngs]
        posed = self.pose(scenes)
        targets = np.asarray(posed[0])[:len(scenes)]
        boxes = [person_box(v, rng) for v, rng in zip(targets, rngs)]
        K = np.stack([box_camera(c, s, size, size, (size / 2, size / 2), size / crop_margin) for c, s in boxes])
        rgb, alpha, labels, depth, joints = self.render(scenes, posed, K, size, size)
        full = labels > 0  # the target alone
        others = [self.others(seed, split, i, scene, box) for i, scene, box in zip(indices, scenes, boxes)]
        posed_others = self._pose_others([p for group in others for p in group])
        per_picture, start = [], 0
        for group in others:
            per_picture.append(posed_others[start:start + len(group)])
            start += len(group)
        if any(others):  # one scene render for the chunk; single people in it come out as rendered alone
            rgb, alpha, face_index, depth = self.render_scenes(scenes, posed, per_picture, K, size, size)
            num_faces = len(self.face_parts)
            labels = np.where((face_index >= 0) & (face_index < num_faces),
                              self.face_parts[np.clip(face_index, 0, num_faces - 1)] + 1, 0).astype(np.uint8)
        examples = []
        for i, index in enumerate(indices):
            centres, sigmas = self._centres(K[i], joints[i], boxes[i], per_picture[i], size / crop_margin)
            maps = context.context_maps(centres, sigmas, 0, size, size)
            examples.append(self._crop_example(rngs[i], split, scenes[i], boxes[i], K[i], rgb[i], alpha[i],
                                               labels[i], depth[i], joints[i], size, crop_margin, index, full[i],
                                               maps))
        return examples

    @staticmethod
    def _centres(K, joints, box, others, box_side_px):
        """Pixel centres [P, 2] and sigmas [P] of the target (first) and the others for the context maps."""
        def centre(j):
            gt = j[25:] @ K.T  # the 24 ground-truth joints in pixels
            return context.body_centre(gt[:, :2] / gt[:, 2:3])

        centres, sigmas = [centre(joints)], [context.sigma_for_box(box_side_px)]
        for vertices, j, _ in others:
            xy = vertices[:, :2] / vertices[:, 2:3]
            side_px = float(np.max(xy.max(0) - xy.min(0))) * np.mean(BOX_FILL) * K[0, 0]
            centres.append(centre(j))
            sigmas.append(context.sigma_for_box(side_px))
        return np.stack(centres), np.asarray(sigmas)

    def _crop_example(self, rng, split, scene, box, K, rgb, alpha, labels, depth, joints, size, crop_margin, index,
                      full, maps):
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
        masks = np.stack([full, (labels > 0) & (covered < 0.5), maps[..., 0], maps[..., 1]], axis=-1)
        return {"image": image, "part_map": labels[..., None], "has_part_map": np.float32(1),
                "keypoints": keypoints, "visibility": visible.astype(np.float32),
                "joints3d": np.concatenate([joints[25:], np.ones((24, 1))], -1).astype(np.float32),
                "has_joints3d": np.float32(1), "pose": scene["pose"], "betas": scene["betas"],
                "has_smpl": np.float32(1), "cam_t": cam_t[0].astype(np.float32),
                "crop_margin": np.float32(crop_margin), "gender": np.int32(-1), "sample_index": np.int64(index),
                "masks": np.round(masks.astype(np.float32) * 255).astype(np.uint8),
                "has_silhouette": np.float32(1), "has_context": np.float32(1),
                # A synthetic "original image" is the stored crop itself: box centre and scale in its pixels.
                "box": np.asarray([size / 2, size / 2, size / crop_margin / 200.0], np.float32)}


def occluder_plan(rng, split, joint_pixels, box_centre, box_side):
    """[(centre (x, y), side)] in pixels. joint_pixels [J, 2]: ground-truth joints inside the box."""
    if split in ("test", "test_person_occluded") or (split == "train" and rng.uniform() < 0.5):
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
