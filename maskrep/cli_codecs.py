"""``maskrep fit`` and ``maskrep reconstruct``."""

from __future__ import annotations

import os

from ._io import atomic_write_json


def _add_data_args(p) -> None:
    p.add_argument("--annotations", required=True, help="COCO instances JSON")
    p.add_argument("--min-area", type=float, default=0.0, help="leave out instances smaller than this (pixels)")
    p.add_argument("--skip-bad", action="store_true",
                   help="count and skip bad annotations instead of stopping at the first one")
    p.add_argument("--limit", type=int, default=None, help="use only the first N instances")


def _instances(args):
    from .data import CocoInstances

    data = CocoInstances(args.annotations, min_area=args.min_area, on_error="skip" if args.skip_bad else "raise")
    insts = list(data)
    if args.limit is not None:
        insts = insts[: args.limit]
    print(f"{args.annotations}: {len(insts)} instances ({data.summary()})")
    return insts


def _writable(path: str) -> None:
    """Create ``path``'s folder and check a file can be written there, before any work is done."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"cannot write to {folder} (for {path})")


def _cmd_fit(args) -> int:
    from .codecs import get_codec
    from .distributed import init_from_env, is_main
    from .engine.reconstruction import fit_codec, parse_value

    init_from_env()  # under torchrun: join the group, fit a share, sum the statistics
    params = {"mask_size": args.mask_size}
    if args.dim is not None:
        params["dim"] = args.dim
    if args.rank is not None:
        params["rank"] = args.rank
    if args.resolution is not None:
        params["resolution"] = args.resolution
    if args.mode is not None:
        params["mode"] = args.mode
    if args.codec == "pca":
        params.update(whiten=args.whiten, sigmoid=args.sigmoid, jitter=args.jitter)
    if args.codec in ("pca", "learned"):
        params["seed"] = args.seed
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        params[key.strip()] = parse_value(value.strip())
    codec = get_codec(args.codec, **params)
    _writable(args.out)
    insts = _instances(args)
    if not insts:
        raise ValueError(f"{args.annotations}: no instances to fit on (after the filters)")
    # a codec that keeps a training state resumes an interrupted fit when the same command is rerun
    fit_codec(codec, insts, checkpoint=args.out + ".training.pt")
    if is_main():
        codec.save(args.out)
        print(f"saved {codec!r} to {args.out}")
    return 0


def _cmd_reconstruct(args) -> int:
    from .engine.reconstruction import evaluate_reconstruction, format_table, parse_codec_spec, plot_rate_distortion

    codecs = [parse_codec_spec(spec) for spec in args.codec]
    for spec, codec in zip(args.codec, codecs):
        if not codec.is_fitted:
            raise ValueError(f"codec {spec!r} needs fitting: run `maskrep fit {codec.name} ...` and pass the saved file")
    for out in (args.json, args.plot):  # make sure the results can be written before the work starts
        if out:
            _writable(out)
    insts = _instances(args)
    if not insts:
        raise ValueError(f"{args.annotations}: no instances to reconstruct (after the filters)")
    results = [evaluate_reconstruction(c, insts, full_image=not args.crop_only, meinst_jitter_seed=args.meinst_jitter)
               for c in codecs]
    print(format_table(results))
    if args.json:
        atomic_write_json(args.json, results, indent=2)
        print(f"wrote {args.json}")
    if args.plot:
        plot_rate_distortion(results, args.plot)
        print(f"wrote {args.plot}")
    return 0


def add_commands(add) -> None:
    p = add("fit", "fit a codec on the box crops of a COCO data set and save it; "
                   "`torchrun --nproc_per_node N -m maskrep fit ...` shares the instances over N processes "
                   "(or machines) and sums the statistics with torch.distributed, giving the one-process matrix")
    p.add_argument("codec", help="codec name (bitmap, contour, dct, learned, pca, polar, svd)")
    _add_data_args(p)
    p.add_argument("--mask-size", type=int, default=28, help="crop side S (default 28)")
    p.add_argument("--dim", type=int, default=None, help="code length (pca, dct)")
    p.add_argument("--rank", type=int, default=None, help="rank k (svd)")
    p.add_argument("--mode", default=None, help="svd: cls or reg; contour: adaptive, uniform or fourier")
    p.add_argument("--resolution", type=int, default=None, help="bitmap resolution R")
    p.add_argument("--no-whiten", dest="whiten", action="store_false", help="pca: do not whiten codes")
    p.add_argument("--no-sigmoid", dest="sigmoid", action="store_false", help="pca: fit on 0/1 masks, not logits")
    p.add_argument("--jitter", choices=("expected", "sample", "none"), default="expected",
                   help="pca: MEInst's sigmoid jitter in the fit: its exact expectation (default), one seeded draw "
                        "per pixel as MEInst does, or none")
    p.add_argument("--no-jitter", dest="jitter", action="store_const", const="none", help="pca: same as --jitter none")
    p.add_argument("--seed", type=int, default=0, help="pca: jitter seed; learned: weights, batches, augmentation")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="any other codec parameter (repeatable), e.g. --set rays=36 (polar), --set epochs=80 "
                        "--set width=24 (learned: an interrupted fit resumes from OUT.training.pt when rerun)")
    p.add_argument("--out", required=True, help="output .npz (for pca: AdelaiDet's format plus a header)")
    p.set_defaults(func=_cmd_fit)

    p = add("reconstruct", "measure codecs' round-trip quality on a COCO data set")
    p.add_argument("--codec", action="append", required=True,
                   help="a saved codec .npz, or name:key=value,... (repeatable)")
    _add_data_args(p)
    p.add_argument("--crop-only", action="store_true", help="skip the full-image (paste) IoU")
    p.add_argument("--meinst-jitter", type=int, default=None, metavar="SEED",
                   help="pca: encode freshly jittered targets drawn from SEED, as MEInst's own evaluation does "
                        "(compare its printed pooled mIoU); default: the deterministic encoder")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--plot", default=None, help="write a rate-distortion chart (PNG) here")
    p.set_defaults(func=_cmd_reconstruct)
