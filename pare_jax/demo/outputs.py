"""What the demo writes: meshes shaded over the image, a side view, part-attention pictures, .npz/.obj/.glb.

Camera axes (the .npz): x right, y down, z forward from the camera, metres; the image camera of
pare_jax.demo.geometry (focal F, principal point at the image centre). Mesh files (.obj, .glb) use glTF's
y-up axes instead (x right, y up, the camera at the origin looking along -z), so they open upright in viewers.
"""
import colorsys
import functools
import io

import jax
import jax.numpy as jnp
import numpy as np

from pare_jax import render
from pare_jax.body_demo import part_palette
from pare_jax.demo.geometry import image_camera
from pare_jax.files import write_atomic, write_obj

TO_VIEWER = np.diag([1.0, -1.0, -1.0])  # camera axes -> glTF axes (a 180 degree turn about x)
OVERLAY_OPACITY = 0.85
SIDE_BACKGROUND = 0.92


def person_colors(count):
    """[count, 3] float colours in [0, 1], one per person, distinct and light."""
    return np.asarray([colorsys.hsv_to_rgb((0.58 + 0.37 * i) % 1.0, 0.45, 0.95) for i in range(count)],
                      np.float32)


@functools.partial(jax.jit, static_argnames=("height", "width"))
def _render_person(vertices, faces, K, color, height, width):
    """(rgb [H, W, 3], alpha [H, W], depth [H, W] with inf on the background) of one mesh in camera axes."""
    eye, zero = jnp.eye(3), jnp.zeros(3)
    frags = render.rasterize(vertices, faces, K, eye, zero, height, width)
    colors = jnp.broadcast_to(color, (vertices.shape[0], 3))
    rgb, alpha = render.shade(frags, vertices, faces, eye, zero, vertex_colors=colors)
    return rgb, alpha, jnp.where(frags.face_index >= 0, frags.depth, jnp.inf)


def render_people(vertices, faces, focal_length, image_hw, colors):
    """Shade every person's mesh vertices [P, V, 3] (camera axes, translation applied) in the image camera and
    keep the nearest surface per pixel. Returns (rgb [H, W, 3] float, alpha [H, W]). Each person is rasterized
    on its own so that one compiled renderer serves any number of people."""
    height, width = image_hw
    K = image_camera(focal_length, image_hw)
    rgb, alpha = np.zeros((height, width, 3), np.float32), np.zeros((height, width), np.float32)
    nearest = np.full((height, width), np.inf, np.float32)
    for person, color in zip(vertices, colors):
        p_rgb, p_alpha, p_depth = (np.asarray(x) for x in _render_person(
            jnp.asarray(person, jnp.float32), faces, jnp.asarray(K), jnp.asarray(color), height=height, width=width))
        front = p_depth < nearest
        rgb[front], alpha[front], nearest[front] = p_rgb[front], p_alpha[front], p_depth[front]
    return rgb, alpha


def overlay_picture(image, vertices, faces, focal_length, colors):
    """The meshes shaded over image [H, W, 3] uint8 -> uint8."""
    if len(vertices) == 0:
        return image.copy()
    rgb, alpha = render_people(vertices, faces, focal_length, image.shape[:2], colors)
    return np.asarray(render.overlay(image, rgb, alpha, OVERLAY_OPACITY))


def side_picture(vertices, faces, focal_length, image_hw, colors):
    """The same people seen from their right: turned 90 degrees about the vertical axis through the centre of
    the scene, on a light background. -> [H, W, 3] uint8."""
    background = np.full(tuple(image_hw) + (3,), round(SIDE_BACKGROUND * 255), np.uint8)
    if len(vertices) == 0:
        return background
    centre = vertices.reshape(-1, 3).mean(0)
    turn = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # about camera y (down)
    turned = (vertices - centre) @ turn.T + centre
    rgb, alpha = render_people(turned, faces, focal_length, image_hw, colors)
    return np.asarray(render.overlay(background, rgb, alpha, 1.0))


def attention_picture(crop, segm_logits, size=224):
    """One person's part attention over the crop: each pixel takes the colour of the part that attends to it
    most (each part map softmax-normalised over the pixels, as PARE's attention), with opacity from that
    part's attention. crop [h, w, 3] float in [0, 1], segm_logits [m, m, C] (C = 25 with the background map
    first, or 24) -> [size, size, 3] uint8."""
    logits = np.asarray(segm_logits, np.float64)
    parts = logits[..., 1:] if logits.shape[-1] == 25 else logits
    flat = parts.reshape(-1, parts.shape[-1])
    attention = np.exp(flat - flat.max(0))
    attention = (attention / attention.sum(0)).reshape(parts.shape)
    strongest = attention / attention.reshape(-1, parts.shape[-1]).max(0)  # each part's peak = 1
    label = strongest.argmax(-1)
    opacity = np.clip(strongest.max(-1), 0, 1) * 0.75
    colors = part_palette()[label + 1].astype(np.float32) / 255
    m = logits.shape[0]
    up = lambda x: np.repeat(np.repeat(x, -(-size // m), 0), -(-size // m), 1)[:size, :size]  # noqa: E731
    from PIL import Image
    base = np.asarray(Image.fromarray(np.uint8(np.clip(crop, 0, 1) * 255)).resize((size, size)), np.float32) / 255
    out = base * (1 - up(opacity)[..., None]) + up(colors) * up(opacity)[..., None]
    return np.uint8(np.round(np.clip(out, 0, 1) * 255))


def write_npz(path, arrays):
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_atomic(path, buffer.getvalue())


def write_meshes(obj_paths, glb_path, vertices, faces, colors):
    """One .obj per person and one .glb scene of everyone (vertex colours), in glTF axes. vertices [P, V, 3]."""
    import trimesh
    faces = np.asarray(faces)
    scene = trimesh.Scene()
    for i, (path, person) in enumerate(zip(obj_paths, vertices)):
        viewer = np.asarray(person, np.float64) @ TO_VIEWER.T
        write_obj(path, viewer, faces)
        color = np.uint8(np.round(np.append(colors[i], 1.0) * 255))
        mesh = trimesh.Trimesh(viewer, faces, vertex_colors=np.tile(color, (len(viewer), 1)), process=False)
        scene.add_geometry(mesh, node_name=f"person{i}", geom_name=f"person{i}")
    if glb_path is not None:
        write_atomic(glb_path, scene.export(file_type="glb"))
