"""InstanceMasks: one interface over polygons, bitmaps and RLE; crop_batch over a batch."""

import numpy as np
import pytest
import torch

from maskrep.ops import crop_masks_in_boxes, mask_to_rle, polygons_to_masks, rasterize_in_boxes
from maskrep.structures import InstanceMasks, crop_batch

SQUARE = [[2.0, 3.0, 12.0, 3.0, 12.0, 11.0, 2.0, 11.0]]
TRIANGLE = [[1.0, 1.0, 14.0, 2.0, 6.0, 13.0]]


def _masks():
    blob = np.zeros((16, 18), bool)
    blob[4:12, 6:15] = True
    ring = blob.copy()
    ring[6:10, 8:12] = False
    return InstanceMasks([SQUARE, blob, TRIANGLE, mask_to_rle(ring)], (16, 18)), blob, ring


def test_crop_in_boxes_is_the_ops_per_kind():
    m, blob, ring = _masks()
    assert m.kinds == ("polygons", "bitmap", "polygons", "rle")
    boxes = np.array([[2, 3, 12, 11], [6, 4, 15, 12], [1, 1, 14, 13], [5.5, 3.2, 15.1, 12.4]], np.float32)
    crops = m.crop_in_boxes(boxes, 7)
    assert crops.shape == (4, 7, 7) and crops.dtype == bool
    assert np.array_equal(crops[[0, 2]], rasterize_in_boxes([SQUARE, TRIANGLE], boxes[[0, 2]], 7))
    assert np.array_equal(crops[1], crop_masks_in_boxes(blob[None], boxes[1:2].astype(np.float64), size=7)[0])
    assert np.array_equal(crops[3], crop_masks_in_boxes(ring[None], boxes[3:4].astype(np.float64), size=7)[0])
    t = m.crop_in_boxes(torch.from_numpy(boxes), 7)  # tensors in, tensors out
    assert isinstance(t, torch.Tensor) and torch.equal(t, torch.from_numpy(crops))
    with pytest.raises(ValueError, match=r"boxes must be \(4, 4\), one per instance, got \(3, 4\)"):
        m.crop_in_boxes(boxes[:3], 7)


def test_to_bitmap_pads_and_samples_at_the_stride():
    m, blob, ring = _masks()
    full = m.to_bitmap()
    assert full.shape == (4, 16, 18)
    assert np.array_equal(full[0], polygons_to_masks([SQUARE], 16, 18)[0])
    assert np.array_equal(full[1], blob) and np.array_equal(full[3], ring)
    padded = m.to_bitmap(stride=4, padded_size=(32, 32))
    assert padded.shape == (4, 8, 8)
    expected = np.zeros((4, 32, 32), bool)
    expected[:, :16, :18] = full
    assert np.array_equal(padded, expected[:, 2::4, 2::4])  # the pixel at stride // 2 of each cell
    with pytest.raises(ValueError, match="smaller than the image"):
        m.to_bitmap(padded_size=(8, 8))


def test_subsets_and_transform():
    m, blob, _ = _masks()
    assert m[[1, 3]].kinds == ("bitmap", "rle") and len(m[1:]) == 3 and m[np.array([1, 0, 0, 1], bool)].kinds[1] == "rle"
    small = m.transform((0.5, 0.5), (8, 9), flip=True)
    assert small.image_size == (8, 9)
    # polygons are mapped exactly: x -> w - 0.5 x, y -> 0.5 y
    poly = small._items[0][0]
    np.testing.assert_allclose(poly, np.stack([9 - np.array(SQUARE[0][0::2]) / 2, np.array(SQUARE[0][1::2]) / 2], 1))
    # bitmaps by nearest neighbour, then mirrored
    rows, cols = (np.arange(8) * 2 + 1), (np.arange(9) * 2 + 1)
    assert np.array_equal(small.to_bitmap()[1], blob[rows][:, cols][:, ::-1])


def test_crop_batch_maps_global_indices_to_images():
    m, _, _ = _masks()
    other = InstanceMasks([TRIANGLE], (20, 20))
    boxes = torch.tensor([[1.0, 1.0, 14.0, 13.0], [2.0, 3.0, 12.0, 11.0], [1.0, 1.0, 14.0, 13.0]])
    gt_inds = torch.tensor([4, 0, 2])  # image 1's triangle, image 0's square, image 0's triangle
    crops = crop_batch([m, other], gt_inds, boxes, 9)
    assert torch.equal(crops[0], crops[2]) and crops[0].any()
    assert torch.equal(crops[1], torch.from_numpy(rasterize_in_boxes([SQUARE], boxes[1:2].numpy(), 9)[0]))
    with pytest.raises(IndexError, match=r"gt_inds must lie in \[0, 5\)"):
        crop_batch([m, other], torch.tensor([5]), boxes[:1], 9)
