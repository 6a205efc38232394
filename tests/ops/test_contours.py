import numpy as np
import pytest

from maskrep.ops.contours import mask_contours, outer_contours, polygon_signed_area
from maskrep.ops.polygons import fill_polygon


def _random_masks(seed, n=4):
    rng = np.random.default_rng(seed)
    h, w = (int(v) for v in rng.integers(1, 18, 2))
    masks = rng.random((n, h, w)) < rng.random()
    masks[0] = False
    if n > 1:
        masks[1] = True
    return masks


@pytest.mark.parametrize("seed", range(6))
def test_outer_contours_numba_equals_reference(seed):
    masks = _random_masks(seed)
    ref = outer_contours(masks, backend="reference")
    fast = outer_contours(masks, backend="numba")
    assert len(ref) == len(fast) == len(masks)
    for a, b in zip(ref, fast):
        assert np.array_equal(a, b)
    assert ref[0].shape == (0, 2)  # the empty mask


@pytest.mark.parametrize("seed", range(6))
def test_loops_filled_even_odd_give_the_mask_back(seed):
    for m in _random_masks(seed, n=3):
        h, w = m.shape
        parity = np.zeros((h, w), dtype=np.int64)
        for loop in mask_contours(m):
            parity += fill_polygon(loop, h, w, rule="center")
        assert np.array_equal(parity % 2 == 1, m)


def test_outer_boundary_of_the_largest_part_without_its_hole():
    yy, xx = np.mgrid[0:20, 0:20]
    ring = ((yy - 9.5) ** 2 + (xx - 9.5) ** 2 < 64) & ((yy - 9.5) ** 2 + (xx - 9.5) ** 2 >= 9)
    m = ring.copy()
    m[0, 0] = True  # a second, smaller part
    loops = mask_contours(m)
    areas = sorted(polygon_signed_area(p) for p in loops)
    assert areas[0] < 0 < areas[1] < areas[2]  # the hole runs the other way
    outer = outer_contours(m[None])[0]
    filled = fill_polygon(outer, 20, 20, rule="center")
    assert np.array_equal(filled, (yy - 9.5) ** 2 + (xx - 9.5) ** 2 < 64)  # hole filled, speck left out


def test_diagonal_pixels_are_one_part():
    m = np.eye(4, dtype=bool)
    (loop,) = mask_contours(m)
    assert np.array_equal(fill_polygon(loop, 4, 4, rule="center"), m)


def test_bad_shapes():
    with pytest.raises(ValueError, match=r"mask must be \(H, W\), got shape \(2, 2, 2\)"):
        mask_contours(np.zeros((2, 2, 2), bool))
    with pytest.raises(ValueError, match=r"masks must be \(N, H, W\), got shape \(2, 2\)"):
        outer_contours(np.zeros((2, 2), bool))
