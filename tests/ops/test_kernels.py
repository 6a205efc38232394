"""Fast paths against their references: identical output where the arithmetic is the same."""

import numpy as np
import pytest

from maskrep.ops import paste_masks

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
    with pytest.raises(ValueError, match="backend must be 'auto', 'reference' or 'numba', got 'cuda2'"):
        paste_masks(np.zeros((1, 5, 5)), np.zeros((1, 4)), (4, 4), backend="cuda2")
