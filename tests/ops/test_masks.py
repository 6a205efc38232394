import numpy as np
import pytest
import torch
import torch.nn.functional as F
from naive import paste_one, rasterize, roi_align_one

from maskrep.ops import (
    crop_masks_in_boxes,
    mask_iou,
    mask_iou_pairwise,
    masks_to_boxes,
    paste_masks,
    polygons_to_mask,
    rasterize_in_boxes,
)


def test_rasterize_in_boxes_hand_case():
    square = [[2.0, 2.0, 6.0, 2.0, 6.0, 6.0, 2.0, 6.0]]
    crops = rasterize_in_boxes([square], np.array([[0.0, 0.0, 8.0, 8.0]]), 4)
    assert crops.shape == (1, 4, 4) and crops.dtype == bool
    assert crops[0].astype(int).tolist() == [[0, 0, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0], [0, 0, 0, 0]]


@pytest.mark.parametrize("seed", range(3))
def test_rasterize_in_boxes_equals_rasterising_the_mapped_polygon(seed):
    rng = np.random.default_rng(seed)
    polys = [[rng.uniform(0, 40, 2 * rng.integers(3, 8))] for _ in range(4)]
    boxes = np.array([[3.0, 5.0, 30.0, 22.0], [0.0, 0.0, 40.0, 40.0], [10.0, 10.0, 10.05, 30.0], [-5.0, -5.0, 50.0, 9.0]])
    crops = rasterize_in_boxes(polys, boxes, 9, rule="center")
    for polys_i, box, crop in zip(polys, boxes, crops):
        w, h = max(box[2] - box[0], 0.1), max(box[3] - box[1], 0.1)
        mapped = [((np.reshape(p, (-1, 2)) - box[:2]) * [9 / w, 9 / h]).ravel() for p in polys_i]
        assert (crop == rasterize(mapped, 9, 9)).all()


def test_rasterize_size_one_and_empty():
    square = [[0.0, 0.0, 4.0, 0.0, 4.0, 4.0, 0.0, 4.0]]
    assert rasterize_in_boxes([square], np.array([[0.0, 0.0, 4.0, 4.0]]), 1).tolist() == [[[True]]]
    assert rasterize_in_boxes([], np.zeros((0, 4)), 7).shape == (0, 7, 7)
    with pytest.raises(ValueError, match="expected 2 boxes, got 1"):
        rasterize_in_boxes([square, square], np.zeros((1, 4)), 7)


@pytest.mark.parametrize("box", [(1.3, 2.2, 9.7, 7.1), (-3.0, -2.0, 5.0, 4.0), (6.0, 5.0, 14.5, 12.0), (2.0, 2.0, 2.4, 2.3)])
def test_crop_masks_matches_roi_align_loop(box):
    rng = np.random.default_rng(1)
    mask = rng.random((10, 12)) < 0.5
    box = np.array(box)
    for size in (1, 4, 7):
        expected = roi_align_one(mask.astype(float), box, size, sampling_ratio=0, aligned=True) >= 0.5
        got = crop_masks_in_boxes(mask[None], box[None], size=size)[0]
        assert (got == expected).all()


def test_crop_bitmap_agrees_with_polygon_raster():
    """Bitmap cropping and polygon rasterising share the cell-centre convention."""
    poly = [[4.0, 3.0, 40.0, 6.0, 30.0, 38.0, 8.0, 30.0]]
    full = polygons_to_mask(poly, 48, 48, rule="center")
    box = np.array([[4.0, 3.0, 40.0, 38.0]])
    from_bitmap = crop_masks_in_boxes(full[None], box, size=12)
    from_polygon = rasterize_in_boxes([poly], box, 12, rule="center")
    assert mask_iou(from_bitmap, from_polygon)[0] > 0.9


@pytest.mark.parametrize("box", [(2.3, 1.7, 9.1, 8.4), (-2.0, -1.0, 5.5, 6.0), (3.0, 3.0, 3.6, 3.4), (0.0, 0.0, 12.0, 10.0)])
def test_paste_matches_pixel_loop(box):
    rng = np.random.default_rng(0)
    probs = rng.random((5, 5))
    values = paste_masks(probs[None], np.array([box]), (10, 12), threshold=None)[0]
    np.testing.assert_allclose(values, paste_one(probs, box, 10, 12), rtol=0, atol=1e-12)


def test_paste_keeps_outside_of_box_empty():
    rng = np.random.default_rng(0)
    probs = np.ones((6, 8, 8))  # the worst case: everything on
    xy = rng.uniform(0, 30, (6, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.3, 15, (6, 2))], 1)
    pasted = paste_masks(probs, boxes, (40, 45))
    rows, cols = np.mgrid[0:40, 0:45] + 0.5
    for m, (x0, y0, x1, y1) in zip(pasted, boxes):
        inside = (cols >= x0) & (cols <= x1) & (rows >= y0) & (rows <= y1)
        # half a crop cell in from each edge every bilinear tap lands on the crop: all on
        hx, hy = (x1 - x0) / 16, (y1 - y0) / 16
        core = (cols >= x0 + hx) & (cols <= x1 - hx) & (rows >= y0 + hy) & (rows <= y1 - hy)
        assert not (m & ~inside).any()
        assert m[core].all()


def test_paste_agrees_with_grid_sample():
    rng = np.random.default_rng(3)
    probs = rng.random((4, 7, 7)).astype(np.float32)
    boxes = np.array([[3.2, 4.1, 20.7, 15.3], [-4.0, 2.0, 10.0, 30.0], [0.0, 0.0, 32.0, 24.0], [18.0, 10.0, 40.0, 31.0]])
    ours = paste_masks(probs, boxes, (24, 32), threshold=None)
    h, w = 24, 32
    xs = (torch.arange(w, dtype=torch.float64) + 0.5)
    ys = (torch.arange(h, dtype=torch.float64) + 0.5)
    for k, (x0, y0, x1, y1) in enumerate(boxes):
        gx = (xs - x0) / (x1 - x0) * 2 - 1
        gy = (ys - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None]  # (1, H, W, 2) as (x, y)
        ref = F.grid_sample(torch.from_numpy(probs[k]).double()[None, None], grid, align_corners=False)[0, 0]
        np.testing.assert_allclose(ours[k], ref.numpy(), atol=1e-9)


def test_paste_degenerate_box_is_empty_and_kinds_preserved():
    probs = torch.ones(2, 4, 4)
    boxes = torch.tensor([[5.0, 5.0, 5.0, 9.0], [1.0, 1.0, 3.0, 3.0]])
    out = paste_masks(probs, boxes, (8, 8))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.bool and out.shape == (2, 8, 8)
    assert out[0].sum() == 0 and out[1].sum() == 4


def test_mask_iou_and_boxes():
    a = np.zeros((3, 4, 4), bool)
    b = np.zeros((3, 4, 4), bool)
    a[0, :2] = True
    b[0, 1:3] = True
    a[1, 0, 0] = True
    np.testing.assert_allclose(mask_iou(a, b), [4 / 12, 0.0, 1.0])
    pair = mask_iou_pairwise(a, b)
    assert pair.shape == (3, 3)
    np.testing.assert_allclose(np.diag(pair), [4 / 12, 0.0, 1.0])
    single = np.zeros((1, 5, 7), bool)
    single[0, 2, 5] = True
    assert masks_to_boxes(single).tolist() == [[5, 2, 6, 3]]
    assert masks_to_boxes(np.zeros((1, 3, 3), bool)).tolist() == [[0, 0, 0, 0]]
    with pytest.raises(TypeError, match="masks1 must be bool, got uint8"):
        mask_iou(a.astype(np.uint8), b)
