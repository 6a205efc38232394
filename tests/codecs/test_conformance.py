"""Every registered codec, the moment it is registered: shapes, kinds, determinism, persistence."""

import numpy as np
import pytest
import torch

from maskrep.codecs import get_codec, list_codecs, load

SMALL = {"bitmap": {"mask_size": 12, "resolution": 6}, "dct": {"mask_size": 12, "dim": 20},
         "contour": {"mask_size": 12, "dim": 16}, "polar": {"mask_size": 12, "rays": 16},
         "learned": {"mask_size": 12, "dim": 8, "width": 8, "epochs": 40, "batch_size": 50, "lr": 5e-3},
         "pca": {"mask_size": 12, "dim": 10}, "svd": {"mask_size": 12, "rank": 3}}


def _masks(n, s, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:s, 0:s]
    out = np.zeros((n, s, s), bool)
    for i in range(n):
        cy, cx, r = rng.uniform(2, s - 2, 2).tolist() + [rng.uniform(2, s / 2)]
        out[i] = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    return out


_FITTED: dict = {}


@pytest.fixture(params=list_codecs())
def codec(request):
    """Each codec built (and fitted) once for the module; tests only read it."""
    name = request.param
    if name not in _FITTED:
        c = get_codec(name, **SMALL.get(name, {}))
        if c.needs_fit:
            c.fit(_masks(300, c.mask_size, seed=1))
        _FITTED[name] = c
    return _FITTED[name]


def test_every_codec_has_small_params():
    assert set(list_codecs()) <= set(SMALL), "add small test parameters for the new codec"


def test_shapes_dtypes_and_range(codec):
    s, masks = codec.mask_size, _masks(7, codec.mask_size)
    codes = codec.encode(masks)
    assert isinstance(codes, np.ndarray) and codes.shape == (7, codec.code_length) and codes.dtype == np.float32
    probs = codec.decode(codes)
    assert probs.shape == (7, s, s) and probs.dtype == np.float32
    assert probs.min() >= 0 and probs.max() <= 1


def test_round_trip_is_close(codec):
    from maskrep.ops import mask_iou

    masks = _masks(50, codec.mask_size, seed=3)
    assert mask_iou(codec.decode(codec.encode(masks)) >= 0.5, masks).mean() > 0.8


def test_deterministic_and_batch_equals_single(codec):
    masks = _masks(5, codec.mask_size)
    a, b = codec.encode(masks), codec.encode(masks)
    assert np.array_equal(a, b)
    single = np.concatenate([codec.encode(masks[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(single, a, rtol=1e-5, atol=1e-5)


def test_empty_batch(codec):
    s = codec.mask_size
    assert codec.encode(np.zeros((0, s, s), bool)).shape == (0, codec.code_length)
    assert codec.decode(np.zeros((0, codec.code_length), np.float32)).shape == (0, s, s)


def test_numpy_torch_twins_and_device(codec):
    masks = _masks(4, codec.mask_size)
    t = torch.from_numpy(masks)
    codes_t = codec.encode(t)
    assert isinstance(codes_t, torch.Tensor) and codes_t.device == t.device
    np.testing.assert_allclose(codes_t.numpy(), codec.encode(masks), rtol=1e-6, atol=1e-6)
    probs_t = codec.decode(codes_t)
    assert isinstance(probs_t, torch.Tensor)
    np.testing.assert_allclose(probs_t.numpy(), codec.decode(codec.encode(masks)), rtol=1e-6, atol=1e-6)


def test_module_decode_is_differentiable(codec):
    module = codec.module()
    codes = torch.from_numpy(codec.encode(_masks(3, codec.mask_size))).double()
    # a generic point: off the clamp's kinks at exactly 0 and 1, and off the ties of grid-symmetric
    # shapes (two boundary segments equally near a pixel centre), where a gradient has a kink
    noise = torch.rand(codes.shape, generator=torch.Generator().manual_seed(0), dtype=codes.dtype)
    codes = (0.9 * codes + 0.05 + 0.01 * noise).requires_grad_(True)
    module = module.double()
    try:
        assert torch.autograd.gradcheck(lambda c: module(c), (codes,), eps=1e-6, atol=1e-5)
    finally:
        codec._module = None  # leave the cached float32 module alone for other tests


def test_save_load_round_trip(codec, tmp_path):
    path = tmp_path / f"{codec.name}.npz"
    codec.save(path)
    again = load(path)
    assert type(again) is type(codec) and again.params == codec.params
    for key, value in codec.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[key], value)
    masks = _masks(6, codec.mask_size)
    np.testing.assert_array_equal(again.encode(masks), codec.encode(masks))


def test_bad_input(codec):
    s = codec.mask_size
    with pytest.raises(ValueError, match=f"takes \\(N, {s}, {s}\\) masks, got shape \\(2, {s + 1}, {s}\\)"):
        codec.encode(np.zeros((2, s + 1, s), bool))
    with pytest.raises(TypeError, match="masks must be bool, got uint8"):
        codec.encode(np.zeros((2, s, s), np.uint8))
    with pytest.raises(ValueError, match=f"codes must be \\(N, {codec.code_length}\\)"):
        codec.decode(np.zeros((2, codec.code_length + 1), np.float32))


def test_registry_miss_lists_names():
    with pytest.raises(KeyError, match="unknown codec 'pcaa'; valid names: bitmap, contour, dct, learned, pca, polar, svd"):
        get_codec("pcaa")


def test_unfitted_codec_refuses():
    with pytest.raises(RuntimeError, match="must be fitted"):
        get_codec("pca", mask_size=8, dim=4).encode(np.zeros((1, 8, 8), bool))
