"""RoIAlign by grid_sample and vectorised NMS against plain-loop references."""

import numpy as np
import pytest
import torch

from maskrep.ops.nms import batched_nms, nms
from maskrep.ops.roi import roi_align, rois_from_boxes
from tests.naive import greedy_nms, roi_align_one

BOXES = [
    [1.0, 1.0, 3.0, 3.0],
    [2.3, 1.7, 9.1, 6.4],
    [-3.0, -2.0, 4.5, 3.0],   # crossing the top-left border
    [7.2, 5.5, 14.0, 11.0],   # crossing the bottom-right border
    [12.0, 9.0, 20.0, 15.0],  # wholly outside
    [4.0, 4.0, 4.3, 4.2],     # under one pixel
    [5.0, 5.0, 5.0, 6.0],     # zero width
    [0.0, 0.0, 10.0, 8.0],    # the whole map
]


def test_detectron2_reference_values():
    img = torch.arange(25, dtype=torch.float64).reshape(1, 1, 5, 5)
    box = torch.tensor([[1.0, 1.0, 3.0, 3.0]], dtype=torch.float64)
    out_false = roi_align(img, box, 4, sampling_ratio=0, aligned=False)
    out_true = roi_align(img, box, 4, sampling_ratio=0, aligned=True)
    assert out_false[0, 0, 0].tolist() == [7.5, 8.0, 8.5, 9.0]
    assert out_true[0, 0, 0].tolist() == [4.5, 5.0, 5.5, 6.0]


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("ratio", [0, 1, 2, 3])
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_roi_align_matches_loop_reference(aligned, ratio, scale):
    rng = np.random.default_rng(ratio)
    feat = torch.from_numpy(rng.random((2, 3, 8, 10)))
    boxes = torch.tensor(BOXES, dtype=torch.float64) / scale
    rois = rois_from_boxes([boxes[:5], boxes[5:]])
    out = roi_align(feat, rois, (5, 4) if ratio == 2 else 4, spatial_scale=scale, sampling_ratio=ratio, aligned=aligned)
    ph, pw = out.shape[-2:]
    for k, roi in enumerate(rois.tolist()):
        b = int(roi[0])
        for ch in range(3):
            ref = roi_align_one(feat[b, ch].numpy(), np.array(roi[1:]) * scale, (ph, pw), ratio, aligned)
            np.testing.assert_allclose(out[k, ch].numpy(), ref, rtol=0, atol=1e-12)


def test_roi_align_gradients_and_dtypes():
    feat = torch.rand(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    boxes = torch.tensor([[0.5, 1.0, 4.0, 5.5], [-1.0, 2.0, 3.0, 7.0]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda f: roi_align(f, boxes, 3, sampling_ratio=2), (feat,))
    assert roi_align(feat.detach().half(), boxes.half(), 3, sampling_ratio=1).dtype == torch.float16
    assert roi_align(feat, boxes[:0], 3).shape == (0, 2, 3, 3)
    with pytest.raises(ValueError, match="rois must be"):
        roi_align(feat, boxes[:, :3], 3)


def _random_boxes(rng, n, clusters):
    centres = rng.random((clusters, 2)) * 200
    c = centres[rng.integers(0, clusters, n)] + rng.normal(0, 8, (n, 2))
    wh = rng.uniform(5, 60, (n, 2))
    return np.concatenate([c - wh / 2, c + wh / 2], axis=1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("classes", [None, 3])
def test_nms_equals_greedy(seed, classes):
    rng = np.random.default_rng(seed)
    n = 400
    boxes = _random_boxes(rng, n, clusters=12)
    scores = np.round(rng.random(n), 2)  # many ties: order must follow the stable sort
    labels = rng.integers(0, classes, n) if classes else None
    ref = greedy_nms(boxes.tolist(), scores.tolist(), labels.tolist() if classes else None, 0.6)
    got = batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores),
                      torch.from_numpy(labels) if classes else None, 0.6)
    assert got.tolist() == ref


def test_nms_threshold_is_strict():
    # IoU of these two is exactly 0.5: kept at threshold 0.5, suppressed below it
    boxes = torch.tensor([[0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    scores = torch.tensor([0.9, 0.8], dtype=torch.float64)
    assert nms(boxes, scores, 0.5).tolist() == [0, 1]
    assert nms(boxes, scores, 0.49).tolist() == [0]
    assert nms(boxes[:0], scores[:0], 0.5).numel() == 0
    # degenerate boxes never suppress
    deg = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    assert nms(deg, torch.tensor([0.9, 0.8]), 0.5).tolist() == [0, 1]
