"""HUPOR's DSED (Liu et al., ECCV 2022; SEED_SYSTEMS.md section a) on PARE's part maps: complete what is hidden.

Where it sits: between the part branch's logits P [N, h, w, M] and the part attention. The attention is driven
by the completed logits P + D(E_s(maps(P))), at training and at test time alike; PARE's part loss keeps
supervising the branch's raw logits P (pred_segm_mask), so the branch keeps its meaning and its labels.

    student:  maps(P) (the network's own maps, gradient stopped) -> E_s -> features f_s^1..4
    teacher:  complete ground-truth maps                          -> E_t -> features f_t^1..4 (training only)
    decoder:  one decoder D shared by both; trained on the teacher's features only
    losses:   completion = the part (or heatmap) loss of stop_grad(P) + D(f_t) against the complete labels
              (trains D and E_t); distillation = sum_i mean (f_s^i - stop_grad(f_t^i))^2 over all four encoder
              blocks (trains E_s only; HUPOR's supplement, Table 5: every block beats the last one alone),
              its weight ramped 0 -> 1 (pare_jax.schedules.dsed_weights)

Visible vs complete, for our data. The "visible" maps are what the network infers from the image: its softmaxed
part logits (or peak-normalised joint heatmaps), which under an occluder tend to lose the hidden parts. The
complete maps are the ground truth with every joint: the synthetic part_map is rendered from the mesh before the
occluders are pasted, so its one-hot is complete, and the keypoints carry every joint with confidence 1, occluded
or not (visibility says which are hidden). For real (SPIN-format) data the part maps are renders of the
ground-truth / EFT mesh, complete in the same way; COCO's v = 1 joints (labelled but occluded) are in the
keypoints with confidence 1, so heatmaps drawn from the keypoints include them.

Residual, as in HUPOR: the decoder's output is added to the detached input of the completion, here in logit
space (so that the completed maps drive the attention exactly as PARE's logits do, and a zero decoder, its
initial state, leaves PARE unchanged). On the teacher path the residual base is the same network logits the
student sees, not the teacher's own input: with the ground truth both as input and as target, the residual would
learn an identity task (zero) and the decoder nothing; this way it learns to turn complete features into the
correction the network's maps need. On the student path the decoder's output carries no gradient (neither D nor
E_s learn from PARE's losses), while P stays differentiable so PARE's attention gradients reach the branch as
before.

Image-free pretraining (HUPOR trains its completion without images): while `pretrain` is true, the student
sees ground-truth maps of the visible joints only (parts whose joint has visibility 0 become background) instead
of the network's maps; pare_jax.schedules zeroes PARE's own loss terms for those steps.
"""
import jax
import jax.numpy as jnp
from flax import nnx

from pare_jax.models.layers import ConvBN, conv
from smpl_jax.joints import OPENPOSE_NAMES, SMPL_JOINT_NAMES, SPIN_GT_NAMES

HEATMAP_SIGMA = 0.05  # as pare_jax.losses.joint_heatmap_loss, normalised crop units
LOG_EPS = 1e-4
NUM_OPENPOSE = 25
# Part p + 1 of the label maps is the skinning region of SMPL joint p; its visibility is read off the SPIN-49
# keypoint nearest to that region (the joint itself where SPIN has it).
_PART_KEYPOINT = {
    "pelvis": "Pelvis (MPII)", "left_hip": "Left Hip", "right_hip": "Right Hip", "spine1": "Spine (H36M)",
    "left_knee": "Left Knee", "right_knee": "Right Knee", "spine2": "Spine (H36M)", "left_ankle": "Left Ankle",
    "right_ankle": "Right Ankle", "spine3": "Thorax (MPII)", "left_foot": "OP LBigToe",
    "right_foot": "OP RBigToe", "neck": "Neck (LSP)", "left_collar": "Left Shoulder",
    "right_collar": "Right Shoulder", "head": "Head (H36M)", "left_shoulder": "Left Shoulder",
    "right_shoulder": "Right Shoulder", "left_elbow": "Left Elbow", "right_elbow": "Right Elbow",
    "left_wrist": "Left Wrist", "right_wrist": "Right Wrist", "left_hand": "Left Wrist",
    "right_hand": "Right Wrist",
}
PART_VISIBILITY_INDEX = tuple((OPENPOSE_NAMES + SPIN_GT_NAMES).index(_PART_KEYPOINT[name])
                              for name in SMPL_JOINT_NAMES)


def student_maps(logits, kind):
    """The network's maps in the space of the ground-truth ones: per-pixel part probabilities, or heatmaps with
    peak 1. logits [N, h, w, M] -> [N, h, w, M] in [0, 1]."""
    logits = logits.astype(jnp.float32)
    if kind == "part_maps":
        return jax.nn.softmax(logits, axis=-1)
    return jnp.exp(logits - jnp.max(logits, axis=(1, 2), keepdims=True))


def _heatmaps(keypoints, weight, shape):
    """Gaussians with peak 1 at the 24 SPIN ground-truth joints. keypoints [N, 49, 3], weight [N, 24] ->
    [N, h, w, 24]."""
    h, w = shape
    gt = keypoints[:, NUM_OPENPOSE:NUM_OPENPOSE + 24]
    ys, xs = (jnp.linspace(-1 + 1 / n, 1 - 1 / n, n) for n in (h, w))  # pixel centres in [-1, 1]
    dx = xs[None, None, :, None] - gt[:, None, None, :, 0]
    dy = ys[None, :, None, None] - gt[:, None, None, :, 1]
    d2 = dx ** 2 + dy ** 2
    return jnp.exp(-d2 / (2 * HEATMAP_SIGMA ** 2)) * weight[:, None, None, :]


def _part_one_hot(part_map, keep, shape):
    """One-hot of the label map, resampled with an antialiasing triangle filter (a slightly smoothed area
    average), with the parts not in `keep` [N, 24] moved to background.
    part_map [N, H, W] int -> [N, h, w, 25]."""
    n = part_map.shape[0]
    one_hot = jax.nn.one_hot(part_map, 25, dtype=jnp.float32)
    parts = one_hot[..., 1:] * keep[:, None, None, :]
    background = one_hot[..., :1] + jnp.sum(one_hot[..., 1:] - parts, axis=-1, keepdims=True)
    full = jnp.concatenate([background, parts], axis=-1)
    return jax.image.resize(full, (n, *shape, 25), "linear", antialias=True)


def complete_maps(labels, kind, shape):
    """Ground-truth maps with every joint, occluded ones included: labels with part_map [N, H, W] int and
    keypoints [N, 49, 3] -> [N, h, w, 25] (part_maps) or [N, h, w, 24] (joint_heatmaps)."""
    if kind == "part_maps":
        return _part_one_hot(labels["part_map"], jnp.ones((labels["part_map"].shape[0], 24)), shape)
    return _heatmaps(labels["keypoints"], (labels["keypoints"][:, NUM_OPENPOSE:, 2] > 0).astype(jnp.float32),
                     shape)


def visible_maps(labels, kind, shape):
    """Ground-truth maps of the visible joints only (visibility [N, 49]: 0 hidden; 1 or -1 unknown count as
    seen), the student's input in image-free pretraining. Same shapes as complete_maps."""
    seen = (labels["visibility"] != 0).astype(jnp.float32)
    if kind == "part_maps":
        return _part_one_hot(labels["part_map"], seen[:, jnp.asarray(PART_VISIBILITY_INDEX)], shape)
    conf = (labels["keypoints"][:, NUM_OPENPOSE:, 2] > 0).astype(jnp.float32)
    return _heatmaps(labels["keypoints"], conf * seen[:, NUM_OPENPOSE:], shape)


class BasicBlock(nnx.Module):
    """ResNet's basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, plus the (projected) input, ReLU."""

    def __init__(self, in_ch, out_ch, stride, *, rngs):
        self.conv1 = ConvBN(in_ch, out_ch, 3, stride, rngs=rngs)
        self.conv2 = ConvBN(out_ch, out_ch, 3, relu=False, rngs=rngs)
        self.project = ConvBN(in_ch, out_ch, 1, stride, relu=False, rngs=rngs) if (
            stride != 1 or in_ch != out_ch) else None

    def __call__(self, x):
        skip = x if self.project is None else self.project(x)
        return jax.nn.relu(self.conv2(self.conv1(x)) + skip)


class Encoder(nnx.Module):
    """maps [N, h, w, M] -> four features [N, h / s, w / s, width * (1, 2, 4, 8)], s = 1, 2, 4, 8."""

    def __init__(self, num_maps, width, blocks, *, rngs):
        self.stem = ConvBN(num_maps, width, 3, rngs=rngs)
        stages, in_ch = [], width
        for i in range(4):
            out_ch = width * 2 ** i
            stages.append(nnx.List([BasicBlock(in_ch if b == 0 else out_ch, out_ch, 2 if (i and b == 0) else 1,
                                               rngs=rngs) for b in range(blocks)]))
            in_ch = out_ch
        self.stages = nnx.List(stages)

    def __call__(self, maps):
        x, features = self.stem(maps), []
        for stage in self.stages:
            for block in stage:
                x = block(x)
            features.append(x)
        return tuple(features)


class Decoder(nnx.Module):
    """Four encoder features -> a logit correction [N, h, w, M]: lateral 1x1 convs, a top-down path of bilinear
    upsampling and sums, a 3x3 conv, a zero-initialised 1x1 output conv (so the completion starts as identity).
    No BatchNorm: the decoder sees teacher features in training and student features at test, and batch
    statistics of the one would be wrong for the other."""

    def __init__(self, num_maps, width, *, rngs):
        self.lateral = nnx.List([conv(width * 2 ** i, width, 1, bias=True, rngs=rngs) for i in range(4)])
        self.smooth = conv(width, width, 3, bias=True, rngs=rngs)
        self.out = nnx.Conv(width, num_maps, (1, 1), kernel_init=nnx.initializers.zeros_init(), rngs=rngs)

    def __call__(self, features):
        top = self.lateral[3](features[3])
        for i in (2, 1, 0):
            lateral = self.lateral[i](features[i])
            top = lateral + jax.image.resize(top, lateral.shape[:3] + top.shape[3:], "bilinear")
        return self.out(jax.nn.relu(self.smooth(top)))


class Dsed(nnx.Module):
    """The completion of the part maps. kind: 'part_maps' (M = 25) or 'joint_heatmaps' (M = 24)."""

    def __init__(self, kind, num_maps, width, blocks, *, rngs):
        self.kind = kind
        self.student = Encoder(num_maps, width, blocks, rngs=rngs)
        self.teacher = Encoder(num_maps, width, blocks, rngs=rngs)
        self.decoder = Decoder(num_maps, width, rngs=rngs)

    def __call__(self, logits, labels=None, pretrain=False):
        """logits [N, h, w, M] of the part branch; labels (training only): part_map [N, H, W], keypoints
        [N, 49, 3], visibility [N, 49]; pretrain: bool (may be traced). Returns {"completed": [N, h, w, M]
        logits that drive the attention} and, with labels, dsed_teacher_logits [N, h, w, M] and the two
        feature tuples dsed_student_features, dsed_teacher_features."""
        shape = logits.shape[1:3]
        base, inputs = logits, student_maps(logits, self.kind)
        if labels is not None:
            seen = visible_maps(labels, self.kind, shape)
            inputs = jnp.where(pretrain, seen, inputs)
            base = jnp.where(pretrain, jnp.log(seen + LOG_EPS).astype(logits.dtype), logits)
        student = self.student(jax.lax.stop_gradient(inputs).astype(logits.dtype))
        out = {"completed": base + jax.lax.stop_gradient(self.decoder(student)).astype(base.dtype)}
        if labels is not None:
            teacher = self.teacher(complete_maps(labels, self.kind, shape).astype(logits.dtype))
            out["dsed_teacher_logits"] = jax.lax.stop_gradient(base) + self.decoder(teacher).astype(base.dtype)
            out["dsed_student_features"], out["dsed_teacher_features"] = student, teacher
        return out
