"""Step-driven schedules: learning rate (Optax), loss weights, augmentation switches.

PARE was trained in phases the authors ran as separate jobs: part supervision for the early phase, then the same
model trained on without it ("Parts/Unsup", the best row of Table 3), and random-crop augmentation only from a
later step. Here one run does it: the loss weights are a pure function of the step, evaluated inside the jitted
update, so a resumed run picks up the right phase from its restored step.

Config keys (config.optim, config.loss, config.data.augment):
    optim.lr, optim.schedule ('constant' | 'cosine' | 'warmup_cosine'), optim.warmup_steps, optim.b1, optim.b2,
    optim.grad_clip_norm (0 = off), total steps config.num_steps;
    loss.weights {keypoints_2d, keypoints_3d, pose, betas, camera, part}, loss.part_until_step (-1 = always on);
    data.augment.random_crop_from_step.
"""
import jax.numpy as jnp
import optax

LOSS_TERMS = ("keypoints_2d", "keypoints_3d", "pose", "betas", "camera", "part")


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
    unknown = sorted(set(loss.weights) - set(LOSS_TERMS))
    if unknown:
        raise ValueError(f"loss.weights has unknown terms {unknown}; known: {list(LOSS_TERMS)}")
    weights = {name: jnp.asarray(loss.weights[name], jnp.float32) for name in LOSS_TERMS}
    if loss.part_until_step >= 0:
        weights["part"] = jnp.where(step < loss.part_until_step, weights["part"], 0.0)
    return weights


def random_crop_active(augment, step):
    """Whether the random-crop augmentation is on at `step` (host-side int)."""
    return 0 <= augment.random_crop_from_step <= step
