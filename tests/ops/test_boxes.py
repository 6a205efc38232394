import numpy as np
import pytest
import torch

from maskrep.ops import box_iou, box_xywh_to_xyxy, box_xyxy_to_xywh, generalized_box_iou


def test_hand_cases():
    a = np.array([[0.0, 0.0, 2.0, 2.0]])
    b = np.array([[1.0, 1.0, 3.0, 3.0], [4.0, 0.0, 6.0, 2.0], [0.0, 0.0, 2.0, 2.0]])
    np.testing.assert_allclose(box_iou(a, b), [[1 / 7, 0.0, 1.0]])
    # disjoint boxes 2 apart: hull 6 x 2 = 12, union 8 -> GIoU = 0 - 4/12
    np.testing.assert_allclose(generalized_box_iou(a, b), [[1 / 7 - 2 / 9, -1 / 3, 1.0]])


@pytest.mark.parametrize("fn", [box_iou, generalized_box_iou])
def test_numpy_torch_twins(fn):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (6, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0, 20, (6, 2))], 1)
    out_np = fn(boxes, boxes[::-1])
    out_t = fn(torch.from_numpy(boxes), torch.from_numpy(boxes[::-1].copy()))
    assert isinstance(out_t, torch.Tensor)
    np.testing.assert_allclose(out_t.numpy(), out_np)


def test_conversions_round_trip():
    xywh = np.array([[1.0, 2.0, 3.0, 4.0]])
    assert box_xywh_to_xyxy(xywh).tolist() == [[1, 2, 4, 6]]
    np.testing.assert_array_equal(box_xyxy_to_xywh(box_xywh_to_xyxy(xywh)), xywh)
