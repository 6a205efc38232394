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
def _match_all(ious, iou_start, det_start, n_det, gt_start, n_gt, gt_area, gt_crowd, det_area, area_rng, thresholds,
               dt_matched, dt_ignored, npig):
    """pycocotools' ``evaluateImg`` for every (image, category) group and area range: the gts
    ordered with the in-range, non-crowd ones first (stable), each score-ordered detection matched
    greedily to the best gt at each IoU threshold; dt_matched / dt_ignored (A, T, D) flags and the
    count of gts that are not ignored, npig (groups, A)."""
    n_groups = len(n_det)
    n_areas = area_rng.shape[0]
    n_t = len(thresholds)
    for n in range(n_groups):  # serial: milliseconds of work, which a parallel region would risk on a busy core
        d0, nd, g0, ng, i0 = det_start[n], n_det[n], gt_start[n], n_gt[n], iou_start[n]
        order = np.empty(ng, dtype=np.int64)
        ignore = np.empty(ng, dtype=np.int64)
        gt_used = np.zeros(ng, dtype=np.bool_)
        for a in range(n_areas):
            lo, hi = area_rng[a, 0], area_rng[a, 1]
            k = 0
            for flag in range(2):  # the kept gts first, then the ignored, each in file order
                for g in range(ng):
                    area = gt_area[g0 + g]
                    ig = 1 if (gt_crowd[g0 + g] != 0 or area < lo or area > hi) else 0
                    if ig == flag:
                        order[k] = g
                        ignore[k] = ig
                        k += 1
            count = 0
            for g in range(ng):
                count += 1 - ignore[g]
            npig[n, a] = count
            for t in range(n_t):
                gt_used[:] = False
                for d in range(nd):
                    best = min(thresholds[t], 1 - 1e-10)
                    m = -1
                    for j in range(ng):
                        g = order[j]
                        if gt_used[j] and gt_crowd[g0 + g] == 0:
                            continue
                        if m > -1 and ignore[m] == 0 and ignore[j] == 1:
                            break
                        iou = ious[i0 + d * ng + g]
                        if iou < best:
                            continue
                        best = iou
                        m = j
                    area = det_area[d0 + d]
                    if m == -1:
                        dt_ignored[a, t, d0 + d] = area < lo or area > hi
                        continue
                    gt_used[m] = True
                    dt_matched[a, t, d0 + d] = True
                    dt_ignored[a, t, d0 + d] = ignore[m] == 1


def _pair_box_ious(dt: np.ndarray, gt: np.ndarray, crowd: np.ndarray) -> np.ndarray:
    """COCO's box IoU of (P, 4) xywh pairs: a crowd gt's union is the detection's area."""
    iw = np.minimum(dt[:, 0] + dt[:, 2], gt[:, 0] + gt[:, 2]) - np.maximum(dt[:, 0], gt[:, 0])
    ih = np.minimum(dt[:, 1] + dt[:, 3], gt[:, 1] + gt[:, 3]) - np.maximum(dt[:, 1], gt[:, 1])
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    da, ga = dt[:, 2] * dt[:, 3], gt[:, 2] * gt[:, 3]
    union = np.where(crowd, da, da + ga - inter)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def _load_gt(annotations):
    if isinstance(annotations, (str, os.PathLike)):
        with open(annotations, encoding="utf-8") as f:
            return json.load(f)
    return annotations


def _pair_mask_ious(dets: list, gt_list: list, images: dict, pair_d: np.ndarray, pair_g: np.ndarray,
                    gt_crowd: np.ndarray) -> np.ndarray:
    """Mask IoU of every (detection, gt) pair from one element-wise run count
    (:func:`maskrep.ops.rle_counts`): pycocotools' ``mask.iou`` values, I / U, or I / area(d) for
    a crowd gt, 0 where nothing is shared."""
    from ..ops.rle import rle_counts

    if not len(pair_d):
        return np.zeros(0)
    gt_rles = _gt_rles(gt_list, images)
    inter, area_d, area_g = rle_counts([dets[i]["segmentation"] for i in pair_d], [gt_rles[j] for j in pair_g])
    inter = inter.astype(np.float64)
    union = np.where(gt_crowd[pair_g].astype(bool), area_d, area_d + area_g - inter).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


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
    keys = sorted(k for k in set(gts) | set(dts) if k[1] in cat_ids)  # image-major, as COCOeval's loops
    group_of = {key: n for n, key in enumerate(keys)}
    # detections: each group's by descending score (ties in result order), at most 100
    det_idx = np.array([k for key in keys for k, _ in dts.get(key, [])], dtype=np.int64)
    det_grp = np.array([group_of[key] for key in keys for _ in dts.get(key, [])], dtype=np.int64)
    det_score = np.array([float(results[k]["score"]) for k in det_idx], dtype=np.float64)
    order = np.lexsort((det_idx, -det_score, det_grp))
    det_idx, det_grp, det_score = det_idx[order], det_grp[order], det_score[order]
    n_det_all = np.bincount(det_grp, minlength=len(keys))
    det_start_all = np.concatenate([[0], np.cumsum(n_det_all)[:-1]])
    rank = np.arange(len(det_idx)) - det_start_all[det_grp] if len(det_idx) else np.zeros(0, dtype=np.int64)
    keep = rank < MAX_DETS[-1]
    det_idx, det_grp, det_score, rank = det_idx[keep], det_grp[keep], det_score[keep], rank[keep]
    n_det = np.bincount(det_grp, minlength=len(keys)).astype(np.int64)
    det_start = np.concatenate([[0], np.cumsum(n_det)[:-1]]).astype(np.int64)
    dets = [results[k] for k in det_idx]
    if iou_type == "segm":
        det_area = np.array([r["bbox"][2] * r["bbox"][3] for r in dets] if box_area else
                            [rle_area(r["segmentation"]) for r in dets], dtype=np.float64)
    else:
        det_box = np.array([r["bbox"] for r in dets], dtype=np.float64).reshape(-1, 4)
        det_area = det_box[:, 2] * det_box[:, 3]
    # ground truth: each group's in file order
    gt_list = [a for key in keys for a in gts.get(key, [])]
    n_gt = np.array([len(gts.get(key, [])) for key in keys], dtype=np.int64)
    gt_start = np.concatenate([[0], np.cumsum(n_gt)[:-1]]).astype(np.int64)
    gt_area = np.array([float(a["area"]) for a in gt_list], dtype=np.float64)
    gt_crowd = np.array([int(a.get("iscrowd", 0)) for a in gt_list], dtype=np.int64)
    # every group's (D, G) IoUs, back to back
    pair_n = n_det * n_gt
    iou_start = np.concatenate([[0], np.cumsum(pair_n)[:-1]]).astype(np.int64)
    grp_of_pair = np.repeat(np.arange(len(keys)), pair_n)
    local = np.arange(int(pair_n.sum())) - iou_start[grp_of_pair]
    pair_d = det_start[grp_of_pair] + local // np.maximum(n_gt[grp_of_pair], 1)
    pair_g = gt_start[grp_of_pair] + local % np.maximum(n_gt[grp_of_pair], 1)
    if iou_type == "segm":
        ious = _pair_mask_ious(dets, gt_list, images, pair_d, pair_g, gt_crowd)
    else:
        gt_box = np.array([a["bbox"] for a in gt_list], dtype=np.float64).reshape(-1, 4)
        ious = _pair_box_ious(det_box[pair_d], gt_box[pair_g], gt_crowd[pair_g].astype(bool))
    area_rng = np.array(AREA_RNG, dtype=np.float64)
    dt_matched = np.zeros((A, T, len(dets)), dtype=np.bool_)
    dt_ignored = np.zeros((A, T, len(dets)), dtype=np.bool_)
    npig = np.zeros((len(keys), A), dtype=np.int64)
    _match_all(ious, iou_start, det_start, n_det, gt_start, n_gt, gt_area, gt_crowd, det_area, area_rng, IOU_THRS,
               dt_matched, dt_ignored, npig)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    key_cat = np.array([key[1] for key in keys], dtype=np.int64)
    det_cat = key_cat[det_grp] if len(det_grp) else np.zeros(0, dtype=np.int64)
    for k, cat in enumerate(cat_ids):
        if not (key_cat == cat).any():
            continue
        for a in range(A):
            total = int(npig[key_cat == cat, a].sum())
            if total == 0:
                continue
            for m, max_det in enumerate(MAX_DETS):
                idx = np.flatnonzero((det_cat == cat) & (rank < max_det))  # image order, then score order
                order = idx[np.argsort(-det_score[idx], kind="mergesort")]
                matched, ignored = dt_matched[a][:, order], dt_ignored[a][:, order]
                tp_sum = np.cumsum(matched & ~ignored, axis=1).astype(dtype=float)
                fp_sum = np.cumsum(~matched & ~ignored, axis=1).astype(dtype=float)
                nd = tp_sum.shape[1]
                rc = tp_sum / total
                pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
                recall[:, k, a, m] = rc[:, -1] if nd else 0
                if nd:
                    pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
                for t in range(T):
                    inds = np.searchsorted(rc[t], REC_THRS, side="left")
                    # pycocotools fills q until the first recall threshold past the last detection
                    stop = R if nd and inds[-1] < nd else int(np.argmax(inds >= nd))
                    q = np.zeros(R)
                    q[:stop] = pr[t, inds[:stop]]
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
