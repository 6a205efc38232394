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
