"""numba.cuda kernels against the references. Without a GPU they run in the CUDA simulator:
``make test-cudasim`` (NUMBA_ENABLE_CUDASIM=1); otherwise they are skipped."""

import os

import numpy as np
import pytest

from maskrep.ops import paste_masks, rasterize_in_boxes
from tests.ops.test_kernels import EDGE_BOXES, EDGE_POLY_BOXES, EDGE_POLYGONS

pytestmark = pytest.mark.cuda


def _cuda_ready() -> bool:
    try:
        from numba import cuda
    except ImportError:
        return False
    return os.environ.get("NUMBA_ENABLE_CUDASIM") == "1" or cuda.is_available()


if not _cuda_ready():
    pytest.skip("no GPU and NUMBA_ENABLE_CUDASIM is not set", allow_module_level=True)


@pytest.mark.parametrize("size", [1, 3, 8])
def test_paste_cuda_equals_reference(size):
    rng = np.random.default_rng(size)
    probs = rng.random((len(EDGE_BOXES), size, size))
    probs[0] = 1.0
    args = (probs, EDGE_BOXES, (24, 32))
    fast = paste_masks(*args, backend="cuda")
    assert isinstance(fast, np.ndarray) and fast.dtype == bool
    assert np.array_equal(fast, paste_masks(*args, backend="reference"))


@pytest.mark.parametrize("size", [1, 5, 9])
@pytest.mark.parametrize("rule", ["coco", "center"])
def test_rasterize_cuda_equals_reference(size, rule):
    fast = rasterize_in_boxes(EDGE_POLYGONS, EDGE_POLY_BOXES, size, rule=rule, backend="cuda")
    ref = rasterize_in_boxes(EDGE_POLYGONS, EDGE_POLY_BOXES, size, rule=rule, backend="reference")
    assert np.array_equal(fast, ref)


def test_full_image_cuda_equals_pycocotools():
    import pycocotools.mask as mask_utils

    from maskrep.ops import polygons_to_masks

    rng = np.random.default_rng(3)
    polys = [[rng.uniform(-4, 14, 2 * int(rng.integers(3, 7)))] for _ in range(5)] + EDGE_POLYGONS[:2]
    fast = polygons_to_masks(polys, 9, 11, backend="cuda")
    for p, m in zip(polys, fast):
        flat = [np.asarray(q, float).ravel().tolist() for q in p]
        assert np.array_equal(m, mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(flat, 9, 11))).astype(bool))


def test_cuda_on_coco_sample(coco_val):
    _, insts = coco_val
    insts = insts[::200]
    polys = [i.polygons for i in insts]
    boxes = np.stack([i.box for i in insts])
    assert np.array_equal(rasterize_in_boxes(polys, boxes, 6, backend="cuda"),
                          rasterize_in_boxes(polys, boxes, 6, backend="reference"))


def test_torch_cuda_tensors_stay_on_the_device():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a real GPU")
    rng = np.random.default_rng(0)
    probs = torch.from_numpy(rng.random((len(EDGE_BOXES), 28, 28))).cuda()
    boxes = torch.from_numpy(EDGE_BOXES).cuda()
    fast = paste_masks(probs, boxes, (24, 32))
    assert fast.is_cuda
    assert np.array_equal(fast.cpu().numpy(), paste_masks(probs.cpu().numpy(), EDGE_BOXES, (24, 32),
                                                          backend="reference"))
    ras = rasterize_in_boxes(EDGE_POLYGONS, torch.from_numpy(EDGE_POLY_BOXES).cuda(), 28)
    assert ras.is_cuda and np.array_equal(ras.cpu().numpy(), rasterize_in_boxes(EDGE_POLYGONS, EDGE_POLY_BOXES, 28,
                                                                                backend="reference"))
