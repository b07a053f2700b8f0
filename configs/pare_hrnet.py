"""PARE with HRNet-W32: the paper's recipe in two phases (variants of this file).

    python run.py --config=configs/pare_hrnet.py:coco_eft --workdir=runs/pare_hrnet_phase1
    python run.py --config=configs/pare_hrnet.py:mix --workdir=runs/pare_hrnet_phase2 \
        --config.init_from=runs/pare_hrnet_phase1
    python run.py --config=configs/pare_hrnet.py:smoke --workdir=/tmp/smoke     # what the tests run

Needs the SPIN/PARE data in config.data.manual_dir (pare_jax/data/builders.py lists the files) and, for the
paper's numbers, the official SMPL body with its regressors (config.body.*); the open body works in their place.
Phase 1 ("coco_eft"): COCO-EFT only, with part supervision, lr 2e-4, about 200 epochs (234K steps at batch 64),
random crop from step 175K. Phase 2 ("mix"): H36M 0.5 / COCO 0.233 / LSPET 0.046 / MPII 0.021 / MPI-INF-3DHP 0.2,
without part supervision ("Parts/Unsup", the best row of Table 3), lr 5e-5. Expected after both phases (paper,
official SMPL): 3DPW MPJPE 82.0, PA-MPJPE 50.9, PVE 97.9 mm.
"""
from configs import common

MIX = {"h36m": 0.5, "coco": 0.233, "lspet": 0.046, "mpii": 0.021, "mpi_inf_3dhp": 0.2}


def get_config(arg="coco_eft"):
    arg = arg or "coco_eft"
    c = common.base_config()
    c.model.backbone = "hrnet_w32"
    c.data.eval = ("3dpw:test", "3dpw_occ:test", "3doh:test")
    if arg == "coco_eft":
        c.data.train = {"coco": 1.0}
        c.num_steps = 234_000
        c.optim.lr = 2e-4
        c.loss.part_until_step = -1  # part supervision throughout this phase
    elif arg == "mix":
        c.data.train = dict(MIX)
        c.num_steps = 120_000
        c.optim.lr = 5e-5
        c.loss.weights.part = 0.0  # no part supervision in this phase
        c.data.augment.crop_start_step = 0  # phase 1 already passed 175K steps
    elif arg == "smoke":
        common.smoke(c, "hrnet_tiny")
    else:
        raise ValueError(f"unknown variant {arg!r} of pare_hrnet.py: use coco_eft, mix or smoke")
    return c
