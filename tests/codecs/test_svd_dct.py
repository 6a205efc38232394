import numpy as np
import pytest
import torch
from scipy.fft import dctn

from maskrep.codecs import DCTCodec, SVDCodec, compose_units
from maskrep.codecs.dct import zigzag_indices


def test_compose_units_hand_case_and_zero_column():
    u = torch.tensor([[[3.0], [4.0]]])  # (1, 2, 1): normalised to (0.6, 0.8)
    v = torch.tensor([[[1.0], [0.0]]])
    s = torch.tensor([[2.0]])
    out = compose_units(u, s, v, eps=0.0)
    np.testing.assert_allclose(out.numpy(), [[[1.2, 0.0], [1.6, 0.0]]], atol=1e-6)
    zero = compose_units(torch.zeros(1, 3, 2), torch.ones(1, 2), torch.ones(1, 3, 2))
    assert torch.isfinite(zero).all() and (zero == 0).all()


def test_compose_units_gradcheck():
    g = torch.Generator().manual_seed(0)
    u, v = torch.randn(2, 5, 3, generator=g, dtype=torch.float64), torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    s = torch.rand(2, 3, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(compose_units, (u.requires_grad_(), s.requires_grad_(), v.requires_grad_()))


def test_svd_code_layout_and_signs():
    m = np.zeros((1, 14, 14), bool)
    m[0, 2:9, 3:12] = True  # rank 1 in the 'reg' mode
    codec = SVDCodec(mode="reg")
    code = codec.encode(m)[0]
    u = code[:42].reshape(14, 3)  # row-major over (S, k)
    s = code[42:45]
    v = code[45:].reshape(14, 3)
    assert s[0] == pytest.approx(np.sqrt(7 * 9), rel=1e-5) and np.allclose(s[1:], 0, atol=1e-5)
    assert u[:, 0].sum() > 0 and np.allclose(np.linalg.norm(u, axis=0), 1, atol=1e-5)
    np.testing.assert_allclose(s[0] * np.outer(u[:, 0], v[:, 0]), m[0], atol=1e-5)
    assert (codec.decode(code[None])[0] >= 0.5).tolist() == m[0].tolist()


def test_svd_head_activations_of_s():
    from maskrep.codecs.svd import SVDModule

    codes = torch.randn(4, 87, generator=torch.Generator().manual_seed(0))
    plain = SVDModule(mask_size=14, rank=3, mode="cls", logit_scale=4.0)
    u, s, v = codes[:, :42], codes[:, 42:45], codes[:, 45:]
    for act, values in (("exp", s.exp()), ("relu_square", s.clamp(min=0) ** 2)):  # CRMask 'cls' / 'reg' heads
        head = SVDModule(mask_size=14, rank=3, mode="cls", logit_scale=4.0, s_activation=act)
        torch.testing.assert_close(head.decode_logits(codes), plain.decode_logits(torch.cat([u, values, v], 1)))
    with pytest.raises(ValueError, match="s_activation must be one of"):
        SVDModule(mask_size=14, rank=3, mode="cls", logit_scale=4.0, s_activation="square")


def test_svd_reg_pastes_unclamped_values():
    m = np.zeros((1, 14, 14), bool)
    m[0, 3:11, 2:12] = True
    codec = SVDCodec(mode="reg", rank=1)
    codes = codec.encode(m) * np.float32(1.5)  # scaled units: values up to 1.5
    probs, maps = codec.decode(codes), codec.paste_maps(codes)
    assert probs.max() == pytest.approx(1.0) and maps.max() == pytest.approx(1.5, rel=1e-5)
    np.testing.assert_allclose(np.clip(maps, 0, 1), probs, atol=1e-6)
    cls = SVDCodec(mode="cls")
    c = cls.encode(m)
    np.testing.assert_array_equal(cls.paste_maps(c), cls.decode(c))


def test_dct_matches_scipy_and_zigzag():
    assert zigzag_indices(3).tolist() == [[0, 0], [0, 1], [1, 0], [2, 0], [1, 1], [0, 2], [1, 2], [2, 1], [2, 2]]
    rng = np.random.default_rng(0)
    m = rng.random((2, 16, 16)) < 0.4
    codec = DCTCodec(mask_size=16, dim=256)
    ref = dctn(m.astype(np.float64), type=2, norm="ortho", axes=(1, 2))
    zz = zigzag_indices(16)
    np.testing.assert_allclose(codec.encode(m), ref[:, zz[:, 0], zz[:, 1]], atol=1e-5)
    assert ((codec.decode(codec.encode(m)) >= 0.5) == m).all()  # all 256 coefficients: lossless
