"""COCO box and mask evaluation without pycocotools' Python loops, with its statistics.

:func:`evaluate_coco` computes what ``COCOeval.evaluate(); accumulate(); summarize()`` computes,
number for number (the 12 summary statistics, the (T, R, K, A, M) precision and (T, K, A, M)
recall arrays): the same grouping by (image, category), the same stable orderings, the same greedy
matching with crowd and area-range ignores, the same interpolated precision. The IoUs come from
:func:`maskrep.ops.rle_iou` on the runs (``mask.iou``'s values) or from the boxes, the matching
from one numba kernel per (image, category), the accumulation from vectorised numpy.
"""

from __future__ import annotations

import json
import os

import numba
import numpy as np

__all__ = ["STAT_NAMES", "evaluate_coco", "summary_text"]

IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = (1, 10, 100)
AREA_RNG = ((0.0, 1e5**2), (0.0, 32.0**2), (32.0**2, 96.0**2), (96.0**2, 1e5**2))
AREA_LBL = ("all", "small", "medium", "large")
STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


@numba.njit(cache=True)
def _match(ious, gt_ignore, gt_crowd, thresholds, dt_matched, dt_ignore, gt_matched):
    """pycocotools' greedy matching of score-ordered detections (rows of ``ious``) to ground truth
    ordered with the non-ignored first (columns): dt_matched[t, d] = 1 + the matched gt column, or
    0; dt_ignore[t, d] = the matched gt's ignore flag."""
    n_dt, n_gt = ious.shape
    for t in range(len(thresholds)):
        for d in range(n_dt):
            best = min(thresholds[t], 1 - 1e-10)
            m = -1
            for g in range(n_gt):
                if gt_matched[t, g] > 0 and not gt_crowd[g]:
                    continue
                if m > -1 and gt_ignore[m] == 0 and gt_ignore[g] == 1:
                    break
                if ious[d, g] < best:
                    continue
                best = ious[d, g]
                m = g
            if m == -1:
                continue
            dt_ignore[t, d] = gt_ignore[m]
            dt_matched[t, d] = m + 1
            gt_matched[t, m] = d + 1


def _box_iou(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """COCO's box IoU of xywh boxes: (D, G); a crowd gt's union is the detection's area."""
    dx1, dy1 = dt[:, 0:1] + dt[:, 2:3], dt[:, 1:2] + dt[:, 3:4]
    gx1, gy1 = gt[:, 0] + gt[:, 2], gt[:, 1] + gt[:, 3]
    iw = np.minimum(dx1, gx1[None]) - np.maximum(dt[:, 0:1], gt[None, :, 0])
    ih = np.minimum(dy1, gy1[None]) - np.maximum(dt[:, 1:2], gt[None, :, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    da, ga = dt[:, 2] * dt[:, 3], gt[:, 2] * gt[:, 3]
    union = np.where(crowd[None], da[:, None], da[:, None] + ga[None] - inter)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def _load_gt(annotations):
    if isinstance(annotations, (str, os.PathLike)):
        with open(annotations, encoding="utf-8") as f:
            return json.load(f)
    return annotations


def _segm_ious(groups: list, images: dict) -> list[np.ndarray]:
    """The (D, G) mask IoUs of every group, from one element-wise count over all their pairs
    (:func:`maskrep.ops.rle_counts`); pycocotools' ``mask.iou`` values: I / U, or I / area(d)
    for a crowd gt, 0 where nothing is shared."""
    from ..ops.rle import rle_counts

    gt_rles = _gt_rles([a for *_, g in groups for a in g], images)
    pairs_d, pairs_g, shapes, at = [], [], [], 0
    for _, _, d, g in groups:
        rles = gt_rles[at : at + len(g)]
        at += len(g)
        pairs_d += [r["segmentation"] for r in d for _ in g]
        pairs_g += rles * len(d)
        shapes.append((len(d), len(g), [bool(a.get("iscrowd", 0)) for a in g]))
    inter, area_d, area_g = rle_counts(pairs_d, pairs_g)
    out, at = [], 0
    for n_d, n_g, crowd in shapes:
        i = inter[at : at + n_d * n_g].reshape(n_d, n_g).astype(np.float64)
        ad = area_d[at : at + n_d * n_g].reshape(n_d, n_g).astype(np.float64)
        ag = area_g[at : at + n_d * n_g].reshape(n_d, n_g).astype(np.float64)
        at += n_d * n_g
        union = np.where(np.array(crowd, dtype=bool)[None], ad, ad + ag - i)
        with np.errstate(invalid="ignore", divide="ignore"):
            out.append(np.where(i > 0, i / union, 0.0))
    return out


def _gt_rles(anns: list[dict], images: dict) -> list[dict]:
    """The annotations' masks as compressed RLE (pycocotools' ``annToRLE``), polygons rasterised one
    call per image."""
    from ..ops.rle import encode_counts, polygons_to_rle

    out: list = [None] * len(anns)
    polys: dict = {}
    for k, ann in enumerate(anns):
        image = images[ann["image_id"]]
        h, w = int(image["height"]), int(image["width"])
        segm = ann["segmentation"]
        if isinstance(segm, list):
            polys.setdefault(ann["image_id"], []).append((k, [np.asarray(p, np.float64).reshape(-1, 2) for p in segm]))
        elif isinstance(segm["counts"], list):
            out[k] = {"size": [h, w], "counts": encode_counts(segm["counts"])}
        else:
            counts = segm["counts"]
            out[k] = {"size": [h, w], "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}
    for image_id, items in polys.items():
        image = images[image_id]
        for (k, _), rle in zip(items, polygons_to_rle([p for _, p in items], int(image["height"]), int(image["width"]))):
            out[k] = rle
    return out


def evaluate_coco(annotations, results: list[dict], iou_type: str = "segm", image_ids=None) -> dict:
    """COCO evaluation of ``results`` (COCO result dicts) against ``annotations`` (a JSON path or
    its dict): {"stats": (12,), "precision": (T, R, K, A, M), "recall": (T, K, A, M), "cat_ids"}.

    Parameters are COCOeval's defaults: IoU .50:.05:.95, 101 recall points, max detections 1, 10,
    100, areas all / small / medium / large, per category; ``image_ids`` restricts the images.
    """
    from ..ops.rle import rle_area

    if iou_type not in ("segm", "bbox"):
        raise ValueError(f"iou_type must be 'segm' or 'bbox', got {iou_type!r}")
    doc = _load_gt(annotations)
    images = {im["id"]: im for im in doc["images"]}
    img_ids = sorted(images) if image_ids is None else sorted(set(image_ids))
    cat_ids = sorted(c["id"] for c in doc["categories"])
    unknown = {r["image_id"] for r in results} - set(images)
    if unknown:
        raise ValueError(f"results hold image ids the annotations do not have, e.g. {sorted(unknown)[:3]}")
    wanted = set(img_ids)
    gts: dict = {}
    for ann in doc["annotations"]:
        if ann["image_id"] in wanted:
            gts.setdefault((ann["image_id"], ann["category_id"]), []).append(ann)
    dts: dict = {}
    for k, res in enumerate(results):
        if res["image_id"] in wanted:
            dts.setdefault((res["image_id"], res["category_id"]), []).append((k, res))
    T, R, K, A, M = len(IOU_THRS), len(REC_THRS), len(cat_ids), len(AREA_RNG), len(MAX_DETS)
    # pycocotools' loadRes takes a detection's area from its box when the results carry boxes
    # (detectron2's and maskrep's segm results do), else from its mask
    box_area = bool(results) and bool(results[0].get("bbox"))
    groups = []  # (img, cat, dets sorted by score (at most 100), gts)
    for key in sorted(set(gts) | set(dts)):
        if key[1] not in cat_ids:
            continue
        d = [r for _, r in sorted(dts.get(key, []), key=lambda kr: (-kr[1]["score"], kr[0]))][: MAX_DETS[-1]]
        groups.append((key[0], key[1], d, gts.get(key, [])))
    ious_of = _segm_ious(groups, images) if iou_type == "segm" else None
    evals: dict = {}
    for n, (img, cat, d, g) in enumerate(groups):
        crowd = np.array([int(a.get("iscrowd", 0)) for a in g], dtype=np.int64)
        ignore = crowd.copy()  # COCOeval's "ignore" is the crowd flag (it overwrites any "ignore" field)
        g_area = np.array([float(a["area"]) for a in g], dtype=np.float64)
        scores = np.array([float(r["score"]) for r in d], dtype=np.float64)
        if iou_type == "segm":
            d_area = np.array([r["bbox"][2] * r["bbox"][3] if box_area else rle_area(r["segmentation"]) for r in d],
                              dtype=np.float64)
            ious = ious_of[n]
        else:
            d_box = np.array([r["bbox"] for r in d], dtype=np.float64).reshape(-1, 4)
            d_area = d_box[:, 2] * d_box[:, 3]
            ious = (_box_iou(d_box, np.array([a["bbox"] for a in g], dtype=np.float64).reshape(-1, 4), crowd.astype(bool))
                    if d and g else np.zeros((len(d), len(g))))
        for a, (lo, hi) in enumerate(AREA_RNG):
            g_ig = (ignore | (g_area < lo) | (g_area > hi)).astype(np.int64)
            order = np.argsort(g_ig, kind="mergesort")
            dt_matched = np.zeros((T, len(d)), dtype=np.int64)
            dt_ignore = np.zeros((T, len(d)), dtype=np.int64)
            gt_matched = np.zeros((T, len(g)), dtype=np.int64)
            if len(d) and len(g):
                _match(np.ascontiguousarray(ious[:, order]), g_ig[order], crowd[order], IOU_THRS, dt_matched,
                       dt_ignore, gt_matched)
            outside = (d_area < lo) | (d_area > hi)
            dt_ig = dt_ignore.astype(bool) | ((dt_matched == 0) & outside[None])
            evals[(cat, a, img)] = (scores, dt_matched > 0, dt_ig, int((g_ig == 0).sum()))
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k, cat in enumerate(cat_ids):
        for a in range(A):
            per_image = [evals[(cat, a, img)] for img in img_ids if (cat, a, img) in evals]
            if not per_image:
                continue
            npig = sum(e[3] for e in per_image)
            if npig == 0:
                continue
            for m, max_det in enumerate(MAX_DETS):
                scores = np.concatenate([e[0][:max_det] for e in per_image])
                order = np.argsort(-scores, kind="mergesort")
                matched = np.concatenate([e[1][:, :max_det] for e in per_image], axis=1)[:, order]
                ignored = np.concatenate([e[2][:, :max_det] for e in per_image], axis=1)[:, order]
                tps = matched & ~ignored
                fps = ~matched & ~ignored
                tp_sum = np.cumsum(tps, axis=1).astype(dtype=float)
                fp_sum = np.cumsum(fps, axis=1).astype(dtype=float)
                nd = tp_sum.shape[1]
                for t in range(T):
                    tp, fp = tp_sum[t], fp_sum[t]
                    rc = tp / npig
                    pr = tp / (fp + tp + np.spacing(1))
                    recall[t, k, a, m] = rc[-1] if nd else 0
                    pr = np.maximum.accumulate(pr[::-1])[::-1] if nd else pr
                    inds = np.searchsorted(rc, REC_THRS, side="left")
                    q = np.zeros(R)
                    valid = inds < nd
                    # pycocotools fills q until the first recall threshold past the last detection
                    stop = int(np.argmin(valid)) if not valid.all() else R
                    q[:stop] = pr[inds[:stop]]
                    precision[t, :, k, a, m] = q
    return {"stats": _stats(precision, recall), "precision": precision, "recall": recall, "cat_ids": cat_ids}


def _stats(precision: np.ndarray, recall: np.ndarray) -> np.ndarray:
    def mean(s):
        s = s[s > -1]
        return float(np.mean(s)) if s.size else -1.0

    def ap(iou=None, area=0, m=2):
        s = precision[:, :, :, area, m]
        if iou is not None:
            s = s[np.flatnonzero(np.isclose(IOU_THRS, iou))]
        return mean(s)

    def ar(area=0, m=2):
        return mean(recall[:, :, area, m])

    return np.array([ap(), ap(0.5), ap(0.75), ap(area=1), ap(area=2), ap(area=3),
                     ar(m=0), ar(m=1), ar(m=2), ar(area=1), ar(area=2), ar(area=3)])


def summary_text(stats) -> str:
    """The 12 lines ``COCOeval.summarize()`` prints, for these statistics."""
    rows = [(1, "0.50:0.95", "all", 100), (1, "0.50", "all", 100), (1, "0.75", "all", 100),
            (1, "0.50:0.95", "small", 100), (1, "0.50:0.95", "medium", 100), (1, "0.50:0.95", "large", 100),
            (0, "0.50:0.95", "all", 1), (0, "0.50:0.95", "all", 10), (0, "0.50:0.95", "all", 100),
            (0, "0.50:0.95", "small", 100), (0, "0.50:0.95", "medium", 100), (0, "0.50:0.95", "large", 100)]
    lines = []
    for (is_ap, iou, area, md), value in zip(rows, stats):
        title, kind = ("Average Precision", "(AP)") if is_ap else ("Average Recall", "(AR)")
        lines.append(f" {title:<18} {kind} @[ IoU={iou:<9} | area={area:>6s} | maxDets={md:>3d} ] = {value:0.3f}")
    return "\n".join(lines)
