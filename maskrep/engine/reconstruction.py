"""Fit codecs on COCO-format data and measure how well they reconstruct masks.

Reported per codec: code length; mean per-instance IoU at crop resolution; mean per-instance IoU
at full image resolution after pasting the decoded crop back into the instance's box (what a
detector really pays); AdelaiDet's pooled two-class mIoU (background included, for comparison
with MEInst's printed numbers); encode and decode throughput.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator, Sequence

import numpy as np

from ..codecs import MaskCodec, get_codec, load
from ..data.coco import CocoInstance, crop_instances
from ..ops.boundary import boundary_fscore
from ..ops.masks import _iou_from_counts, binarize, mask_counts
from ..ops.rle import rle_counts, rle_to_mask

__all__ = [
    "evaluate_reconstruction",
    "fit_codec",
    "fit_or_load",
    "format_table",
    "iter_crops",
    "parse_codec_spec",
    "plot_rate_distortion",
    "run_grid",
]


def iter_crops(instances: Sequence[CocoInstance], size: int, *, chunk: int = 4096) -> Iterator[np.ndarray]:
    """Yield (n, S, S) bool crops of ``instances`` in chunks, so nothing holds them all."""
    for start in range(0, len(instances), chunk):
        yield crop_instances(instances[start : start + chunk], size)


def fit_codec(codec: MaskCodec, instances: Sequence[CocoInstance], *, chunk: int = 4096, progress: bool = True,
              checkpoint: str | None = None) -> MaskCodec:
    """Fit ``codec`` on the box crops of ``instances`` (streamed in chunks), with a progress bar.

    ``checkpoint``: where a codec with the "resume" capability keeps its training state (ignored
    by codecs that fit in one pass).

    In a process group (``torchrun``) each process crops every ``world_size``-th instance and the
    codec sums the statistics over the processes: every process ends with the same codec, the one a
    single process fitting all instances gets (for ``pca`` without sampled jitter the statistics are
    integers, equal bit for bit; the eigensolver's last bits follow its thread count).
    """
    if not codec.needs_fit:
        return codec
    from tqdm import tqdm

    from ..distributed import get_rank, get_world_size, is_main

    share = instances[get_rank() :: get_world_size()]
    show = progress and is_main()
    # a codec that trains after reading its crops has a bar of its own for the training
    desc = f"read crops for {codec.name}" if "resume" in codec.capabilities else f"fit {codec.name}"
    with tqdm(total=len(share), desc=desc, unit="mask", disable=not show) as bar:
        codec.fit(iter_crops(share, codec.mask_size, chunk=chunk), progress=bar.update if show else None,
                  checkpoint=checkpoint if "resume" in codec.capabilities else None)
    return codec


def fit_or_load(spec: str, instances, cache_dir: str, tag: str) -> MaskCodec:
    """The codec of ``name:key=value,...``; one that learns is loaded from
    ``cache_dir/<spec>_<tag>.npz`` when there, else fitted on ``instances()`` (called only then) and
    kept there (a learned codec's interrupted training resumes from ``<file>.training.pt``)."""
    codec = parse_codec_spec(spec)
    if not codec.needs_fit:
        return codec
    path = os.path.join(cache_dir, re.sub(r"[^A-Za-z0-9_.=-]+", "_", spec) + f"_{tag}.npz")
    if os.path.exists(path):
        return load(path)
    print(f"fitting {spec} -> {path}")
    os.makedirs(cache_dir, exist_ok=True)
    fit_codec(codec, instances(), checkpoint=path + ".training.pt").save(path)
    return codec


def parse_codec_spec(spec: str) -> MaskCodec:
    """A codec from ``path.npz`` (saved) or ``name:key=value,...`` (built; must need no fitting,
    or be fitted by the caller). Values are parsed as int, float, true/false, or kept as text."""
    if os.path.exists(spec) or spec.endswith(".npz"):
        return load(spec)
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"codec spec {spec!r}: expected key=value, got {item!r}")
        params[key.strip().replace("-", "_")] = parse_value(value.strip())
    return get_codec(name, **params)


def parse_value(text: str):
    """A parameter value from text: int, float, true/false, or the text itself."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def evaluate_reconstruction(codec: MaskCodec, instances: Sequence[CocoInstance], *, full_image: bool = True,
                            chunk: int = 2048, progress: bool = True, meinst_jitter_seed: int | None = None,
                            boundary: bool = True) -> dict:
    """Round-trip every instance's crop through ``codec`` and measure what survives.

    ``boundary``: also the mean boundary F-score at image resolution (with ``full_image``).

    ``meinst_jitter_seed``: reproduce MEInst's own evaluation (``mask_evaluation.py``): encode
    freshly jittered logit targets, drawn from this seed, instead of the deterministic mean logit
    (PCA codecs with ``sigmoid=True`` only). MEInst prints the pooled two-class mIoU; its script
    draws an unseeded jitter, so its numbers vary from run to run by about as much as seeds do here.

    Returns
    -------
    dict with keys ``codec``, ``code_length``, ``mask_size``, ``num_instances``,
    ``crop_iou`` / ``crop_iou_median`` / ``crop_iou_p10`` (per instance, at S x S),
    ``full_iou`` / ``full_iou_median`` / ``full_iou_p10`` (pasted into the box at image
    resolution, by :meth:`MaskCodec.paste_rle`; absent when ``full_image`` is False),
    ``boundary_f`` (mean per-instance boundary F-score at image resolution, with ``boundary``),
    ``pooled_miou`` (AdelaiDet's two-class mIoU over crops), ``encode_per_s`` and
    ``decode_per_s`` (masks per second).
    """
    from tqdm import tqdm

    s = codec.mask_size
    rng = None
    if meinst_jitter_seed is not None:
        if "jitter" not in codec.capabilities:
            raise ValueError(f"MEInst's jittered evaluation applies to the pca codec, not {codec.name!r}")
        rng = np.random.default_rng(meinst_jitter_seed)
    crop_ious, full_ious, boundary_fs = [], [], []
    tp = fp = fn = tn = 0
    if instances:  # compile and warm up outside the timed calls and the bar, so neither counts one-time costs
        t0 = time.perf_counter()
        if progress:
            tqdm.write(f"reconstruct {codec.name}: preparing the fast paths (numba compiles them on first use on "
                       "this machine, then loads them from its cache)")
        warm = crop_instances(instances[:2], s)
        warm_codes = codec.encode(warm)
        codec.decode(warm_codes)
        if full_image:
            _full_image_scores(codec, instances[:2], warm_codes, boundary=boundary)
        if progress and time.perf_counter() - t0 > 2:
            tqdm.write(f"reconstruct {codec.name}: ready after {time.perf_counter() - t0:.0f} s")
    t_enc = t_dec = 0.0
    with tqdm(total=len(instances), desc=f"reconstruct {codec.name}", unit="mask", disable=not progress) as bar:
        for start in range(0, len(instances), chunk):
            batch = instances[start : start + chunk]
            crops = crop_instances(batch, s)  # (n, S, S)
            t0 = time.perf_counter()
            codes = codec.encode(crops) if rng is None else codec.encode_jittered(crops, rng)
            t1 = time.perf_counter()
            probs = codec.decode(codes)  # (n, S, S)
            t2 = time.perf_counter()
            t_enc += t1 - t0
            t_dec += t2 - t1
            pred = binarize(probs)
            inter, area_pred, area_gt = mask_counts(pred, crops)  # one pass gives IoU and the pooled counts
            union = area_pred + area_gt - inter
            crop_ious.append(_iou_from_counts(inter, union))
            tp += int(inter.sum())
            fp += int((area_pred - inter).sum())
            fn += int((area_gt - inter).sum())
            tn += int(pred.size - union.sum())
            if full_image:
                ious, bfs = _full_image_scores(codec, batch, codes, boundary=boundary)
                full_ious.append(ious)
                if bfs is not None:
                    boundary_fs.append(bfs)
            bar.update(len(batch))
    crop = np.concatenate(crop_ious) if crop_ious else np.zeros(0)
    n = len(instances)
    iou_fg = tp / max(tp + fp + fn, 1)
    iou_bg = tn / max(tn + fp + fn, 1)
    out = {
        "codec": codec.name,
        "params": dict(codec.params),
        "code_length": codec.code_length,
        "mask_size": s,
        "num_instances": n,
        **_summary("crop_iou", crop),
        "pooled_miou": (iou_fg + iou_bg) / 2,
        "encode_per_s": n / t_enc if t_enc > 0 else None,
        "decode_per_s": n / t_dec if t_dec > 0 else None,
    }
    if meinst_jitter_seed is not None:
        out["meinst_jitter_seed"] = meinst_jitter_seed
    if full_image:
        out.update(_summary("full_iou", np.concatenate(full_ious) if full_ious else np.zeros(0)))
        if boundary:
            out["boundary_f"] = float(np.mean(np.concatenate(boundary_fs))) if boundary_fs else float("nan")
    return out


def _full_image_scores(codec: MaskCodec, batch: Sequence[CocoInstance], codes, *,
                       boundary: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Each instance's code decoded into its box at image resolution (:meth:`MaskCodec.paste_rle`)
    against the instance's full-image mask: (n,) IoU, on RLEs throughout (for map codecs, the values
    ``mask_iou(paste_masks(map, box, (H, W)), inst.mask())`` gives), and (n,) boundary F-score
    (:func:`maskrep.ops.boundary_fscore`, DAVIS's tolerance of 0.8% of the image diagonal), or None."""
    preds: list[dict] = [{}] * len(batch)
    by_size: dict[tuple[int, int], list[int]] = {}
    for k, inst in enumerate(batch):
        by_size.setdefault((inst.height, inst.width), []).append(k)
    for size, idx in by_size.items():
        boxes = np.stack([batch[k].box for k in idx])
        for k, rle in zip(idx, codec.paste_rle(codes[idx], boxes, size)):
            preds[k] = rle
    gts = [inst.to_rle() for inst in batch]
    inter, area_pred, area_gt = rle_counts(preds, gts)
    ious = _iou_from_counts(inter, area_pred + area_gt - inter)
    if not boundary:
        return ious, None
    return ious, np.array([_boundary_f(p, g, inst) for p, g, inst in zip(preds, gts, batch)])


def _boundary_f(pred: dict, gt: dict, inst: CocoInstance) -> float:
    """Boundary F-score at image resolution, computed on a window: the box around both masks grown
    by the tolerance, which gives the whole-image value."""
    p, g = rle_to_mask(pred), rle_to_mask(gt)
    tol = 0.008 * float(np.hypot(inst.height, inst.width))
    margin = int(np.ceil(tol)) + 2
    rows, cols = np.flatnonzero((p | g).any(1)), np.flatnonzero((p | g).any(0))
    if not len(rows):
        return 1.0  # both empty
    window = (slice(max(rows[0] - margin, 0), rows[-1] + 1 + margin), slice(max(cols[0] - margin, 0), cols[-1] + 1 + margin))
    return boundary_fscore(p[window], g[window], tolerance=tol)


def _summary(key: str, ious: np.ndarray) -> dict:
    """``key`` (mean), ``key_median`` and ``key_p10`` of per-instance IoUs; None when there are none."""
    if ious.size == 0:
        return {key: None, f"{key}_median": None, f"{key}_p10": None}  # JSON null, not NaN
    return {key: float(ious.mean()), f"{key}_median": float(np.median(ious)), f"{key}_p10": float(np.percentile(ious, 10))}


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def format_table(results: list[dict]) -> str:
    """A Markdown table of :func:`evaluate_reconstruction` results."""
    lines = ["| codec | params | D | S | crop IoU | full-image IoU | boundary F | pooled mIoU | encode/s | decode/s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        params = ", ".join(f"{k}={v}" for k, v in r["params"].items() if k != "mask_size" and k not in _TRAINING_PARAMS)
        lines.append(f"| {r['codec']} | {params} | {r['code_length']} | {r['mask_size']} | {_fmt(r['crop_iou'], '.4f')} | "
                     f"{_fmt(r.get('full_iou'), '.4f')} | {_fmt(r.get('boundary_f'), '.4f')} | "
                     f"{_fmt(r['pooled_miou'], '.4f')} | "
                     f"{_fmt(r['encode_per_s'], ',.0f')} | {_fmt(r['decode_per_s'], ',.0f')} |")
    return "\n".join(lines)


#: fitting settings left out of tables and legends (they say how, not what)
_TRAINING_PARAMS = ("epochs", "batch_size", "lr", "shift", "seed", "jitter", "whiten", "sigmoid")

_AXIS_LABELS = {"crop_iou": "crop IoU (S x S)", "full_iou": "full-image IoU", "boundary_f": "boundary F (full image)"}


def plot_rate_distortion(results: list[dict], path: str, *,
                         keys: Sequence[str] = ("crop_iou", "full_iou", "boundary_f")) -> None:
    """One panel per measure in ``keys`` (those the results hold) against code length, one line per
    codec family (name, S, mode)."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in keys if any(r.get(k) is not None for r in results)]
    if not keys:
        raise ValueError(f"no results hold any of {list(keys)}")
    families: dict = {}
    for r in results:
        label = f"{r['codec']} S={r['mask_size']}" + (f" {r['params']['mode']}" if "mode" in r["params"] else "")
        families.setdefault(label, []).append(r)
    lengths = sorted({r["code_length"] for r in results})
    ticks = [t for t in (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096) if lengths[0] / 2 <= t <= lengths[-1] * 2]
    fig, axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 4.6), squeeze=False)
    cmap = plt.get_cmap("tab20")
    for ax, key in zip(axes[0], keys):
        for i, (label, rows) in enumerate(sorted(families.items())):
            pts = sorted((r["code_length"], r[key]) for r in rows if r.get(key) is not None)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", ms=4, color=cmap(i % 20), label=label)
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("code length D (numbers per instance)")
        ax.set_ylabel(f"mean per-instance {_AXIS_LABELS.get(key, key)}")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(labels) - 1) // 5), 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_grid(codecs: Sequence[MaskCodec], train: Sequence[CocoInstance], val: Sequence[CocoInstance], *,
             progress: bool = True) -> list[dict]:
    """Fit each codec on ``train`` (when it learns and is not fitted yet: a loaded codec is evaluated
    as it is) and evaluate it on ``val``; one result dict each."""
    results = []
    for codec in codecs:
        if not codec.is_fitted:
            fit_codec(codec, train, progress=progress)
        result = evaluate_reconstruction(codec, val, progress=progress)
        print(f"{codec!r}: D={result['code_length']} crop IoU {result['crop_iou']:.4f}, "
              f"full-image IoU {result['full_iou']:.4f}")
        results.append(result)
    return results
