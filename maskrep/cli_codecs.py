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


def _param_help(cls) -> dict[str, str]:
    """name -> the first line of its description in the class docstring's Parameters section."""
    import inspect
    import re

    doc = inspect.getdoc(cls) or ""
    section = doc.split("Parameters\n----------\n", 1)[-1] if "Parameters\n-" in doc else ""
    section = re.split(r"\n\w[\w ]*\n-{3,}\n", section)[0]
    helps, name_line = {}, re.compile(r"^(\w+(?:, \w+)*) : ?(.*)$")
    lines = section.splitlines()
    for k, line in enumerate(lines):
        m = name_line.match(line)
        if not m:
            continue
        text = m.group(2)
        if re.fullmatch(r"[\w\[\]|{}\"', .]*", text):  # "name : type": the description follows
            text = ""
        for more in lines[k + 1 :]:
            if not more.startswith(" "):
                break
            text = f"{text} {more.strip()}".strip()
        first = re.match(r"(.+?\.)(\s|$)", text)
        for name in m.group(1).split(", "):
            helps[name] = first.group(1) if first else text
    return helps


def codec_parser(name: str):
    """The ``maskrep fit NAME`` parser: the data options, and one option per parameter of the codec's
    constructor (``--mask-size``, ``--dim``, ...) with the codec's own default; booleans take
    ``--x`` / ``--no-x``."""
    import argparse
    import inspect

    from .codecs import codec_class
    from .engine.reconstruction import parse_value

    cls = codec_class(name)
    p = argparse.ArgumentParser(prog=f"maskrep fit {name}", description=f"Fit the {name} codec on the box crops of "
                                "a COCO data set and save it.")
    _add_data_args(p)
    p.add_argument("--out", required=True, help="output .npz (for pca: AdelaiDet's format plus a header)")
    group = p.add_argument_group(f"{name} parameters (its constructor's, with its defaults)")
    helps = _param_help(cls)
    for param in inspect.signature(cls).parameters.values():
        if param.kind not in (param.KEYWORD_ONLY, param.POSITIONAL_OR_KEYWORD) or param.default is param.empty:
            continue
        flag, default = "--" + param.name.replace("_", "-"), param.default
        text = f"{helps.get(param.name, '')} (default: {default!r})".lstrip()
        if isinstance(default, bool):
            group.add_argument(flag, dest=param.name, action=argparse.BooleanOptionalAction, default=default,
                               help=text)
        else:
            kind = type(default) if isinstance(default, (int, float, str)) else parse_value
            group.add_argument(flag, dest=param.name, type=kind, default=default, metavar=param.name.upper(),
                               help=text)
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a codec parameter as KEY=VALUE (repeatable), the same as its option")
    return p, [q for q in inspect.signature(cls).parameters if q != "self"]


def _cmd_fit(args) -> int:
    from .codecs import get_codec
    from .distributed import init_from_env, is_main
    from .engine.reconstruction import fit_codec, parse_value

    parser, names = codec_parser(args.codec)
    args = parser.parse_args(args.codec_args, namespace=args)
    params = {k: getattr(args, k) for k in names if hasattr(args, k)}
    for item in args.set or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        params[key.strip().replace("-", "_")] = parse_value(value.strip())
    codec = get_codec(args.codec, **params)
    init_from_env()  # under torchrun: join the group, fit a share, sum the statistics
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
    import argparse

    from .codecs import list_codecs

    p = add("fit", "fit a codec on the box crops of a COCO data set and save it; each codec's parameters are options "
                   "with its own defaults (`maskrep fit CODEC --help` lists them); "
                   "`torchrun --nproc_per_node N -m maskrep fit ...` shares the instances over N processes "
                   "(or machines) and sums the statistics with torch.distributed, giving the one-process matrix")
    p.add_argument("codec", choices=list_codecs(), metavar="CODEC", help=f"codec name: {', '.join(list_codecs())}")
    p.add_argument("codec_args", nargs=argparse.REMAINDER, metavar="...",
                   help="--annotations FILE --out FILE and the codec's parameters, e.g. --mask-size 28 --dim 60")
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
