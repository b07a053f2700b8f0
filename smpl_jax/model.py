"""The SMPL body model as a JAX pytree: shape and pose blend shapes, forward kinematics, linear blend skinning.

`SMPL` holds only arrays (plus the kinematic tree as static metadata), so a model can be passed into jit, vmap
and grad like any other argument; its forward works for any batch size without rebuilding anything.
Argument and output names follow smplx (betas, body_pose, global_orient, transl; vertices, joints, full_pose).
"""
import dataclasses
from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from smpl_jax import joints as joint_sets
from smpl_jax.io import normalize_arrays
from smpl_jax.rotations import axis_angle_to_matrix


MAX_SPARSE_INFLUENCES = 8


class SMPLOutput(NamedTuple):
    """vertices [B, V, 3] (None when return_verts=False), joints [B, K, 3] (K from the joint set),
    transforms [B, J, 4, 4] world transform of each joint frame (transl included), full_pose [B, J, 3, 3]
    local rotations, betas [B, S], transl [B, 3]."""
    vertices: Optional[jax.Array]
    joints: jax.Array
    transforms: jax.Array
    full_pose: jax.Array
    betas: jax.Array
    transl: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SMPL:
    """An SMPL-format body. Array shapes (V vertices, J joints, S shape components, P = 9 (J - 1)):

    blendshapes [1 + S + P, V*3]: the template, the S shape directions and the P pose correctives stacked so
    that one matrix product [1, betas, pose_feature] @ blendshapes gives the unposed vertices (the pose feature
    is R - I of joints 1..J-1, joint-major, row-major); v_template [V, 3], shapedirs [S, V*3] and posedirs
    [P, V*3] are views of it; J_regressor [J, V]; joint_template [J, 3] and joint_shapedirs [S, J, 3] (the rest joints as a
    function of betas, precomputed so the joints-only path never touches vertices); weights [V, J]; faces [F, 3];
    parents: static tuple, -1 for the root. skin_joints / skin_weights [K, V]: the K largest skinning weights of
    each vertex and their joints, where every vertex has at most K <= 8 non-zero weights (as in SMPL); skinning
    then gathers K joint transforms per vertex instead of a dense [V, J] product, about twice as fast on a CPU
    (None when the weights are dense).

    Joints computed from posed vertices (keypoint vertices, the SPIN extra regressor, the H36M regressor) are
    rows of one vertex_joint_regressor [K, V]; vertex_joint_groups names its row blocks, e.g.
    (("keypoints", 11), ("extra", 9), ("h36m", 17)). vertex_joint_support [N] lists the vertices with a non-zero
    weight in any row and vertex_joint_regressor_support [K, N] the matching columns, so that the joints-only
    path skins N vertices instead of V. Build models with smpl_jax.load or SMPL.from_arrays.
    """
    blendshapes: jax.Array
    J_regressor: jax.Array
    joint_template: jax.Array
    joint_shapedirs: jax.Array
    weights: jax.Array
    faces: jax.Array
    skin_joints: Optional[jax.Array] = None
    skin_weights: Optional[jax.Array] = None
    vertex_joint_regressor: Optional[jax.Array] = None
    vertex_joint_support: Optional[jax.Array] = None
    vertex_joint_regressor_support: Optional[jax.Array] = None
    parents: tuple = dataclasses.field(default=(), metadata=dict(static=True))
    num_betas: int = dataclasses.field(default=10, metadata=dict(static=True))
    vertex_joint_groups: tuple = dataclasses.field(default=(), metadata=dict(static=True))

    @classmethod
    def from_arrays(cls, arrays, dtype=jnp.float32, num_betas=None):
        """Build a model from a dict of numpy arrays as returned by smpl_jax.io.read_model_arrays.

        num_betas keeps the first components only (e.g. 10 of SMPL v1.1's 300). Optional keys:
        keypoint_vertex_ids [11], extra_regressor [9, V], h36m_regressor [17, V]. Official key names
        (f, kintree_table) are accepted too.
        """
        arrays = normalize_arrays(arrays)
        v_template = np.asarray(arrays["v_template"], np.float64)
        num_v = v_template.shape[0]
        shapedirs = np.asarray(arrays["shapedirs"], np.float64)
        if num_betas is not None:
            if not 0 < num_betas <= shapedirs.shape[2]:
                raise ValueError(f"num_betas={num_betas}, but the model has {shapedirs.shape[2]} shape components")
            shapedirs = shapedirs[:, :, :num_betas]
        j_reg = np.asarray(arrays["J_regressor"], np.float64)
        groups, rows = [], []
        if arrays.get("keypoint_vertex_ids") is not None:
            ids = np.asarray(arrays["keypoint_vertex_ids"])
            groups.append(("keypoints", len(ids)))
            picks = np.zeros((len(ids), num_v))
            picks[np.arange(len(ids)), ids] = 1.0
            rows.append(picks)
        for key, group in (("extra_regressor", "extra"), ("h36m_regressor", "h36m")):
            if arrays.get(key) is not None:
                groups.append((group, arrays[key].shape[0]))
                rows.append(np.asarray(arrays[key], np.float64))
        as_jnp = lambda x: jnp.asarray(x, dtype)  # noqa: E731
        weights = np.asarray(arrays["weights"], np.float64)
        influences = int(np.max(np.sum(weights != 0, axis=1)))
        skin_fields = {}
        if influences <= MAX_SPARSE_INFLUENCES:
            order = np.argsort(-np.abs(weights), axis=1, kind="stable")[:, :influences]
            skin_fields = dict(skin_joints=jnp.asarray(order.T, jnp.int32),
                               skin_weights=as_jnp(np.take_along_axis(weights, order, axis=1).T))
        vertex_fields = {}
        if rows:
            regressor = np.concatenate(rows)
            support = np.flatnonzero(np.any(regressor != 0, axis=0))
            vertex_fields = dict(vertex_joint_regressor=as_jnp(regressor),
                                 vertex_joint_support=jnp.asarray(support, jnp.int32),
                                 vertex_joint_regressor_support=as_jnp(regressor[:, support]))
        blendshapes = np.concatenate([
            v_template.reshape(1, -1),
            shapedirs.transpose(2, 0, 1).reshape(shapedirs.shape[2], -1),
            np.asarray(arrays["posedirs"]).transpose(2, 0, 1).reshape(-1, num_v * 3),
        ])
        return cls(
            blendshapes=as_jnp(blendshapes),
            num_betas=shapedirs.shape[2],
            J_regressor=as_jnp(j_reg),
            joint_template=as_jnp(j_reg @ v_template),
            joint_shapedirs=as_jnp(np.einsum("jv,vcs->sjc", j_reg, shapedirs)),
            weights=as_jnp(weights),
            faces=jnp.asarray(arrays["faces"], jnp.int32),
            parents=tuple(int(p) for p in arrays["parents"]),
            vertex_joint_groups=tuple(groups),
            **vertex_fields,
            **skin_fields,
        )

    @property
    def v_template(self):
        return self.blendshapes[0].reshape(-1, 3)

    @property
    def shapedirs(self):
        return self.blendshapes[1:1 + self.num_betas]

    @property
    def posedirs(self):
        return self.blendshapes[1 + self.num_betas:]

    @property
    def num_vertices(self):
        return self.blendshapes.shape[1] // 3

    @property
    def num_joints(self):
        return len(self.parents)

    @property
    def dtype(self):
        return self.blendshapes.dtype

    def vertex_parts(self):
        """Part index (0..J-1) of every vertex: the joint with the largest skinning weight. [V] int32."""
        return jnp.argmax(self.weights, axis=1).astype(jnp.int32)

    def __call__(self, betas=None, body_pose=None, global_orient=None, transl=None, return_verts=True,
                 joints="smpl24"):
        """Pose and shape the body.

        betas [B, S'] with S' <= num_betas (missing components are zero). body_pose as axis-angle [B, 69] or
        [B, 23, 3], or rotation matrices [B, 23, 3, 3] or [B, 207]; global_orient as [B, 3], [B, 1, 3],
        [B, 3, 3] or [B, 1, 3, 3]; transl [B, 3]. global_orient rotates about the pelvis (the rest root joint),
        then transl is added, as in smplx. Any argument may be None (zero). joints: a name from
        smpl_jax.joints.JOINT_SETS ('smpl24', 'spin49', 'h36m17', 'h36m14', 'openpose25').
        With return_verts=False only the vertices that the joint set needs are skinned (the fast path).
        The forward is jitted (compiled once per input shape; inlined when called under an outer jit).
        """
        return _jitted_forward(self, betas, body_pose, global_orient, transl, return_verts, joints)

    def _forward(self, betas, body_pose, global_orient, transl, return_verts, joints):
        batch = _batch_size(betas, body_pose, global_orient, transl)
        rot = self._pose_matrices(body_pose, global_orient, batch)
        betas = self._betas(betas, batch)
        transl = jnp.zeros((batch, 3), self.dtype) if transl is None else jnp.asarray(transl, self.dtype)
        rest_joints = self.joint_template + jnp.einsum("bs,sjc->bjc", betas, self.joint_shapedirs)
        world = forward_kinematics(rot, rest_joints, self.parents)
        posed_joints = world[..., :3, 3] + transl[:, None]
        skinning = _skinning_transforms(world, rest_joints)
        vertices = self._skin(betas, rot, skinning, None) + transl[:, None] if return_verts else None

        def vertex_joints():
            if self.vertex_joint_regressor is None:
                return {}
            if vertices is not None:
                stacked = jnp.einsum("kv,bvc->bkc", self.vertex_joint_regressor, vertices)
            else:
                subset = self._skin(betas, rot, skinning, self.vertex_joint_support) + transl[:, None]
                stacked = jnp.einsum("kn,bnc->bkc", self.vertex_joint_regressor_support, subset)
            return _split_groups(stacked, self.vertex_joint_groups)

        out_joints = joint_sets.compute(joints, posed_joints, vertex_joints)
        world = world.at[..., :3, 3].add(transl[:, None])
        return SMPLOutput(vertices, out_joints, world, rot, betas, transl)

    def _betas(self, betas, batch):
        if betas is None:
            return jnp.zeros((batch, self.num_betas), self.dtype)
        betas = jnp.asarray(betas, self.dtype)
        if betas.ndim != 2 or betas.shape[1] > self.num_betas:
            raise ValueError(f"betas must be [B, S] with S <= {self.num_betas} (this model's shape components); "
                             f"got shape {betas.shape}")
        return jnp.pad(betas, ((0, 0), (0, self.num_betas - betas.shape[1])))

    def _pose_matrices(self, body_pose, global_orient, batch):
        """Local rotations of all joints, [B, J, 3, 3]."""
        body = _as_matrices(body_pose, self.num_joints - 1, batch, self.dtype, "body_pose")
        root = _as_matrices(global_orient, 1, batch, self.dtype, "global_orient")
        return jnp.concatenate([root, body], axis=1)

    def _skin(self, betas, rot, skinning, ids):
        """Shape and pose blend shapes, then linear blend skinning, for all vertices (ids=None) or a subset.

        skinning [B, J, 3, 4] -> vertices [B, V', 3]. Template, shape and pose blend shapes are one matrix
        product [B, 1+S+P] x [1+S+P, V*3], the bulk of the work; then each vertex blends its joints' transforms.
        """
        batch = betas.shape[0]
        blendshapes, skin_joints, skin_weights, weights = (self.blendshapes, self.skin_joints, self.skin_weights,
                                                            self.weights)
        if ids is not None:  # joints-only path: blend and skin just these vertices
            weights = weights[ids]
            blendshapes = blendshapes.reshape(blendshapes.shape[0], -1, 3)[:, ids].reshape(blendshapes.shape[0], -1)
            if skin_joints is not None:
                skin_joints, skin_weights = skin_joints[:, ids], skin_weights[:, ids]
        eye = jnp.eye(3, dtype=rot.dtype)
        coefficients = jnp.concatenate(
            [jnp.ones((batch, 1), rot.dtype), betas, (rot[:, 1:] - eye).reshape(batch, -1)], axis=1)
        v_posed = (coefficients @ blendshapes).reshape(batch, -1, 3)
        if skin_joints is None:
            per_vertex = jnp.einsum("vj,bjk->bvk", weights, skinning.reshape(batch, -1, 12))
            per_vertex = per_vertex.reshape(batch, -1, 3, 4)
            return jnp.einsum("bvik,bvk->bvi", per_vertex[..., :3], v_posed) + per_vertex[..., 3]
        # Vertex axis last, and every gathered value used exactly once, so that the gathers, products and sums
        # fuse into one vectorised loop instead of materialising [B, 3, 4, V] blended transforms.
        by_joint = jnp.moveaxis(skinning, 1, -1)  # [B, 3, 4, J]
        homogeneous = [v_posed[:, None, :, c] for c in range(3)] + [1.0]
        posed = sum(skin_weights[k] * sum(by_joint[:, :, c, skin_joints[k]] * homogeneous[c] for c in range(4))
                    for k in range(skin_joints.shape[0]))
        return jnp.swapaxes(posed, 1, 2)


_jitted_forward = jax.jit(SMPL._forward, static_argnames=("return_verts", "joints"))


def forward_kinematics(rot, rest_joints, parents):
    """World transforms of every joint frame. rot [B, J, 3, 3] local rotations, rest_joints [B, J, 3].

    Returns [B, J, 4, 4]: rotation = product of rotations along the chain, translation = posed joint position.
    """
    parent_idx = jnp.asarray([max(p, 0) for p in parents])
    rel = rest_joints - jnp.where(jnp.asarray(parents)[:, None] >= 0, rest_joints[:, parent_idx], 0.0)
    local = jnp.concatenate([rot, rel[..., None]], axis=-1)  # [B, J, 3, 4]
    bottom = jnp.broadcast_to(jnp.asarray([0.0, 0.0, 0.0, 1.0], rot.dtype), local.shape[:-2] + (1, 4))
    local = jnp.concatenate([local, bottom], axis=-2)
    chain = [local[:, 0]]
    for j in range(1, len(parents)):
        chain.append(chain[parents[j]] @ local[:, j])
    return jnp.stack(chain, axis=1)


def _skinning_transforms(world, rest_joints):
    """Transforms that take rest-pose points to posed points: G_j with translation t_j - R_j J_j. [B, J, 3, 4]."""
    rotation, translation = world[..., :3, :3], world[..., :3, 3]
    offset = translation - jnp.einsum("bjik,bjk->bji", rotation, rest_joints)
    return jnp.concatenate([rotation, offset[..., None]], axis=-1)


def _batch_size(*args):
    for arg in args:
        if arg is not None:
            return jnp.shape(arg)[0]
    return 1


def _as_matrices(pose, num, batch, dtype, name):
    """Axis-angle or rotation-matrix input -> [B, num, 3, 3]."""
    if pose is None:
        return jnp.broadcast_to(jnp.eye(3, dtype=dtype), (batch, num, 3, 3))
    pose = jnp.asarray(pose, dtype)
    shape = pose.shape
    if shape[1:] in ((num * 3,), (num, 3)):
        return axis_angle_to_matrix(pose.reshape(batch, num, 3))
    if shape[1:] in ((num, 3, 3), (num * 9,)) or (num == 1 and shape[1:] == (3, 3)):
        return pose.reshape(batch, num, 3, 3)
    raise ValueError(f"{name} has shape {shape}: expected axis-angle [B, {3 * num}] or [B, {num}, 3], "
                     f"or rotation matrices [B, {num}, 3, 3]" + (" or [B, 3, 3]" if num == 1 else ""))


def _split_groups(stacked, groups):
    out, start = {}, 0
    for name, count in groups:
        out[name] = stacked[:, start:start + count]
        start += count
    return out
