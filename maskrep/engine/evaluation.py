"""COCO evaluation of a detector: run inference, write COCO-format results, score them with COCOeval.

faster-coco-eval is used when installed (identical AP, several times faster); pycocotools otherwise.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os

import numpy as np
import torch
from tqdm import tqdm

from .._io import atomic_write_json
from ..detection.postprocess import rles_in_image, scale_boxes
from ..distributed import all_gather_object, get_rank, get_world_size, is_main

__all__ = ["STAT_NAMES", "coco_eval", "detections_to_coco", "evaluate_detector", "format_metrics",
           "matched_boundary_fscores"]

STAT_NAMES = ["AP", "AP50", "AP75", "APs", "APm", "APl"]
STAT_NAMES_REST = ["AR1", "AR10", "AR100", "ARs", "ARm", "ARl"]


def _pycocotools_api():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    return COCO, COCOeval, "pycocotools"


def _maskrep_eval(annotations: str, results: list[dict], iou_type: str, image_ids, per_category: bool) -> dict:
    from .cocoeval import STAT_NAMES as ALL
    from .cocoeval import evaluate_coco, summary_text

    if not results:
        return {**dict.fromkeys(STAT_NAMES, 0.0), "summary": "no detections"}
    with open(annotations, encoding="utf-8") as f:
        doc = json.load(f)
    ev = evaluate_coco(doc, results, iou_type, image_ids=image_ids)
    out = {name: float(v) for name, v in zip(ALL, ev["stats"])}
    out["summary"] = summary_text(ev["stats"])
    if per_category:
        names = {c["id"]: c["name"] for c in doc["categories"]}
        per = {}
        for k, cat in enumerate(ev["cat_ids"]):
            p = ev["precision"][:, :, k, 0, -1]
            per[names[cat]] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
        out["per_category"] = per
    return out


def _summary_text(stats) -> str:
    from .cocoeval import summary_text

    return summary_text(stats)


def _coco_api():
    try:
        from faster_coco_eval import COCO, COCOeval_faster

        return COCO, COCOeval_faster, "faster-coco-eval"
    except ImportError:
        return _pycocotools_api()


def detections_to_coco(det: dict, target: dict, category_ids: list[int]) -> list[dict]:
    """One image's detections (resized input frame) -> COCO result dicts in the original image frame.

    Boxes are scaled back (and unflipped); a ``mask`` (:class:`maskrep.detection.heads.MaskMaps`)
    becomes an RLE segmentation at the original resolution, pasted straight to RLE for box-frame
    maps (:func:`maskrep.detection.postprocess.rles_in_image`).
    """
    size, orig = tuple(target["size"]), tuple(target["orig_size"])
    flipped = bool(target.get("flipped"))
    boxes = scale_boxes(det["boxes"], size, orig, flipped=flipped)
    scores = det["scores"].detach().float().cpu().numpy()
    labels = det["labels"].cpu().numpy()
    rles = rles_in_image(det["mask"], det["boxes"], size, orig, flipped=flipped) if "mask" in det else None
    out = []
    for k in range(len(scores)):
        x0, y0, x1, y1 = (float(v) for v in boxes[k])
        res = {"image_id": int(target["image_id"]), "category_id": int(category_ids[labels[k]]),
               "bbox": [x0, y0, x1 - x0, y1 - y0], "score": float(scores[k])}
        if rles is not None:
            res["segmentation"] = rles[k]
        out.append(res)
    return out


def coco_eval(annotations: str, results: list[dict], iou_type: str = "bbox", image_ids=None, *,
              per_category: bool = False, backend: str = "auto") -> dict:
    """COCOeval of ``results`` -> {"AP": ..., "AP50": ..., ... (the 12 stats), "summary": COCOeval's
    printed table} (AP in [0, 1]; -1 when undefined). ``per_category`` adds {"per_category": {name: AP}}
    (AP at IoU .50:.95, all areas, 100 detections). ``backend``: "auto" (faster-coco-eval when
    installed, else pycocotools), "pycocotools", or "maskrep" (:func:`maskrep.engine.cocoeval.evaluate_coco`,
    the same numbers without pycocotools' Python loops)."""
    if backend not in ("auto", "pycocotools", "maskrep"):
        raise ValueError(f"backend must be 'auto', 'pycocotools' or 'maskrep', got {backend!r}")
    if backend == "maskrep":
        return _maskrep_eval(annotations, results, iou_type, image_ids, per_category)
    COCO, COCOeval, _ = _coco_api() if backend == "auto" else _pycocotools_api()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(annotations)
    if not results:
        return {**dict.fromkeys(STAT_NAMES, 0.0), "summary": "no detections"}
    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        dt = gt.loadRes(copy.deepcopy(results))  # loadRes adds fields to the dicts it is given
        ev = COCOeval(gt, dt, iou_type)
        if image_ids is not None:
            ev.params.imgIds = list(image_ids)
        ev.evaluate()
        ev.accumulate()
        text.seek(0)
        text.truncate()
        ev.summarize()
    out = {name: float(v) for name, v in zip(STAT_NAMES, ev.stats[:6])}
    out.update({name: float(v) for name, v in zip(STAT_NAMES_REST, ev.stats[6:12])})
    # faster-coco-eval's summarize prints nothing to stdout: the same table, from its numbers
    out["summary"] = text.getvalue().rstrip() or _summary_text(ev.stats[:12])
    if per_category:
        precision = np.asarray(ev.eval["precision"])  # (T, R, K, A, M)
        names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
        per = {}
        for k, cat in enumerate(ev.params.catIds):
            p = precision[:, :, k, 0, -1]
            per[names[cat]] = float(p[p > -1].mean()) if (p > -1).any() else -1.0
        out["per_category"] = per
    return out


def format_metrics(metrics: dict, *, per_category: bool = False) -> str:
    """COCOeval's summary table of each task, and per-category AP when present."""
    parts = []
    for task in ("bbox", "segm"):
        m = metrics.get(task)
        if m is None:
            continue
        parts.append(f"{task}:\n{m.get('summary', '')}")
        if per_category and "per_category" in m:
            rows = sorted(m["per_category"].items(), key=lambda kv: -kv[1])
            parts.append("\n".join(f"  {name:<20s} AP {ap:.3f}" for name, ap in rows))
    return "\n".join(parts)


@torch.no_grad()
def evaluate_detector(model, dataset, *, out_dir: str | None = None, device="cpu", batch_size: int = 1,
                      num_workers: int = 0, progress: bool = True, per_category: bool = False) -> dict:
    """Run ``model`` over ``dataset`` (a :class:`DetectionDataset`) and COCO-evaluate it.

    In a process group every rank runs its share of the images; rank 0 gathers and scores.
    Writes ``coco_results.json`` and ``coco_eval.json`` to ``out_dir`` (rank 0). Returns
    {"bbox": {...}, "segm": {...}} (segm only when the model predicts masks; see :func:`coco_eval`);
    other ranks get {}.
    """
    from ..data.detection import eval_loader

    was_training = model.training
    model.eval()
    loader = eval_loader(dataset, batch_size, num_workers, get_rank(), get_world_size())
    results = []
    for images, targets in tqdm(loader, desc="eval", disable=not (progress and is_main()), leave=False):
        dets = model(images.to(device), image_sizes=[t["size"] for t in targets])
        for det, t in zip(dets, targets):
            results.extend(detections_to_coco(det, t, dataset.category_ids))
    model.train(was_training)
    results = [r for part in all_gather_object(results) for r in part]
    if not is_main():
        return {}
    inner = model.module if hasattr(model, "module") else model
    has_masks = getattr(inner, "mask_head", None) is not None
    metrics = {"bbox": coco_eval(dataset.coco.path, results, "bbox", dataset.image_ids, per_category=per_category)}
    if has_masks:
        metrics["segm"] = coco_eval(dataset.coco.path, results, "segm", dataset.image_ids, per_category=per_category)
    if out_dir:
        _atomic_json(os.path.join(out_dir, "coco_results.json"), results)
        _atomic_json(os.path.join(out_dir, "coco_eval.json"), metrics)
    return metrics


def _atomic_json(path: str, obj) -> None:
    atomic_write_json(path, obj)


def matched_boundary_fscores(pred_masks: np.ndarray, gt_masks: np.ndarray, *, tolerance: float | None = None) -> np.ndarray:
    """Per ground-truth instance, the boundary F-score of the predicted mask that overlaps it most.

    pred_masks : (n, H, W) bool, one image's detections (any score); gt_masks : (G, H, W) bool.
    Returns (G,) float: :func:`maskrep.ops.boundary_fscore` against the detection of highest mask
    IoU with the instance (0 when no detection overlaps it). A measure of contour quality given the
    detections, free of the score ranking that AP adds.
    """
    from ..ops.boundary import boundary_fscore
    from ..ops.masks import mask_iou_pairwise

    out = np.zeros(len(gt_masks))
    if len(gt_masks) == 0 or len(pred_masks) == 0:
        return out
    iou = mask_iou_pairwise(gt_masks, pred_masks)  # (G, n)
    for g in range(len(gt_masks)):
        best = int(np.argmax(iou[g]))
        if iou[g, best] > 0:
            out[g] = boundary_fscore(pred_masks[best], gt_masks[g], tolerance=tolerance)
    return out
