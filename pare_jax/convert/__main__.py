"""python -m pare_jax.convert CHECKPOINT OUT_DIR [--source pare|hrnet_coco|resnet_imagenet] [options]

Reads a PyTorch checkpoint safely (see torch_files.py), maps every tensor onto the Flax model and writes an
Orbax weights directory (see weights.py). Unused or missing tensors stop the conversion with their names.
Every failure is one line `error: ...` on stderr and exit code 2, with nothing written.
"""
import argparse
import logging
import os
import sys

from pare_jax.convert.converter import SOURCES, convert_state_dict, default_backbone, infer_config
from pare_jax.convert.torch_files import CheckpointFileError, load_state_dict
from pare_jax.convert.weights import check_output_directory, save_weights
from pare_jax.models import CHOICES, ModelConfig


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m pare_jax.convert",
        description="Convert a PyTorch checkpoint (the authors' PARE/HMR model, or a backbone initialisation: "
                    "HRNet-W32 COCO pose, torchvision ResNet-50) into a Flax/Orbax weights directory.")
    parser.add_argument("checkpoint", help="authors' .ckpt / state-dict .pth, or a backbone's .pth")
    parser.add_argument("out_dir", help="weights directory to write (must not exist unless --overwrite)")
    parser.add_argument("--source", choices=SOURCES, default="pare")
    parser.add_argument("--backbone", choices=CHOICES["backbone"], help="default: read off the checkpoint")
    parser.add_argument("--head", choices=CHOICES["head"], help="default: read off the checkpoint")
    parser.add_argument("--part-supervision", choices=CHOICES["part_supervision"])
    parser.add_argument("--attention", choices=CHOICES["attention"])
    parser.add_argument("--mean-offset", choices=CHOICES["mean_offset"])
    parser.add_argument("--overwrite", action="store_true")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        # Before the slow part, so that a wrong output path costs nothing.
        check_output_directory(os.path.abspath(args.out_dir), args.overwrite)
        state_dict = load_state_dict(args.checkpoint)
        options = dict(backbone=args.backbone, head=args.head, part_supervision=args.part_supervision,
                       attention=args.attention, mean_offset=args.mean_offset)
        if args.source == "pare":
            config = infer_config(state_dict, **options)
        else:
            options["backbone"] = options["backbone"] or default_backbone(args.source)
            config = ModelConfig.from_mapping({k: v for k, v in options.items() if v is not None})
        weights = convert_state_dict(state_dict, config, args.source)
        contents = "full" if args.source == "pare" else "backbone"
        out = save_weights(args.out_dir, config, weights, contents, source=args.checkpoint,
                           overwrite=args.overwrite)
    except (CheckpointFileError, ValueError, OSError) as exc:  # FileExistsError is an OSError
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    print(f"wrote {len(weights)} tensors ({contents}, {config}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
