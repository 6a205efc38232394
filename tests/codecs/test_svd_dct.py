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


def test_svd_groups_attention_form():
    codec = SVDCodec(mask_size=6, rank=2)
    module = codec.module()
    codes = torch.randn(3, 4 * codec.code_length)  # G = 4 bases per instance
    from maskrep.codecs.svd import SVDModule

    grouped = SVDModule(mask_size=6, rank=2, mode="cls", logit_scale=4.0, num_groups=4, s_activation="exp")
    att = grouped.attention(codes)
    assert att.shape == (3, 4, 6, 6)
    c = codes.reshape(3, 4, -1)[:, 1]
    c = torch.cat([c[:, :12], torch.exp(c[:, 12:14]), c[:, 14:]], 1)
    torch.testing.assert_close(att[:, 1], module.decode_logits(c))


def test_dct_matches_scipy_and_zigzag():
    assert zigzag_indices(3).tolist() == [[0, 0], [0, 1], [1, 0], [2, 0], [1, 1], [0, 2], [1, 2], [2, 1], [2, 2]]
    rng = np.random.default_rng(0)
    m = rng.random((2, 16, 16)) < 0.4
    codec = DCTCodec(mask_size=16, dim=256)
    ref = dctn(m.astype(np.float64), type=2, norm="ortho", axes=(1, 2))
    zz = zigzag_indices(16)
    np.testing.assert_allclose(codec.encode(m), ref[:, zz[:, 0], zz[:, 1]], atol=1e-5)
    assert ((codec.decode(codec.encode(m)) >= 0.5) == m).all()  # all 256 coefficients: lossless
