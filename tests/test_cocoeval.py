"""maskrep's COCO evaluation gives pycocotools' COCOeval numbers: the 12 statistics, the precision
and recall arrays, for masks and boxes, crowd regions included."""

import contextlib
import copy
import io

import numpy as np
import pytest

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def detections(coco_mini):
    """40 coco-mini val images, 100 detections each (maskrep.testing.perturbed_detections): shifted
    GT masks, wrong categories, rectangles, tied scores."""
    from maskrep.testing import perturbed_detections

    ann = coco_mini / "annotations" / "instances_val2017.json"
    image_ids, results = perturbed_detections(ann, images=40, score_decimals=2)
    return ann, image_ids, results


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
