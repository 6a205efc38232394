"""The ``maskrep`` command line: ``maskrep synth | demo | fit | reconstruct | train | eval | predict | convert``.

Errors print as ``maskrep: error: <message>``: exit code 2 for bad input (a file, a value, a
setting), 1 for a failure while working; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import os
import sys

#: exceptions that mean "the input is wrong" (exit 2); anything else is a failure (exit 1)
INPUT_ERRORS = (ValueError, LookupError, FileNotFoundError, IsADirectoryError, NotADirectoryError)


def _cmd_synth(args) -> int:
    from .data.synthetic import make_synthetic_splits

    if args.copy_paste:
        from .data.copy_paste import make_copy_paste_coco

        if not (args.annotations and args.images):
            raise ValueError("--copy-paste cuts objects from a COCO set: give --annotations A.json and --images DIR")
        path = make_copy_paste_coco(args.annotations, args.images, args.out, num_images=args.num_images,
                                    size=args.size, seed=args.seed, classes=args.classes, split=args.split)
        print(f"{args.split}: {path} (images in {os.path.join(args.out, args.split)})")
        return 0
    splits = make_synthetic_splits(args.out, num_train=args.num_train, num_val=args.num_val, seed=args.seed)
    for split, (path, image_dir) in splits.items():
        print(f"{split}: {path} (images in {image_dir})")
    return 0


def _cmd_demo(args) -> int:
    from . import demo

    demo.run(args.out, seed=args.seed, num_train=args.num_train, num_val=args.num_val)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="maskrep", description="Instance-mask representations: codecs, mask "
                                     "heads on FCOS, training, evaluation and tools.")
    parser.add_argument("--version", action="version", version=f"maskrep {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, summary: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".")

    p = add("synth", "write a seeded synthetic COCO-format data set (train and val)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-train", type=int, default=48, help="training images (48)")
    p.add_argument("--num-val", type=int, default=16, help="validation images (16)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same files (0)")
    p.add_argument("--copy-paste", action="store_true",
                   help="copy-paste scenes instead: real objects cut from --annotations/--images by their masks, "
                        "pasted at random scale, flip and position onto backgrounds cut from the same set's images")
    p.add_argument("--annotations", help="copy-paste: the COCO set to cut objects and backgrounds from")
    p.add_argument("--images", help="copy-paste: its image folder")
    p.add_argument("--num-images", type=int, default=100, help="copy-paste: scenes to write (100)")
    p.add_argument("--size", type=int, default=320, help="copy-paste: side of the square scenes (320)")
    p.add_argument("--classes", action="store_true", help="copy-paste: keep the COCO categories (default: one, object)")
    p.add_argument("--split", default="scenes", help="copy-paste: name of the image folder and JSON (scenes)")
    p.set_defaults(func=_cmd_synth)

    p = add("demo", "the main job on an embedded synthetic data set: six codecs at a few code lengths (PCA fitted "
                    "on its train split; the learned codec, which trains for minutes, is left out), measured and drawn")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.add_argument("--num-train", type=int, default=48, help="synthetic training images (48)")
    p.add_argument("--num-val", type=int, default=16, help="synthetic validation images (16)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    p.set_defaults(func=_cmd_demo)

    from . import cli_codecs, cli_detection

    cli_codecs.add_commands(add)
    cli_detection.add_commands(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if extra:  # key=value overrides may stand between options
        if hasattr(args, "overrides") and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("maskrep: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            raise
        message = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
        print(f"maskrep: error: {message or type(e).__name__}", file=sys.stderr)
        return 2 if isinstance(e, INPUT_ERRORS) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
