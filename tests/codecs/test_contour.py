import numpy as np
import pytest
import torch

from maskrep.codecs import ContourCodec, PolarCodec
from maskrep.codecs.contour import SHARPNESS, polygon_logits, simplify_polygon
from maskrep.ops.polygons import fill_polygon


def _disc(s, cy, cx, r):
    yy, xx = np.mgrid[0:s, 0:s] + 0.5
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


@pytest.mark.parametrize("seed", range(4))
def test_simplify_numba_equals_reference(seed):
    rng = np.random.default_rng(seed)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 40))
    loop = np.stack([np.cos(angles), np.sin(angles)], 1) * rng.uniform(0.5, 2, (40, 1))
    loop = np.round(loop * 4) / 4  # grid values: ties happen
    for k in (3, 7, 20, 39):
        a = simplify_polygon(loop, k, backend="reference")
        b = simplify_polygon(loop, k, backend="numba")
        assert a.shape == (k, 2) and np.array_equal(a, b)


def test_simplify_keeps_the_corners():
    square = np.array([[0, 0], [1, 0], [2, 0], [3, 0], [3, 1], [3, 2], [3, 3], [2, 3], [1, 3], [0, 3], [0, 2], [0, 1]],
                      dtype=float)
    assert simplify_polygon(square, 4).tolist() == [[0, 0], [3, 0], [3, 3], [0, 3]]
    assert simplify_polygon(square[:3], 6).shape == (6, 2)  # too few vertices: resampled


def test_soft_fill_kernel_equals_torch_and_thresholds_to_the_polygon():
    from maskrep._kernels.numba_cpu import polygon_logits_kernel

    rng = np.random.default_rng(0)
    verts = rng.uniform(-1, 13, (5, 7, 2))
    ref = polygon_logits(torch.from_numpy(verts), 12).numpy()
    fast = np.empty((5, 12, 12))
    polygon_logits_kernel(verts, 12, SHARPNESS, fast)
    np.testing.assert_allclose(fast, ref, rtol=1e-12, atol=1e-12)
    for v, logits in zip(verts, ref):
        assert np.array_equal(logits > 0, fill_polygon(v, 12, 12, rule="center"))


def test_polar_disc():
    codec = PolarCodec(mask_size=64, rays=36)
    code = codec.encode(_disc(64, 30.0, 34.0, 20.0)[None])[0]
    np.testing.assert_allclose(code[:2], [34 / 64, 30 / 64], atol=0.01)
    np.testing.assert_allclose(code[2:], 20 / 64, atol=0.012)  # the traced boundary is within a pixel
    assert codec.code_length == 38
    empty = codec.encode(np.zeros((1, 64, 64), bool))
    assert not (codec.decode(empty) >= 0.5).any()


def test_contour_rectangle_round_trips_exactly():
    m = np.zeros((1, 20, 20), bool)
    m[0, 3:15, 5:18] = True
    for mode in ("adaptive", "uniform"):
        codec = ContourCodec(mask_size=20, dim=16, mode=mode)
        assert np.array_equal(codec.decode(codec.encode(m)) >= 0.5, m), mode


def test_fourier_disc_and_empty():
    codec = ContourCodec(mask_size=64, dim=20, mode="fourier")
    m = _disc(64, 32.0, 32.0, 20.0)[None]
    code = codec.encode(m)[0].reshape(-1, 2)
    np.testing.assert_allclose(code[0], [0.5, 0.5], atol=0.01)  # frequency 0: the centre
    assert np.hypot(*code[1]) == pytest.approx(20 / 64, abs=0.01)  # the circle itself, clockwise on screen
    assert (np.hypot(code[3:, 0], code[3:, 1]) < 0.01).all()
    iou = ((codec.decode(codec.encode(m)) >= 0.5) & m).sum() / ((codec.decode(codec.encode(m)) >= 0.5) | m).sum()
    assert iou > 0.97
    assert not (codec.decode(codec.encode(np.zeros((1, 64, 64), bool))) >= 0.5).any()


@pytest.mark.parametrize("mode", ["uniform", "fourier"])
def test_one_shape_one_code_at_any_resolution(mode):
    """Codes are in box units: the same shape traced at 32 and at 128 gives close codes (the
    adaptive mode keeps whichever traced vertices matter, which differ with the resolution)."""
    a = ContourCodec(mask_size=32, dim=24, mode=mode).encode(_disc(32, 16.0, 14.0, 9.0)[None])[0]
    b = ContourCodec(mask_size=128, dim=24, mode=mode).encode(_disc(128, 64.0, 56.0, 36.0)[None])[0]
    np.testing.assert_allclose(a, b, atol=0.03)


def test_paste_rle_fills_the_polygon_in_the_image():
    from maskrep.ops import polygons_to_rle, rle_to_mask

    codec = ContourCodec(mask_size=32, dim=24)
    codes = codec.encode(_disc(32, 16.0, 16.0, 12.0)[None])
    box = np.array([[10.0, 20.0, 74.0, 52.0]])
    rle = codec.paste_rle(codes, box, (60, 90))[0]
    poly = box[0, :2] + codec.decode_polygons(codes)[0] * (box[0, 2:] - box[0, :2])
    assert rle == polygons_to_rle([[poly]], 60, 90)[0]
    full = rle_to_mask(rle)
    assert full[36, 42] and not full[:20].any() and not full[:, :10].any()


def test_bad_parameters():
    with pytest.raises(ValueError, match="dim must be even"):
        ContourCodec(dim=61)
    with pytest.raises(ValueError, match="mode must be one of adaptive, uniform, fourier, got 'spline'"):
        ContourCodec(mode="spline")
    with pytest.raises(ValueError, match=r"rays must be an integer >= 3, got 2"):
        PolarCodec(rays=2)
