import numpy as np
import pycocotools.mask as mask_utils
import pytest

from maskrep.ops import mask_to_rle, rle_area, rle_to_mask
from maskrep.ops.rle import decode_counts, encode_counts


def test_hand_golden_8x8():
    m = np.zeros((8, 8), dtype=bool)
    m[2:5, 3:6] = True  # a 3 x 3 block: columns 3..5, rows 2..4
    rle = mask_to_rle(m)
    # column-major runs: 3 full columns of zeros + 2 rows, then 3 on / 5 off twice, 3 on, rest off
    assert decode_counts(rle["counts"]).tolist() == [26, 3, 5, 3, 5, 3, 19]
    assert rle["size"] == [8, 8]
    assert rle_area(rle) == 9
    assert (rle_to_mask(rle) == m).all()


@pytest.mark.parametrize("seed", range(5))
def test_byte_compatible_with_pycocotools(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        h, w = rng.integers(1, 50, 2)
        m = rng.random((h, w)) < rng.random()
        ours = mask_to_rle(m)
        theirs = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
        assert ours["counts"] == theirs["counts"].decode("ascii")
        assert (rle_to_mask(theirs) == m).all()
        assert rle_area(ours) == int(mask_utils.area(theirs))


def test_large_runs_round_trip():
    runs = [0, 100000, 3, 1 << 20, 7]
    assert decode_counts(encode_counts(runs)).tolist() == runs


def test_batch_and_uncompressed():
    m = np.zeros((3, 4, 5), dtype=bool)
    m[1, 1:3, 2] = True
    rles = mask_to_rle(m)
    assert len(rles) == 3 and (rle_to_mask(rles) == m).all()
    uncompressed = {"size": [4, 5], "counts": [6, 2, 12]}
    assert rle_to_mask(uncompressed).sum() == 2


def test_bad_input_errors():
    with pytest.raises(TypeError, match="masks must be bool, got uint8"):
        mask_to_rle(np.zeros((2, 2), np.uint8))
    with pytest.raises(ValueError, match="runs add up to 5, expected H \\* W = 6"):
        rle_to_mask({"size": [2, 3], "counts": [2, 3]})


# ---- straight-to-RLE operations: parity with the dense path and with pycocotools --------------------

def _encode_dense(masks):
    return [mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode("ascii") for m in masks]


def _edge_boxes(rng, n, h, w):
    """Boxes inside, across every border, outside, tiny (under a pixel) and empty."""
    x0 = rng.uniform(-0.3 * w, 1.1 * w, n)
    y0 = rng.uniform(-0.3 * h, 1.1 * h, n)
    bw = rng.choice([0.0, 0.4, 1.0, 3.7, 0.3 * w, 1.6 * w], n) * rng.uniform(0.5, 1.5, n)
    bh = rng.choice([0.0, 0.4, 1.0, 3.7, 0.3 * h, 1.6 * h], n) * rng.uniform(0.5, 1.5, n)
    return np.stack([x0, y0, x0 + bw, y0 + bh], 1)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("threshold", [0.5, 0.3])
def test_paste_to_rle_equals_encoded_dense_paste(seed, threshold):
    from maskrep.ops import paste_masks, paste_masks_to_rle

    rng = np.random.default_rng(seed)
    h, w, s, n = int(rng.integers(5, 40)), int(rng.integers(5, 40)), int(rng.choice([2, 7, 14])), 40
    probs = rng.random((n, s, s))
    probs[::5] = 1.0  # whole boxes on
    probs[1::5] = 0.0  # and off
    boxes = _edge_boxes(rng, n, h, w)
    dense = paste_masks(probs, boxes, (h, w), threshold=threshold, backend="reference")
    expected = _encode_dense(dense)
    for backend in ("numba", "reference"):
        got = paste_masks_to_rle(probs, boxes, (h, w), threshold=threshold, backend=backend)
        assert [r["counts"] for r in got] == expected, backend
        assert all(r["size"] == [h, w] for r in got)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_paste_to_rle_smooth_maps_at_the_threshold(dtype):
    """Smooth maps in large boxes (many pixels a crop cell), where the kernel computes only the pixels
    of cells that straddle the threshold: corners exactly at it, one rounding either side of it, a
    map that is constant at it, and maps holding NaN or inf, all equal the dense paste."""
    from maskrep.ops import paste_masks, paste_masks_to_rle

    rng = np.random.default_rng(7)
    s, n, h, w = 14, 12, 90, 120
    yy, xx = np.mgrid[0:s, 0:s] / (s - 1)
    probs = np.empty((n, s, s))
    for i in range(n):
        cy, cx, r = rng.uniform(0.2, 0.8, 3)
        probs[i] = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (0.1 + r * 0.2))
    probs[0, 3:9, 3:9] = 0.5  # corners exactly at the threshold
    up, down = np.nextafter(dtype(0.5), dtype(1.0)), np.nextafter(dtype(0.5), dtype(0.0))
    probs[1, 2:12, 2:12] = np.where(np.indices((10, 10)).sum(0) % 2 == 0, up, down)  # one rounding off
    probs[7, 2:12, 2:12] = np.where(np.indices((10, 10)).sum(0) % 2 == 0, up, 0.5)
    probs[2] = 0.5
    probs[3, 5, 5] = np.nan
    probs[4, 2, 7] = np.inf
    probs[8, 4:6, 4:6] = np.inf  # two crop rows of inf: 0 * inf is NaN where a weight is 0
    probs[5] *= 3.0  # values above 1
    probs[6] -= 0.25  # and below 0
    probs = probs.astype(dtype)
    boxes = np.array([[5.3, 2.2, 117.9, 88.4], [-20.0, -10.5, 60.7, 70.1], [40.2, 30.9, 200.0, 150.0]])
    boxes = np.concatenate([boxes, rng.uniform(0, 40, (n - 3, 2)) @ np.array([[1, 0, 1, 0], [0, 1, 0, 1.0]])
                            + rng.uniform(3, 80, (n - 3, 1)) * np.array([0, 0, 1.0, 1.3])])
    boxes[8] = [0.5, 0.5, 0.5 + 2 * s, 0.5 + 2 * s]  # two pixels a cell: every other pixel has a weight of 0
    for threshold in (0.5, 0.3):
        with np.errstate(invalid="ignore"):  # 0 * inf, meant (numpy scalars when the JIT is off)
            dense = paste_masks(probs, boxes, (h, w), threshold=threshold, backend="reference")
            got = paste_masks_to_rle(probs, boxes, (h, w), threshold=threshold, backend="numba")
        assert [r["counts"] for r in got] == _encode_dense(dense)


def test_paste_to_rle_room_for_runs_falls_back(monkeypatch):
    """A map whose runs overflow the room kept per column is redone with room for every pixel."""
    from maskrep.ops import paste_masks, paste_masks_to_rle
    from maskrep.ops import rle as rle_mod

    rng = np.random.default_rng(3)
    probs = (np.indices((14, 14)).sum(0) % 2).astype(np.float64)[None].repeat(3, 0)  # a checkerboard
    probs[2] = rng.random((14, 14))
    boxes = np.array([[2.0, 1.0, 60.0, 45.0], [0.0, 0.0, 14.0, 14.0], [-5.0, 3.0, 30.0, 70.0]])
    expected = _encode_dense(paste_masks(probs, boxes, (50, 64), backend="reference"))
    monkeypatch.setattr(rle_mod, "_runs_per_column", lambda s: 0)
    assert [r["counts"] for r in paste_masks_to_rle(probs, boxes, (50, 64), backend="numba")] == expected


def test_paste_to_rle_inputs():
    import torch

    from maskrep.ops import paste_masks_to_rle

    probs = torch.full((2, 4, 4), 0.8)
    boxes = torch.tensor([[1.0, 1.0, 5.0, 6.0], [0.0, 0.0, 2.0, 2.0]])
    got = paste_masks_to_rle(probs, boxes, (8, 9))
    assert [rle_area(r) for r in got] == [20, 4]
    assert paste_masks_to_rle(np.zeros((0, 4, 4)), np.zeros((0, 4)), (8, 9)) == []
    with pytest.raises(ValueError, match="threshold must be > 0"):
        paste_masks_to_rle(probs, boxes, (8, 9), threshold=0)
    with pytest.raises(ValueError, match=r"mask_probs must be \(N, S, S\), got shape \(2, 4, 3\)"):
        paste_masks_to_rle(np.zeros((2, 4, 3)), boxes, (8, 9))


def _random_rles(rng, n, h, w, *, uncompressed=False):
    masks = rng.random((n, h, w)) < rng.random((n, 1, 1)) ** 2
    masks[0] = False  # an empty mask
    masks[1] = True  # a full one
    rles = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]
    if uncompressed:  # COCO's crowd form: a list of ints
        rles = [{"size": [h, w], "counts": decode_counts(r["counts"]).tolist()} for r in rles]
    return masks, rles


@pytest.mark.parametrize("seed", range(3))
def test_rle_iou_equals_pycocotools(seed):
    from maskrep.ops import rle_intersection, rle_iou

    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(1, 30)), int(rng.integers(1, 30))
    masks_a, a = _random_rles(rng, 9, h, w)
    masks_b, b = _random_rles(rng, 7, h, w, uncompressed=seed == 1)
    crowd = rng.random(7) < 0.4
    b_coco = [mask_utils.frPyObjects(r, h, w) if isinstance(r["counts"], list) else r for r in b]
    expected = mask_utils.iou(a, b_coco, crowd.astype(np.uint8).tolist())
    for backend in ("numba", "reference"):
        got = rle_iou(a, b, crowd, backend=backend)
        assert np.array_equal(got, expected), backend
    inter = (masks_a.reshape(9, 1, -1) & masks_b.reshape(1, 7, -1)).sum(-1)
    assert np.array_equal(rle_intersection(a, b), inter)
    assert rle_iou(a, [], backend="numba").shape == (9, 0)


def test_rle_iou_small_objects_apart():
    """Small objects scattered over a tall image, where most pairs are skipped by their boxes or
    spans: rectangles, single pixels, runs that wrap from one column's foot to the next column's top,
    objects in one column at different rows, bytes and str counts mixed; every pair as pycocotools
    and the dense count give it."""
    from maskrep.ops import rle_counts, rle_intersection, rle_iou

    rng = np.random.default_rng(11)
    h, w, n = 67, 41, 40
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(n):
        y, x = int(rng.integers(0, h)), int(rng.integers(0, w))
        kind = i % 4
        if kind == 0:
            masks[i, y : y + int(rng.integers(1, 9)), x : x + int(rng.integers(1, 9))] = True
        elif kind == 1:
            masks[i, y, x] = True
        elif kind == 2:  # the foot of one column and the top of the next: one run across the wrap
            masks[i, h - int(rng.integers(1, 5)) :, x] = True
            masks[i, : int(rng.integers(1, 5)), min(x + 1, w - 1)] = True
        else:  # two blobs in one column band, rows apart
            masks[i, 2:5, x : x + 3] = True
            masks[i, h - 6 : h - 3, x : x + 3] = True
    coco = [mask_utils.encode(np.asfortranarray(m.astype(np.uint8))) for m in masks]
    ours = [r if i % 2 else {"size": r["size"], "counts": r["counts"].decode()} for i, r in enumerate(coco)]
    crowd = rng.random(n) < 0.2
    expected = np.asarray(mask_utils.iou(coco, coco, crowd.astype(np.uint8).tolist()))
    assert np.array_equal(rle_iou(ours, ours, crowd, backend="numba"), expected)
    inter = (masks.reshape(n, 1, -1) & masks.reshape(1, n, -1)).sum(-1)
    assert np.array_equal(rle_intersection(ours, ours, backend="numba"), inter)
    got = rle_counts(ours, ours[::-1], backend="numba")
    assert np.array_equal(got[0], inter[np.arange(n), np.arange(n)[::-1]])
    assert np.array_equal(got[1], masks.sum((1, 2))) and np.array_equal(got[2], masks[::-1].sum((1, 2)))


def test_rle_iou_errors():
    from maskrep.ops import rle_iou

    a = [mask_to_rle(np.ones((3, 4), bool))]
    with pytest.raises(ValueError, match=r"share one size, got \[\(3, 4\), \(4, 3\)\]"):
        rle_iou(a, [mask_to_rle(np.ones((4, 3), bool))])
    with pytest.raises(ValueError, match=r"one flag per mask of rles2 \(1\), got 2"):
        rle_iou(a, a, [False, True])


def test_polygons_to_rle_equals_pycocotools():
    from maskrep.ops import polygons_to_rle

    rng = np.random.default_rng(0)
    h, w = 23, 31
    instances = []
    for _ in range(30):
        parts = []
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(3, 9))
            centre = rng.uniform([-10, -10], [w + 10, h + 10])
            pts = centre + rng.normal(0, rng.choice([0.3, 4.0, 15.0]), (k, 2))  # some outside the image
            parts.append(pts.ravel().tolist())
        instances.append(parts)
    expected = [mask_utils.merge(mask_utils.frPyObjects(p, h, w))["counts"].decode("ascii") for p in instances]
    for backend in ("numba", "reference"):
        assert [r["counts"] for r in polygons_to_rle(instances, h, w, backend=backend)] == expected, backend


def test_rle_counts_equal_mask_counts():
    from maskrep.ops import rle_counts
    from maskrep.ops.masks import mask_counts

    rng = np.random.default_rng(5)
    pairs_a, pairs_b, expected = [], [], []
    for h, w in [(7, 9), (1, 1), (12, 3), (7, 9)]:  # pairs of different sizes side by side
        ma, a = _random_rles(rng, 4, h, w)
        mb, b = _random_rles(rng, 4, h, w, uncompressed=h == 12)
        mb = mb[::-1]
        pairs_a += a
        pairs_b += b[::-1]
        expected.append(np.stack(mask_counts(ma, mb)))
    expected = np.concatenate(expected, axis=1)
    for backend in ("numba", "reference"):
        assert np.array_equal(np.stack(rle_counts(pairs_a, pairs_b, backend=backend)), expected), backend
    with pytest.raises(ValueError, match="equally long"):
        rle_counts(pairs_a, pairs_b[:-1])
    with pytest.raises(ValueError, match=r"pair 0: sizes differ, \[7, 9\] and \[1, 1\]"):
        rle_counts(pairs_a[:1], pairs_b[4:5])


def test_instance_to_rle_matches_its_mask(coco_val):
    _, insts = coco_val
    for inst in insts[:50]:
        assert (rle_to_mask(inst.to_rle()) == inst.mask()).all()
    crowd = {"size": [4, 5], "counts": [6, 2, 12]}
    from maskrep.data.coco import CocoInstance

    inst = CocoInstance(1, 1, "x.jpg", 4, 5, 1, 0, np.zeros(4), 2.0, True, rle=crowd)
    assert (rle_to_mask(inst.to_rle()) == rle_to_mask(crowd)).all() and isinstance(inst.to_rle()["counts"], str)
