"""COCO evaluation end to end (evaluate + accumulate + summarize) on coco-mini val, 100 detections
per image (every GT mask shifted by up to 6 px, 15% with another category, the rest rectangles of
random categories), masks and boxes: pycocotools' COCOeval, faster-coco-eval (when installed) and
maskrep.engine.cocoeval, timed in one process, best of 3, with whether their statistics agree.

    python -m benchmarks.cocoeval
"""

import contextlib
import copy
import io
import json
import time

import numpy as np

from benchmarks._common import coco_mini, machine


def run_cocoeval(COCO, COCOeval, annotations, results, iou_type):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(annotations))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return np.asarray(ev.stats)


def best(fn, repeats: int = 3):
    out, t = None, float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        t = min(t, time.perf_counter() - t0)
    return out, t


def main() -> None:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from maskrep.engine.cocoeval import evaluate_coco
    from maskrep.testing import perturbed_detections

    annotations = coco_mini() / "annotations" / "instances_val2017.json"
    _, results = perturbed_detections(annotations)
    doc = json.loads(annotations.read_text())
    print(f"machine: {machine()}")
    print(f"coco-mini val: {len(doc['images'])} images, {len(results)} detections")
    evaluate_coco(doc, results[:200], "segm")  # compile (or load from the cache) outside the timing
    for iou_type in ("segm", "bbox"):
        res = results if iou_type == "segm" else [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
        ref, t_py = best(lambda r=res, k=iou_type: run_cocoeval(COCO, COCOeval, annotations, r, k))
        ours, t_ours = best(lambda r=res, k=iou_type: evaluate_coco(str(annotations), r, k)["stats"])
        line = (f"{iou_type}: pycocotools {t_py:.2f} s | maskrep {t_ours:.2f} s (x{t_py / t_ours:.1f}, statistics "
                f"{'identical' if np.array_equal(ours, ref) else 'DIFFERENT'})")
        try:
            from faster_coco_eval import COCO as FCOCO
            from faster_coco_eval import COCOeval_faster

            fast, t_fast = best(lambda r=res, k=iou_type: run_cocoeval(FCOCO, COCOeval_faster, annotations, r, k))
            line += (f" | faster-coco-eval {t_fast:.2f} s (maskrep x{t_fast / t_ours:.1f} it; its statistics "
                     f"{'identical' if np.array_equal(fast, ref) else f'differ by up to {np.abs(fast - ref).max():.1e}'})")
        except ImportError:
            line += " | faster-coco-eval not installed (pip install faster-coco-eval)"
        print(line)


if __name__ == "__main__":
    main()
