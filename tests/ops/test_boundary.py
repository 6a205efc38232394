"""RefineMask's boundary band on hand-made maps, the boundary F-score, the multi-level RoI pooler."""

import numpy as np
import pytest
import torch
from naive import roi_align_one

from maskrep.ops import boundary_band, boundary_fscore, multilevel_roi_align, roi_levels


def _band(rows, width):
    m = torch.tensor([[c == "#" for c in r] for r in rows])[None]
    return ["".join("x" if v else "." for v in row) for row in boundary_band(m, width)[0].tolist()]


def test_band_width_one_needs_one_opposite_pixel():
    # 3x3 window, more than a tenth (0.9 of a pixel) opposite: one neighbour of the other label is enough
    assert _band(["......",
                  ".####.",
                  ".####.",
                  ".####.",
                  "......"], 1) == ["xxxxxx",
                                    "xxxxxx",
                                    "xx..xx",
                                    "xxxxxx",
                                    "xxxxxx"]


def test_band_width_two_needs_three_opposite_pixels():
    # 5x5 window: more than 2.5 pixels of the other label. A lone foreground pixel in background:
    # itself (24 opposite) yes; its background neighbours see only 1 foreground pixel: no.
    assert _band([".....",
                  ".....",
                  "..#..",
                  ".....",
                  "....."], 2) == [".....",
                                   ".....",
                                   "..x..",
                                   ".....",
                                   "....."]
    # a background pixel two columns from a foreground column of 5 sees 5 foreground pixels: yes;
    # three columns away it sees none
    assert _band(["#......",
                  "#......",
                  "#......",
                  "#......",
                  "#......"], 2) == ["xxx....",
                                     "xxx....",
                                     "xxx....",
                                     "xxx....",
                                     "xxx...."]


def test_band_counts_the_outside_as_background():
    # a map full of object: the foreground within d of the border is boundary (zero padding), the
    # inside is not; an empty map has no band at all (the outside is background to background pixels)
    assert _band(["#####"] * 5, 1) == ["xxxxx", "x...x", "x...x", "x...x", "xxxxx"]
    assert _band(["....."] * 4, 2) == ["....."] * 4


def test_boundary_fscore_cases():
    a = np.zeros((40, 40), bool)
    a[10:30, 10:30] = True
    assert boundary_fscore(a, a) == 1.0
    assert boundary_fscore(np.zeros_like(a), np.zeros_like(a)) == 1.0 and boundary_fscore(a, np.zeros_like(a)) == 0.0
    shifted = np.roll(a, 3, axis=1)
    assert boundary_fscore(a, shifted, tolerance=3) == 1.0 and boundary_fscore(a, shifted, tolerance=2) < 0.7
    with pytest.raises(ValueError, match="must be \\(H, W\\) of one shape"):
        boundary_fscore(a, a[:5])


def test_levels_follow_mmdetections_scale_rule():
    rois = torch.tensor([[0, 0, 0, 55, 55], [0, 0, 0, 112, 112], [0, 0, 0, 300, 300], [0, 0, 0, 2000, 2000]]).float()
    # sqrt(area)/56: 0.98 -> 0, 2 -> 1, 5.4 -> 2, 35.7 -> 3 (clamped)
    assert roi_levels(rois, 4).tolist() == [0, 1, 2, 3]


def test_multilevel_pooler_equals_the_per_roi_loop():
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(2, 3, 64 // s, 64 // s, generator=g, dtype=torch.float64) for s in (4, 8, 16, 32)]
    rois = torch.tensor([[0, 3.0, 5.0, 30.0, 40.0], [1, 0.0, 0.0, 64.0, 64.0], [0, 10.5, 2.0, 22.0, 60.0],
                         [1, 40.0, 40.0, 46.0, 43.0], [0, -10.0, -5.0, 200.0, 180.0]], dtype=torch.float64)
    out = multilevel_roi_align(feats, rois, 7, strides=(4, 8, 16, 32))
    for k, roi in enumerate(rois):
        lvl = int(roi_levels(roi[None], 4)[0])
        stride = (4, 8, 16, 32)[lvl]
        for c in range(3):
            ref = roi_align_one(feats[lvl][int(roi[0]), c].numpy(), (roi[1:] / stride).numpy(), 7, 0, True)
            np.testing.assert_allclose(out[k, c].numpy(), ref, atol=1e-12)


def test_matched_boundary_fscores():
    from maskrep.engine.evaluation import matched_boundary_fscores

    gt = np.zeros((2, 30, 30), bool)
    gt[0, 2:12, 2:12] = True
    gt[1, 15:28, 15:28] = True
    pred = np.zeros((3, 30, 30), bool)
    pred[0, 15:28, 15:28] = True  # exactly instance 1
    pred[1, 2:12, 2:10] = True  # most of instance 0
    pred[2, 0:2, 28:30] = True  # overlaps nothing
    f = matched_boundary_fscores(pred, gt, tolerance=0)
    assert f[1] == 1.0 and 0 < f[0] < 1 and f[0] == boundary_fscore(pred[1], gt[0], tolerance=0)
    assert matched_boundary_fscores(pred[2:], gt).tolist() == [0.0, 0.0]
