"""Fast paths against their references: identical output where the arithmetic is the same."""

import numpy as np
import pytest

from maskrep._kernels.tolerances import TOLERANCES
from maskrep.ops import mask_iou, mask_iou_pairwise, paste_masks, rasterize_in_boxes
from maskrep.ops.masks import mask_counts

pytestmark = pytest.mark.kernels

EDGE_BOXES = np.array([
    [2.3, 1.7, 19.1, 14.4],   # inside
    [-6.0, -3.0, 8.5, 6.0],   # crossing the top-left border
    [25.0, 12.0, 45.0, 30.0],  # crossing the bottom-right border
    [40.0, 30.0, 50.0, 40.0],  # wholly outside
    [5.0, 5.0, 5.4, 5.3],     # under one pixel
    [7.0, 7.0, 7.0, 9.0],     # zero width
    [0.0, 0.0, 32.0, 24.0],   # the whole image
])


@pytest.mark.parametrize("size", [1, 3, 28])
@pytest.mark.parametrize("threshold", [0.5, 0.3, None])
def test_paste_numba_equals_reference(size, threshold):
    rng = np.random.default_rng(size)
    probs = rng.random((len(EDGE_BOXES), size, size))
    probs[0] = 1.0  # ties at exactly 0.5 on the box edge
    args = (probs, EDGE_BOXES, (24, 32))
    fast = paste_masks(*args, threshold=threshold, backend="numba")
    ref = paste_masks(*args, threshold=threshold, backend="reference")
    assert fast.dtype == ref.dtype and np.array_equal(fast, ref)


def test_paste_numba_equals_reference_on_coco(coco_val):
    from maskrep.data import crop_instances

    _, insts = coco_val
    insts = insts[::7]
    crops = crop_instances(insts, 28).astype(np.float32)
    for inst, crop in zip(insts, crops):
        args = (crop[None], inst.box[None], (inst.height, inst.width))
        assert np.array_equal(paste_masks(*args, backend="numba"), paste_masks(*args, backend="reference"))


def test_empty_and_bad_backend():
    assert paste_masks(np.zeros((0, 5, 5)), np.zeros((0, 4)), (4, 4), backend="numba").shape == (0, 4, 4)
    with pytest.raises(ValueError, match="backend must be 'auto', 'reference', 'numba' or 'cuda', got 'cuda2'"):
        paste_masks(np.zeros((1, 5, 5)), np.zeros((1, 4)), (4, 4), backend="cuda2")


# ---- rasterisation -------------------------------------------------------------------------------

EDGE_POLYGONS = [
    [[2.0, 2.0, 20.0, 3.0, 15.0, 18.0]],                        # triangle
    [[0.0, 0.0, 10.0, 10.0, 10.0, 0.0, 0.0, 10.0]],             # self-intersecting bow tie
    [[5.0, 5.0, 30.0, 5.2, 30.0, 5.4, 5.0, 5.3]],               # very thin sliver
    [[1.0, 1.0, 9.0, 1.0, 9.0, 9.0, 1.0, 9.0], [3.0, 3.0, 6.0, 3.0, 6.0, 6.0]],  # two parts
    [[-5.0, -5.0, 50.0, -5.0, 50.0, 50.0, -5.0, 50.0]],         # larger than its box
    [[4.0, 4.0, 4.2, 4.0, 4.2, 4.1, 4.0, 4.1]],                 # under one pixel
    [[0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]],                 # box wholly elsewhere
]
EDGE_POLY_BOXES = np.array([
    [2.0, 2.0, 20.0, 18.0], [0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 30.0, 5.4], [1.0, 1.0, 9.0, 9.0],
    [0.0, 0.0, 20.0, 20.0], [4.0, 4.0, 4.2, 4.1], [30.0, 30.0, 40.0, 40.0],
])


@pytest.mark.parametrize("size", [1, 2, 7, 28])
@pytest.mark.parametrize("rule", ["coco", "center"])
def test_rasterize_numba_equals_reference_on_edge_cases(size, rule):
    fast = rasterize_in_boxes(EDGE_POLYGONS, EDGE_POLY_BOXES, size, rule=rule, backend="numba")
    ref = rasterize_in_boxes(EDGE_POLYGONS, EDGE_POLY_BOXES, size, rule=rule, backend="reference")
    assert TOLERANCES["rasterize_in_boxes"] == 0.0 and np.array_equal(fast, ref)
    if size == 28:
        assert fast[1].any() and not fast[6].any()  # the bow tie fills, the box elsewhere stays empty


def test_rasterize_numba_equals_reference_on_coco(coco_val):
    _, insts = coco_val
    insts = insts[::3]
    polys = [i.polygons for i in insts]
    boxes = np.stack([i.box for i in insts])
    for size in (14, 28):
        assert np.array_equal(rasterize_in_boxes(polys, boxes, size, backend="numba"),
                              rasterize_in_boxes(polys, boxes, size, backend="reference"))


def test_rasterize_bad_input_names_the_problem():
    with pytest.raises(ValueError, match="at least 3 vertices"):
        rasterize_in_boxes([[[0.0, 0.0, 1.0, 1.0]]], np.array([[0.0, 0.0, 2.0, 2.0]]), 4, backend="numba")
    with pytest.raises(ValueError, match="non-finite"):
        rasterize_in_boxes([[[0.0, 0.0, 1.0, np.nan, 2.0, 0.0]]], np.array([[0.0, 0.0, 2.0, 2.0]]), 4,
                           backend="numba")
    assert rasterize_in_boxes([], np.zeros((0, 4)), 4, backend="numba").shape == (0, 4, 4)


# ---- IoU -------------------------------------------------------------------------------------------

def test_iou_numba_equals_reference():
    rng = np.random.default_rng(0)
    a = rng.random((9, 13, 11)) > 0.6
    b = rng.random((9, 13, 11)) > 0.3
    a[0] = b[0] = False  # empty vs empty: IoU 1
    b[1] = False
    for fast, ref in zip(mask_counts(a, b, backend="numba"), mask_counts(a, b, backend="reference")):
        assert np.array_equal(fast, ref)
    assert np.array_equal(mask_iou(a, b, backend="numba"), mask_iou(a, b, backend="reference"))
    c = rng.random((5, 13, 11)) > 0.5
    assert np.array_equal(mask_iou_pairwise(a, c, backend="numba"), mask_iou_pairwise(a, c, backend="reference"))
    assert mask_iou(a, b, backend="numba")[0] == 1.0 and mask_iou(a, b, backend="numba")[1] == 0.0


def test_paste_values_numba_equal_reference_on_coco(coco_val):
    from maskrep.data import crop_instances

    _, insts = coco_val
    insts = insts[::40]
    crops = crop_instances(insts, 28).astype(np.float64)
    for inst, crop in zip(insts, crops):
        args = (crop[None], inst.box[None], (inst.height, inst.width))
        assert np.array_equal(paste_masks(*args, threshold=None, backend="numba"),
                              paste_masks(*args, threshold=None, backend="reference"))
