"""PARE with ResNet-50 (the paper's 3DPW-OCC / 3DOH model): the same two phases as pare_hrnet.py.

    python run.py --config=configs/pare_r50.py:coco_eft --workdir=runs/pare_r50_phase1
    python run.py --config=configs/pare_r50.py:mix --workdir=runs/pare_r50_phase2 --config.init_from=runs/pare_r50_phase1
    python run.py --config=configs/pare_r50.py:smoke --workdir=/tmp/smoke

Expected (paper): 3DPW MPJPE 82.9, PA-MPJPE 52.3, PVE 99.7; 3DPW-OCC 90.5 / 56.6; 3DOH PA-MPJPE 44.3 mm.
"""
from configs import pare_hrnet


def get_config(arg="coco_eft"):
    c = pare_hrnet.get_config(arg)
    c.model.backbone = "resnet_tiny" if arg == "smoke" else "resnet50"
    return c
