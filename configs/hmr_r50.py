"""The HMR-EFT baseline on ResNet-50: global average pooling and the iterative regressor, no part branch.

    python run.py --config=configs/hmr_r50.py:coco_eft --workdir=runs/hmr_r50
    python run.py --config=configs/hmr_r50.py:smoke --workdir=/tmp/smoke

Expected (paper, Table 3 ablation on COCO-EFT): 3DPW MPJPE 99.0, PA-MPJPE 59.9 mm; with the full data mix,
3DPW-OCC PA-MPJPE 60.9 and 3DOH 53.1 mm.
"""
from configs import pare_hrnet


def get_config(arg="coco_eft"):
    c = pare_hrnet.get_config(arg)
    c.model.backbone = "resnet_tiny" if arg == "smoke" else "resnet50"
    c.model.head = "hmr"
    c.model.part_supervision = "none"
    c.loss.weights.part = 0.0
    return c
