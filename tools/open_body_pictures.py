"""Pictures of the open body (or any SMPL-format file) at rest, posed and reshaped, to check it by eye.

    .venv/bin/python tools/open_body_pictures.py [--model open] [--out /tmp/open_body_pictures]

Writes one PNG per pose/shape with a front view (the body faces the viewer, its left on the image right) and a
side view (seen from the body's left, facing right), coloured by part label with flat shading, joints as dots.
Pure numpy + Pillow: a painter's algorithm (faces drawn far to near), orthographic projection.
"""
import argparse
import colorsys
import os
import sys

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import smpl_jax  # noqa: E402
from smpl_jax.joints import SMPL_JOINT_NAMES  # noqa: E402

SIZE = 480
LIGHT = np.array([0.3, 0.5, 1.0]) / np.linalg.norm([0.3, 0.5, 1.0])


def named_pose(**rotations):
    """Body pose [69] from {joint name: axis-angle (3,)} (SMPL frame: y up, facing +z, left +x)."""
    pose = np.zeros((23, 3))
    for name, aa in rotations.items():
        pose[SMPL_JOINT_NAMES.index(name) - 1] = aa
    return pose.reshape(-1)


def poses():
    deg = np.pi / 180
    return {
        "rest": named_pose(),
        "arms_down": named_pose(left_shoulder=(0, 0, -75 * deg), right_shoulder=(0, 0, 75 * deg)),
        "arms_raised": named_pose(left_shoulder=(0, 0, 80 * deg), right_shoulder=(0, 0, -80 * deg)),
        "knees_bent": named_pose(left_hip=(-45 * deg, 0, 0), right_hip=(-45 * deg, 0, 0),
                                 left_knee=(90 * deg, 0, 0), right_knee=(90 * deg, 0, 0)),
        "sitting": named_pose(left_hip=(-90 * deg, 0, 0), right_hip=(-90 * deg, 0, 0),
                              left_knee=(90 * deg, 0, 0), right_knee=(90 * deg, 0, 0),
                              left_shoulder=(0, 0, -70 * deg), right_shoulder=(0, 0, 70 * deg),
                              left_elbow=(0, -60 * deg, 0), right_elbow=(0, 60 * deg, 0)),
        "walk_twist": named_pose(left_hip=(-30 * deg, 0, 0), right_hip=(25 * deg, 0, 0), right_knee=(40 * deg, 0, 0),
                                 spine1=(0, 15 * deg, 0), spine2=(0, 15 * deg, 0), neck=(0, -20 * deg, 0),
                                 head=(20 * deg, 0, 0), left_shoulder=(0, 0, -70 * deg),
                                 right_shoulder=(0, 0, 70 * deg), left_elbow=(0, -90 * deg, 0)),
    }


def part_colours(count=24):
    return np.array([colorsys.hsv_to_rgb((k * 0.381966) % 1.0, 0.45, 0.95) for k in range(count)])


def render(vertices, faces, face_colours, points, view, extent=2.1, centre=None):
    """One orthographic view. vertices [V, 3], faces [F, 3], face_colours [F, 3] in [0, 1], points [K, 3].

    extent: metres across the picture (fixed, so that shapes compare); centre: [3] or None for the middle of
    the mesh's bounding box."""
    if view == "side":  # seen from +x: image right = +z (the body's front)
        rotation = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])
    else:
        rotation = np.eye(3)
    v, p = vertices @ rotation.T, points @ rotation.T
    centre = (v.max(0) + v.min(0)) / 2 if centre is None else rotation @ centre
    scale = SIZE / extent
    to_pixels = lambda q: np.stack([SIZE / 2 + (q[:, 0] - centre[0]) * scale,  # noqa: E731
                                    SIZE / 2 - (q[:, 1] - centre[1]) * scale], 1)
    tri = v[faces]
    normals = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-12
    shade = 0.25 + 0.75 * np.clip(normals @ LIGHT, 0, 1)
    facing = normals[:, 2] > 0  # back faces are hidden by front faces of a closed surface anyway
    order = np.argsort(tri[:, :, 2].mean(1))  # far (small z) first
    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    pixels = to_pixels(v)
    visible = facing & (np.abs(tri[:, :, :2] - centre[:2]).max((1, 2)) < extent)  # skip what is off the picture
    for f in order[visible[order]]:
        colour = tuple(int(255 * c) for c in face_colours[f] * shade[f])
        draw.polygon([tuple(pixels[i]) for i in faces[f]], fill=colour)
    for x, y in to_pixels(p):
        draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=(200, 0, 0))
    return image


def picture(body, name, pose, betas, out_dir):
    out = body(betas=betas[None], body_pose=pose[None], joints="spin49")
    vertices, joints = np.asarray(out.vertices[0]), np.asarray(out.joints[0])
    faces = np.asarray(body.faces)
    parts = np.asarray(body.vertex_parts())
    colours = part_colours()[parts[faces[:, 0]]]
    views = [render(vertices, faces, colours, joints, view) for view in ("front", "side")]
    return save_sheet(views, os.path.join(out_dir, f"{name}.png"), name)


def keypoint_closeups(body, ids, out_dir):
    """Head and feet at rest, large, with the 11 keypoint vertices (nose, eyes, ears, toes, heels) as dots."""
    out = body()
    vertices, faces = np.asarray(out.vertices[0]), np.asarray(body.faces)
    keypoints = vertices[ids]
    colours = np.full((len(faces), 3), 0.85)
    head, feet = keypoints[:5].mean(0), keypoints[5:].mean(0)
    views = [render(vertices, faces, colours, keypoints, view, extent, centre)
             for centre, extent in ((head, 0.3), (feet, 0.5)) for view in ("front", "side")]
    return save_sheet(views, os.path.join(out_dir, "keypoints.png"), "keypoints")


def save_sheet(views, path, title):
    """Paste views side by side and write the PNG through a temporary file."""
    sheet = Image.new("RGB", (len(views) * SIZE, SIZE), (255, 255, 255))
    for k, view in enumerate(views):
        sheet.paste(view, (k * SIZE, 0))
    ImageDraw.Draw(sheet).text((8, 8), title, fill=(0, 0, 0))
    tmp = path + ".tmp.png"
    sheet.save(tmp)
    os.replace(tmp, path)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="open", help="'open' or the path of an SMPL-format file")
    parser.add_argument("--out", default="/tmp/open_body_pictures")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    body = smpl_jax.load(args.model)
    zero = np.zeros(body.num_betas)
    ids = smpl_jax.read_model_arrays(smpl_jax.resolve(args.model)).get("keypoint_vertex_ids")
    if ids is None and body.num_vertices == 6890:
        ids = np.asarray(smpl_jax.joints.SMPL_KEYPOINT_VERTEX_IDS)
    if ids is not None:
        print(keypoint_closeups(body, ids, args.out))
    for name, pose in poses().items():
        print(picture(body, name, pose, zero, args.out))
    for k in range(min(4, body.num_betas)):
        for sign in (-2, 2):
            betas = zero.copy()
            betas[k] = sign
            print(picture(body, f"beta{k + 1}_{sign:+d}", poses()["rest"], betas, args.out))


if __name__ == "__main__":
    main()
