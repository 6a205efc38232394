import numpy as np
import pycocotools.mask as mask_utils
import pytest
from naive import rasterize

from maskrep.ops import polygon_area, polygons_to_mask, polygons_to_masks


def pycocotools_mask(polygons, height, width):
    flat = [np.asarray(p, np.float64).reshape(-1).tolist() for p in polygons]
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(flat, height, width))).astype(bool)


@pytest.mark.parametrize("rule", ["coco", "center"])
def test_square_on_pixel_edges(rule):
    m = polygons_to_mask([[1, 1, 3, 1, 3, 3, 1, 3]], 5, 5, rule=rule)
    expected = np.zeros((5, 5), bool)
    expected[1:3, 1:3] = True
    assert (m == expected).all()


def test_the_two_rules_differ_where_pycocotools_rounds():
    # a band from y = 2.5 to 3.5 holds the centre of row 2 (the top edge is inclusive, the bottom
    # exclusive); pycocotools puts its top at grid ordinate 5 * 2.5 = 12.5 -> (int)(12.5 + .5) = 13,
    # whose crossing row is ceil((13 - 2) / 5) = 3, and its bottom at ceil((18 - 2) / 5) = 4: row 3
    band = [[1.0, 2.5, 4.0, 2.5, 4.0, 3.5, 1.0, 3.5]]
    assert np.argwhere(polygons_to_mask(band, 5, 6, rule="center")).tolist() == [[2, 1], [2, 2], [2, 3]]
    assert np.argwhere(polygons_to_mask(band, 5, 6)).tolist() == [[3, 1], [3, 2], [3, 3]]
    assert np.array_equal(polygons_to_mask(band, 5, 6), pycocotools_mask(band, 5, 6))


@pytest.mark.parametrize("seed", range(4))
def test_center_rule_matches_naive_oracle(seed):
    rng = np.random.default_rng(seed)
    # random (often self-intersecting) polygons, partly outside the grid, and a multi-part instance
    polys = [rng.uniform(-3, 15, size=2 * rng.integers(3, 9)) for _ in range(2)]
    assert (polygons_to_mask(polys, 11, 13, rule="center") == rasterize(polys, 11, 13)).all()


@pytest.mark.parametrize("seed", range(6))
def test_coco_rule_equals_pycocotools_on_random_polygons(seed):
    """Self-intersecting, multi-part, partly outside (negative coordinates: C's truncation toward
    zero), repeated vertices, coordinates on the 1/5 grid, odd image sizes."""
    rng = np.random.default_rng(seed)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        polys = []
        for _ in range(int(rng.integers(1, 3))):
            p = rng.uniform(-8, 36, 2 * int(rng.integers(3, 9)))
            if rng.random() < 0.3:
                p = np.round(p * 5) / 5
            if rng.random() < 0.2:
                p[2:4] = p[0:2]
            polys.append(p)
        expected = pycocotools_mask(polys, h, w)
        assert np.array_equal(polygons_to_mask(polys, h, w), expected)
        assert np.array_equal(polygons_to_masks([polys], h, w, backend="numba")[0], expected)


def test_union_of_parts_and_thin():
    a, b = [0, 0, 4, 0, 4, 4, 0, 4], [2, 2, 6, 2, 6, 6, 2, 6]
    assert polygons_to_mask([a, b], 8, 8).sum() == 16 + 16 - 4
    # a sliver thinner than a pixel that misses every centre is empty, not an error
    assert polygons_to_mask([[0, 1.1, 8, 1.1, 8, 1.3, 0, 1.3]], 4, 8, rule="center").sum() == 0


def test_unknown_rule():
    with pytest.raises(ValueError, match="rule must be one of 'coco', 'center', got 'centre'"):
        polygons_to_mask([[0, 0, 1, 0, 1, 1]], 4, 4, rule="centre")


def test_area_and_errors():
    assert polygon_area([0, 0, 4, 0, 4, 3]) == 6.0
    with pytest.raises(ValueError, match="at least 3 vertices"):
        polygons_to_mask([[0, 0, 1, 1]], 4, 4)
    with pytest.raises(ValueError, match="even count"):
        polygons_to_mask([[0, 0, 1, 1, 2]], 4, 4)
