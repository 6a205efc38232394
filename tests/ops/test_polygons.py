import numpy as np
import pycocotools.mask as mask_utils
import pytest
from naive import rasterize

from maskrep.ops import polygon_area, polygons_to_mask


def test_square_pixel_centres():
    m = polygons_to_mask([[1, 1, 3, 1, 3, 3, 1, 3]], 5, 5)
    expected = np.zeros((5, 5), bool)
    expected[1:3, 1:3] = True
    assert (m == expected).all()
    # shifted by 0.6: centres 2.5 and 3.5 fall inside [1.6, 3.6]
    m = polygons_to_mask([[1.6, 1.6, 3.6, 1.6, 3.6, 3.6, 1.6, 3.6]], 5, 5)
    assert np.argwhere(m).tolist() == [[2, 2], [2, 3], [3, 2], [3, 3]]


@pytest.mark.parametrize("seed", range(4))
def test_matches_naive_oracle(seed):
    rng = np.random.default_rng(seed)
    # random (often self-intersecting) polygons, partly outside the grid, and a multi-part instance
    polys = [rng.uniform(-3, 15, size=2 * rng.integers(3, 9)) for _ in range(2)]
    assert (polygons_to_mask(polys, 11, 13) == rasterize(polys, 11, 13)).all()


def test_union_of_parts_and_thin():
    a, b = [0, 0, 4, 0, 4, 4, 0, 4], [2, 2, 6, 2, 6, 6, 2, 6]
    assert polygons_to_mask([a, b], 8, 8).sum() == 16 + 16 - 4
    # a sliver thinner than a pixel that misses every centre is empty, not an error
    assert polygons_to_mask([[0, 1.1, 8, 1.1, 8, 1.3, 0, 1.3]], 4, 8).sum() == 0


def test_agrees_with_pycocotools_on_synthetic(synthetic):
    from maskrep.data import CocoInstances

    data = CocoInstances(synthetic["train"][0])
    ious = []
    for inst in data:
        if inst.polygons is None:
            continue
        flat = [p.reshape(-1).tolist() for p in inst.polygons]
        ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(flat, inst.height, inst.width))).astype(bool)
        ours = inst.mask()
        ious.append((ref & ours).sum() / (ref | ours).sum())
    assert len(ious) > 20 and np.mean(ious) > 0.98


def test_area_and_errors():
    assert polygon_area([0, 0, 4, 0, 4, 3]) == 6.0
    with pytest.raises(ValueError, match="at least 3 vertices"):
        polygons_to_mask([[0, 0, 1, 1]], 4, 4)
    with pytest.raises(ValueError, match="even count"):
        polygons_to_mask([[0, 0, 1, 1, 2]], 4, 4)
