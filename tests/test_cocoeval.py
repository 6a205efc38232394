"""maskrep's COCO evaluation gives pycocotools' COCOeval numbers: the 12 statistics, the precision
and recall arrays, for masks and boxes, crowd regions included."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def detections(coco_mini):
    """40 coco-mini val images, 100 detections each: every GT mask shifted by up to 6 px (15% with
    another category), the rest rectangles of random categories; scores with ties."""
    from maskrep.data import CocoInstances
    from maskrep.ops import mask_to_rle

    ann = coco_mini / "annotations" / "instances_val2017.json"
    doc = json.loads(ann.read_text())
    images = doc["images"][:40]
    by_image: dict = {}
    for inst in CocoInstances(ann):
        by_image.setdefault(inst.image_id, []).append(inst)
    cats = [c["id"] for c in doc["categories"]]
    rng = np.random.default_rng(0)
    results = []
    for im in images:
        h, w = im["height"], im["width"]
        masks = [(np.roll(i.mask(), tuple(rng.integers(-6, 7, 2)), (0, 1)),
                  i.category_id if rng.random() < 0.85 else int(rng.choice(cats))) for i in by_image.get(im["id"], [])]
        while len(masks) < 100:
            x0, y0 = rng.integers(0, w - 10), rng.integers(0, h - 10)
            m = np.zeros((h, w), bool)
            m[y0 : y0 + rng.integers(5, 200), x0 : x0 + rng.integers(5, 200)] = True
            masks.append((m, int(rng.choice(cats))))
        for m, c in masks[:100]:
            ys, xs = np.nonzero(m)
            results.append({"image_id": im["id"], "category_id": c, "segmentation": mask_to_rle(m),
                            "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
                            "score": float(np.round(rng.random(), 2))})
    return ann, [im["id"] for im in images], results


@pytest.mark.parametrize("iou_type,with_box", [("segm", True), ("segm", False), ("bbox", True)])
def test_statistics_equal_pycocotools(detections, iou_type, with_box):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    from maskrep.engine.cocoeval import evaluate_coco

    ann, image_ids, results = detections
    if not with_box:  # then a detection's area is its mask's
        results = [{k: v for k, v in r.items() if k != "bbox"} for r in results]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann))
        ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), iou_type)
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ours = evaluate_coco(str(ann), results, iou_type, image_ids=image_ids)
    assert np.array_equal(ours["stats"], ev.stats), (ours["stats"], ev.stats)
    assert np.array_equal(ours["precision"], ev.eval["precision"])
    assert np.array_equal(ours["recall"], ev.eval["recall"])
    assert ours["stats"][1] > 0.1  # the shifted masks are found: not a vacuous comparison


def test_coco_eval_backends_print_the_same_summary(detections):
    from maskrep.engine.evaluation import coco_eval

    ann, image_ids, results = detections
    ours = coco_eval(str(ann), results, "segm", image_ids, per_category=True, backend="maskrep")
    theirs = coco_eval(str(ann), results, "segm", image_ids, per_category=True, backend="pycocotools")
    assert ours == theirs  # the 12 numbers, the printed table, the per-category AP
