"""Step-driven schedules: learning rate (Optax), loss weights, augmentation switches.

PARE was trained in phases the authors ran as separate jobs: part supervision for the early phase, then the same
model trained on without it ("Parts/Unsup", the best row of Table 3), and random-crop augmentation only from a
later step. Here one run does it: the loss weights are a pure function of the step, evaluated inside the jitted
update, so a resumed run picks up the right phase from its restored step.

Config keys (config.optim, config.loss, config.data.augment):
    optim.lr, optim.schedule ('constant' | 'cosine' | 'warmup_cosine'), optim.warmup_steps, optim.b1, optim.b2,
    optim.grad_clip_norm (0 = off), total steps config.num_steps;
    loss.weights {keypoints_2d, keypoints_3d, pose, betas, camera, part, silhouette}, loss.part_until_step
    (-1 = always on); loss.silhouette_size, loss.weighting (pare_jax.losses, pare_jax.train_step);
    loss.dsed {completion, distill, ramp_fraction, pretrain_steps} (read only with model.dsed on);
    data.augment.random_crop_from_step.
"""
import jax.numpy as jnp
import optax

LOSS_TERMS = ("keypoints_2d", "keypoints_3d", "pose", "betas", "camera", "part")
OPTIONAL_TERMS = ("silhouette",)  # weight 0 when a (hand-made) config leaves them out


def learning_rate_schedule(optim, num_steps):
    """optax schedule: step -> learning rate."""
    if optim.schedule == "constant":
        return optax.constant_schedule(optim.lr)
    if optim.schedule == "cosine":
        return optax.cosine_decay_schedule(optim.lr, max(num_steps, 1))
    if optim.schedule == "warmup_cosine":
        if not 0 <= optim.warmup_steps < num_steps:
            raise ValueError(f"optim.warmup_steps={optim.warmup_steps} must be below num_steps={num_steps}")
        return optax.warmup_cosine_decay_schedule(0.0, optim.lr, optim.warmup_steps, max(num_steps, 1))
    raise ValueError(f"optim.schedule={optim.schedule!r}: choose 'constant', 'cosine' or 'warmup_cosine'")


def optimizer(optim, num_steps):
    """Adam without weight decay (the paper's choice), with optional global-norm gradient clipping."""
    adam = optax.adam(learning_rate_schedule(optim, num_steps), b1=optim.b1, b2=optim.b2)
    if optim.grad_clip_norm > 0:
        return optax.chain(optax.clip_by_global_norm(optim.grad_clip_norm), adam)
    return adam


def loss_weights(loss, step):
    """{term: weight} at `step` (an int or a traced scalar). The part-supervision weight drops to 0 once
    step >= loss.part_until_step (unless that is -1)."""
    unknown = sorted(set(loss.weights) - set(LOSS_TERMS + OPTIONAL_TERMS))
    if unknown:
        raise ValueError(f"loss.weights has unknown terms {unknown}; known: {list(LOSS_TERMS + OPTIONAL_TERMS)}")
    weights = {name: jnp.asarray(loss.weights[name], jnp.float32) for name in LOSS_TERMS}
    weights |= {name: jnp.asarray(loss.weights[name], jnp.float32) for name in OPTIONAL_TERMS if name in loss.weights}
    if loss.part_until_step >= 0:
        weights["part"] = jnp.where(step < loss.part_until_step, weights["part"], 0.0)
    return weights


def dsed_weights(dsed, step, num_steps):
    """{dsed_completion, dsed_distill: weight} at `step` (int or traced) and whether the step is in the image-free
    pretraining phase. The distillation weight ramps linearly from 0 at step 0 to loss.dsed.distill at
    ramp_fraction * num_steps (HUPOR: a quarter of training) and stays there; ramp_fraction 0 = no ramp."""
    if not 0.0 <= dsed.ramp_fraction <= 1.0:
        raise ValueError(f"loss.dsed.ramp_fraction={dsed.ramp_fraction} must be in [0, 1]")
    if not 0 <= dsed.pretrain_steps < max(num_steps, 1):
        raise ValueError(f"loss.dsed.pretrain_steps={dsed.pretrain_steps} must be in [0, num_steps={num_steps})")
    ramp_steps = dsed.ramp_fraction * num_steps
    ramp = jnp.clip(jnp.asarray(step, jnp.float32) / ramp_steps, 0.0, 1.0) if ramp_steps > 0 else jnp.float32(1)
    weights = {"dsed_completion": jnp.asarray(dsed.completion, jnp.float32),
               "dsed_distill": jnp.asarray(dsed.distill, jnp.float32) * ramp}
    return weights, jnp.asarray(step) < dsed.pretrain_steps


def pretraining_weights(weights, pretrain):
    """PARE's own terms switched off (0) while `pretrain` (a traced bool) holds: the DSED then learns from maps
    alone. weights: {term: weight} -> the same dict."""
    return {k: v if k.startswith("dsed_") else jnp.where(pretrain, 0.0, v) for k, v in weights.items()}


def random_crop_active(augment, step):
    """Whether the random-crop augmentation is on at `step` (host-side int)."""
    return 0 <= augment.random_crop_from_step <= step
