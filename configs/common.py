"""Defaults shared by the experiment configs: every key the code reads, in one place (paths included).

Each experiment file (configs/*.py) starts from base_config() and changes what its recipe changes.
"""
import ml_collections

# Effective weights of the authors' code (every term x60 there); PARE_SPEC.md, "Losses".
PARE_LOSS_WEIGHTS = dict(keypoints_2d=300.0, keypoints_3d=300.0, pose=60.0, betas=0.06, camera=60.0, part=60.0,
                         silhouette=0.0)  # LASOR's silhouette term (pare_jax.losses.silhouette_loss); 0 = off


def base_config():
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.num_steps = 100_000
    c.batch_size = 64  # global, split over all devices of all hosts
    c.eval_batch_size = 64
    c.compute_dtype = "float32"  # or "bfloat16" (float32 master weights)
    # dsed / part_self_attention: HUPOR's completion and the report's self-attention over the part maps
    # (pare_jax/models/config.py); "none", the default, is PARE. conorm: OCHMR's CoNorm, the backbone modulated
    # by the local / global body-centre maps of the batch's "context" (models/conorm.py): "scale_bias" (the
    # paper's X * scale + bias) or "residual" (X * (1 + scale) + bias, zero-initialised: converted weights are
    # undisturbed at step 0); conorm_stage: after ResNet layer<stage> / HRNet stage <stage> (OCHMR's best: 2);
    # conorm_hidden: the block's latent channels K (the paper's 128).
    c.model = ml_collections.ConfigDict(dict(backbone="hrnet_w32", head="pare", part_supervision="parts",
                                             attention="softmax", mean_offset="none", mean_params="",
                                             dsed="none", dsed_width=64, dsed_blocks=2,
                                             part_self_attention="none", part_self_attention_heads=1,
                                             part_self_attention_dim=32, part_self_attention_pool=2,
                                             conorm="none", conorm_stage=2, conorm_hidden=128))
    # The body for SMPL outputs and losses; gt_male / gt_female: gender-specific ground-truth bodies (3DPW).
    c.body = ml_collections.ConfigDict(dict(model="open", extra_regressor="", h36m_regressor="", gt_male="",
                                            gt_female=""))
    c.optim = ml_collections.ConfigDict(dict(lr=1e-4, schedule="constant", warmup_steps=0, b1=0.9, b2=0.999,
                                             grad_clip_norm=0.0))
    # dsed: weights of the DSED's completion and distillation terms (read only with model.dsed on); the
    # distillation weight ramps 0 -> distill over ramp_fraction of num_steps; pretrain_steps > 0 starts with that
    # many image-free steps (the DSED on ground-truth maps, PARE's terms off).
    # silhouette_size: the soft silhouette's side in pixels (with weights.silhouette > 0); silhouette_samples: render
    # it for the first N samples of each batch only (0: all; the renderer dominates a CPU step); weighting: "fixed" or
    # "uncertainty" (Kendall's learnable log-variances, initialised from the fixed weights; pare_jax.losses).
    c.loss = ml_collections.ConfigDict(dict(weights=dict(PARE_LOSS_WEIGHTS), part_until_step=-1,
                                            silhouette_size=64, silhouette_samples=0, weighting="fixed",
                                            dsed=dict(completion=60.0, distill=1.0, ramp_fraction=0.25,
                                                      pretrain_steps=0)))
    c.data = ml_collections.ConfigDict(dict(
        data_dir="~/tensorflow_datasets",  # where built datasets live (shared by runs)
        manual_dir="",  # SPIN/PARE npz files + image folders (pare_jax/data/builders.py)
        train={"coco": 1.0},
        eval=("3dpw:test",),
        baseline_split="coco:train",
        image_size=224,
        shuffle_buffer=1024,
        augment=dict(flip_prob=0.5, rotation_sd_deg=30.0, rotation_max_deg=60.0, rotation_zero_prob=0.6,
                     scale_sd=0.25, scale_range=(0.75, 1.25), color_noise=0.4, occlusion_prob=1.0,
                     max_occluders=7, occluder_scale=(0.2, 1.0), occluder_size=0.5, crop_prob=0.3,
                     crop_fraction=(0.3, 0.5), crop_start_step=175_000),
        # multi_person_ratio: training scenes with other people around the target; tilt_deg: the target's lean
        # (view augmentation: widen it); test_person_occluded: people in front of the target (data/synthetic.py)
        synthetic=dict(crop_size=224, num_examples={"train": 20000, "test": 1000, "test_occluded": 1000,
                                                    "test_person_occluded": 1000}, seed=0,
                       max_heading_deg=180.0, tilt_deg=10.0, multi_person_ratio=0.5),
    ))
    c.init_from = ""  # converted weights (python -m pare_jax.convert) or another run's workdir
    c.checkpoint = ml_collections.ConfigDict(dict(every=1000, keep=3))
    c.log_every = 50
    c.eval_every = 10_000  # 0 = only at the end
    c.max_nonfinite_steps = 20
    c.distributed = ml_collections.ConfigDict(dict(coordinator_address="", num_processes=1, process_id=0))
    return c


def smoke(c, backbone):
    """The variant the tests run: tiny model, tiny synthetic data at 64 px, a few steps, everything exercised."""
    c.num_steps = 4
    c.optim.schedule = "constant"
    c.batch_size = 2
    c.eval_batch_size = 4
    c.model.backbone = backbone
    c.data.train = {"synthetic": 1.0}
    c.data.eval = ("synthetic:test",)
    c.data.baseline_split = "synthetic:train"
    c.data.image_size = 64
    c.data.shuffle_buffer = 8
    c.data.synthetic = dict(crop_size=64, num_examples={"train": 16, "test": 6, "test_occluded": 6,
                                                        "test_person_occluded": 4}, seed=0,
                            max_heading_deg=180.0, tilt_deg=10.0, multi_person_ratio=0.5)
    c.data.augment.crop_start_step = 2
    c.loss.part_until_step = 2
    c.checkpoint.every = 2
    c.log_every = 2
    c.eval_every = 0
    return c
