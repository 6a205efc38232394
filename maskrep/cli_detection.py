"""``maskrep train`` and ``maskrep eval``: detector jobs from a Python config."""

from __future__ import annotations

import argparse
import sys


def _config(args):
    from .engine.recipe import load_config, validate_config

    if args.config is None:
        return None, None
    cfg, module = load_config(args.config, args.overrides)
    if args.data:
        cfg["data"]["train"] = cfg["data"]["val"] = tuple(args.data)
    if args.out:
        cfg["out_dir"] = args.out
    validate_config(cfg, where=args.config)
    return cfg, module


def _cmd_train(args) -> int:
    from .distributed import is_main
    from .engine.evaluation import format_metrics
    from .engine.recipe import train
    from .engine.trainer import TrainingInterrupted

    cfg, module = _config(args)
    try:
        result = train(cfg, module, resume=not args.no_resume, evaluate_again=args.eval)
    except TrainingInterrupted as e:
        print(f"maskrep: {e}", file=sys.stderr)
        return 130 if e.signal_name == "SIGINT" else 143
    if is_main():
        if result["complete"]:
            print(f"the run in {cfg['out_dir']} is complete ({result['iterations']} iterations); its results, from "
                  "coco_eval.json, follow (--eval evaluates it again, --no-resume trains afresh, a larger "
                  "solver.max_iter trains on)")
        else:
            print(f"trained {result['iterations']} iterations in {result['train_seconds']:.0f} s; results in "
                  f"{cfg['out_dir']}")
        print(format_metrics(result["metrics"]))
    return 0


def _cmd_eval(args) -> int:
    from .distributed import is_main
    from .engine.evaluation import format_metrics
    from .engine.recipe import evaluate

    cfg, module = _config(args)
    metrics = evaluate(cfg, args.checkpoint, module, out_dir=args.out, per_category=args.per_category, data=args.data)
    if is_main():
        print(format_metrics(metrics, per_category=args.per_category))
    return 0


def _cmd_convert(args) -> int:
    from .detection.convert import convert_checkpoint

    n = convert_checkpoint(args.src, args.dst)
    print(f"wrote {n} tensors to {args.dst}")
    return 0


def _cmd_predict(args) -> int:
    from .engine.predict import predict

    results, skipped = predict(args.checkpoint, args.input, args.output, json_path=args.json,
                               score_thresh=args.score_thresh, device=args.device, annotations=args.annotations)
    done = len(args.input) - len(skipped)
    print(f"{len(results)} detections on {done} images; pictures in {args.output}"
          + (f", COCO results in {args.json}" if args.json else ""))
    for path, reason in skipped:
        print(f"maskrep: skipped {path}: {reason.removeprefix(path + ': ')}", file=sys.stderr)
    if skipped:
        print(f"maskrep: error: {len(skipped)} of {len(args.input)} images could not be read (listed above)",
              file=sys.stderr)
        return 1
    return 0


def _common(p, *, config_required: bool = True) -> None:
    p.add_argument("--config", required=config_required,
                   help="Python config file defining `cfg` (see experiments/)" +
                        ("" if config_required else "; default: the config the checkpoint carries"))
    p.add_argument("--data", nargs=2, metavar=("ANNOTATIONS", "IMAGE_DIR"),
                   help="a COCO-format dataset to train and evaluate on (overrides data.train and data.val)")
    p.add_argument("--out", help="output folder (train: overrides out_dir; eval: default eval_<checkpoint> beside it)")
    p.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides, e.g. solver.lr=0.02")


def add_commands(add) -> None:
    p = add("train", "train a detector from a config (resumes from out_dir); run under torchrun for several GPUs "
                     "or nodes")
    p.epilog = ("examples:\n"
                "  maskrep train --config experiments/meinst/meinst_R_50_1x.py --data train.json images/ \\\n"
                "      solver.max_iter=20000 solver.steps=[15000,18000] out_dir=outputs/meinst_short\n"
                "  maskrep train --config experiments/fcos/fcos_tiny.py solver.batch_size=4 solver.lr=0.005 "
                "data.num_workers=2\n"
                "overrides are key.sub=value pairs of the config's cfg (experiments/*/*.py, "
                "maskrep.engine.config.base_config); values are Python literals")
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    _common(p)
    p.add_argument("--no-resume", action="store_true", help="start afresh even if out_dir has a checkpoint")
    p.add_argument("--eval", action="store_true", help="evaluate a run that is already complete again")
    p.set_defaults(func=_cmd_train)

    p = add("convert", "rename the weights of another project's checkpoint for maskrep")
    p.add_argument("kind", choices=("adelaidet-fcos",), help="what the checkpoint is: an AdelaiDet/detectron2 FCOS")
    p.add_argument("src", help="the checkpoint (.pth)")
    p.add_argument("dst", help="where to write maskrep's checkpoint")
    p.set_defaults(func=_cmd_convert)

    p = add("predict", "run a trained checkpoint on images: pictures with masks, boxes, classes and scores, and "
                       "optionally COCO-format JSON")
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by maskrep train (it carries its config)")
    p.add_argument("--input", nargs="+", required=True, metavar="IMAGE", help="image files")
    p.add_argument("--output", required=True, help="folder for the pictures (one PNG per image)")
    p.add_argument("--json", default=None, help="also write the detections here, COCO result format")
    p.add_argument("--score-thresh", type=float, default=0.3, help="keep detections scoring at least this (0.3)")
    p.add_argument("--annotations", default=None, help="the COCO file the images belong to: --json then takes its "
                                                       "image and category ids, so the results can be scored")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=_cmd_predict)

    p = add("eval", "COCO-evaluate a checkpoint (box and mask AP), printing COCOeval's summary")
    _common(p, config_required=False)
    p.add_argument("--checkpoint", required=True, help="a checkpoint written by maskrep train")
    p.add_argument("--per-category", action="store_true", help="also print the AP of every category")
    p.set_defaults(func=_cmd_eval)
