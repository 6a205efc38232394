"""The ``maskrep`` command line: ``maskrep synth | demo | fit | reconstruct | train | eval``."""

from __future__ import annotations

import argparse
import sys


def _cmd_synth(args) -> int:
    from .data.synthetic import make_synthetic_splits

    splits = make_synthetic_splits(args.out, num_train=args.num_train, num_val=args.num_val, seed=args.seed)
    for split, (path, image_dir) in splits.items():
        print(f"{split}: {path} (images in {image_dir})")
    return 0


def _cmd_demo(args) -> int:
    from . import demo

    demo.run(args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskrep", description="Instance-mask representations: codecs and tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="write a seeded synthetic COCO-format data set (train and val)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-train", type=int, default=48)
    p.add_argument("--num-val", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("demo", help="the main job on the embedded synthetic data set")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.add_argument("--num-train", type=int, default=48)
    p.add_argument("--num-val", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_demo)

    from . import cli_codecs

    cli_codecs.add_commands(sub)
    from . import cli_detection

    cli_detection.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
