"""The README's comparison table from evaluation JSONs (python -m pare_jax.evaluate writes them to WORKDIR/eval/).

    python tools/comparison_table.py "PARE=runs/synthetic" "PARE + DSED=runs/synthetic_dsed" \
        "mean pose=runs/synthetic:mean_pose_baseline" --splits synthetic:test synthetic:test_occluded

Each row is LABEL=WORKDIR, or LABEL=WORKDIR:SUFFIX for the JSONs a baseline writes (<split>_SUFFIX_latest.json).
Cells are mean +- standard error (mm); "occluded" is the MPJPE (and PA-MPJPE) of the evaluation joints whose
ground-truth visibility is 0, with their count.
"""
import argparse
import json
import os

METRICS = (("pa_mpjpe", "PA-MPJPE"), ("mpjpe", "MPJPE"), ("pve", "PVE"), ("occluded_pa_mpjpe", "occl. PA-MPJPE"),
           ("occluded_mpjpe", "occl. MPJPE"))


def load(workdir, suffix, split):
    stem = split.replace(":", "_").replace("/", "_") + (f"_{suffix}" if suffix else "")
    path = os.path.join(workdir, "eval", f"{stem}_latest.json")
    with open(path) as f:
        return json.load(f)


def cell(record, name):
    mean, se = record.get(name), record.get(f"{name}_se")
    if mean is None:
        return ""
    return f"{mean:.1f} ± {se:.1f}" if se is not None else f"{mean:.1f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("rows", nargs="+", help="LABEL=WORKDIR or LABEL=WORKDIR:SUFFIX")
    parser.add_argument("--splits", nargs="+", default=["synthetic:test", "synthetic:test_occluded"])
    args = parser.parse_args()
    print("| predictor | split | step | " + " | ".join(title for _, title in METRICS) + " | occl. joints |")
    print("|---|---|---|" + "---|" * (len(METRICS) + 1))
    for split in args.splits:
        for row in args.rows:
            label, _, source = row.partition("=")
            workdir, _, suffix = source.partition(":")
            record = load(workdir, suffix, split)
            cells = [cell(record, name) for name, _ in METRICS]
            print(f"| {label} | {split.partition(':')[2]} | {record['step']} | " + " | ".join(cells)
                  + f" | {record.get('num_occluded_joints', '')} |")


if __name__ == "__main__":
    main()
