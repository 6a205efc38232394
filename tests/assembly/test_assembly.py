"""Assembly functions: hand-computed cases, float64 gradcheck, numba kernels against the torch path."""

import math

import numpy as np
import pytest
import torch

from maskrep._kernels.tolerances import TOLERANCES
from maskrep.assembly import blend, embedding_coupling, margin_bias, shape_saliency, unit_attentions, unit_product

BOXES = torch.tensor([[0.0, 0.0, 30.0, 20.0], [8.0, 8.0, 40.0, 50.0], [-5.0, 3.0, 20.0, 60.0],
                      [10.0, 10.0, 10.5, 10.4], [0.0, 0.0, 56.0, 48.0]], dtype=torch.float64)
IM = torch.tensor([0, 1, 1, 0, 1])


# ---- hand-computed cases -----------------------------------------------------------------------------

def test_embedding_by_hand():
    p = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64).view(1, 1, 1, 3)
    q = torch.tensor([[1.0]], dtype=torch.float64)
    phi = torch.tensor([math.log(2.0)], dtype=torch.float64)
    for backend in ("reference", "numba"):
        out = embedding_coupling(p, q, phi, backend=backend)
        np.testing.assert_allclose(out[0, 0].numpy(), [0.5, 1.0, 0.5], rtol=0, atol=1e-15)
    # box (0, 0, 8, 8) at stride 4 covers cells 0 and 1 (centres 2, 6); cell 2 (centre 10) is out
    boxed = embedding_coupling(p, q, phi, boxes=torch.tensor([[0.0, 0.0, 8.0, 8.0]], dtype=torch.float64), stride=4)
    assert boxed[0, 0].tolist() == pytest.approx([0.5, 1.0, 0.0])
    # the prior margin: distance 2 gives probability 0.5
    phi0 = math.exp(margin_bias(2.0))
    assert math.exp(-phi0 * 4) == pytest.approx(0.5) and margin_bias() == pytest.approx(-1.7528, abs=1e-4)


def test_blend_by_hand():
    bases = torch.stack([torch.full((8, 8), 1.0), torch.full((8, 8), 3.0)])[None].double()
    att = torch.zeros(1, 2, 4, 4, dtype=torch.float64)  # equal attention: the mean of the bases
    out = blend(bases, att, torch.tensor([[4.0, 4.0, 20.0, 20.0]], dtype=torch.float64), mask_size=5)
    assert torch.allclose(out, torch.full((1, 5, 5), 2.0, dtype=torch.float64))
    att[0, 1] = 50.0  # all weight on the second basis
    out = blend(bases, att, torch.tensor([[4.0, 4.0, 20.0, 20.0]], dtype=torch.float64), mask_size=5)
    assert torch.allclose(out, torch.full((1, 5, 5), 3.0, dtype=torch.float64))


def test_unit_product_by_hand():
    u = torch.zeros(1, 4, 1, dtype=torch.float64)
    v = torch.zeros(1, 4, 1, dtype=torch.float64)
    u[0, 0, 0] = 3.0  # normalised to e0
    v[0, 2, 0] = 0.5  # normalised to e2
    s = torch.tensor([[2.0]], dtype=torch.float64)
    for backend in ("reference", "numba"):
        out = unit_product(u, s, v, eps=0.0, backend=backend)
        expected = torch.zeros(1, 4, 4, dtype=torch.float64)
        expected[0, 0, 2] = 2.0
        assert torch.equal(out, expected)
    # CRMask-in-BlendMask layout: K=2 bases, m=3, k=1 -> 2*2*3*1 + 2*1 = 14 channels
    feats = torch.zeros(1, 14, dtype=torch.float64)
    feats[0, 0] = 1.0  # U of basis 0, row 0
    feats[0, 6 + 1] = 1.0  # V of basis 0, row 1
    att = unit_attentions(feats, 2, 3, 1, eps=0.0)
    assert att.shape == (1, 2, 3, 3) and att[0, 0, 0, 1].item() == pytest.approx(1.0)  # s = exp(0) = 1
    assert unit_attentions(feats, 2, 3, 1)[0, 1].abs().sum() == 0  # with eps, zero units give zeros, not NaN
    with pytest.raises(ValueError, match="K\\(2mk \\+ k\\)"):
        unit_attentions(feats[:, :10], 2, 3, 1)


def test_shape_saliency_by_hand():
    shapes = torch.zeros(1, 4, 4, dtype=torch.float64)
    saliency = torch.zeros(1, 1, 4, 6, dtype=torch.float64)
    box = torch.tensor([[4.0, 0.0, 12.0, 8.0]], dtype=torch.float64)  # stride 4: cells (0..1, 1..2)
    for backend in ("reference", "numba"):
        out = shape_saliency(shapes, saliency, box, stride=4, backend=backend)
        expected = torch.zeros(1, 4, 6, dtype=torch.float64)
        expected[0, 0:2, 1:3] = 0.25
        assert torch.allclose(out, expected, atol=1e-15)
    # a shape bright on its left half only lights the left half of the box
    shapes[0, :, :2] = 20.0
    shapes[0, :, 2:] = -20.0
    out = shape_saliency(shapes, saliency, box, stride=4)
    assert out[0, 0, 1] > 0.49 and out[0, 0, 2] < 0.01


# ---- gradients -----------------------------------------------------------------------------------

def test_gradcheck_all():
    torch.manual_seed(0)
    d = torch.float64
    p = torch.randn(2, 3, 4, 5, dtype=d, requires_grad=True)
    q = torch.randn(5, 3, dtype=d, requires_grad=True)
    phi = (torch.rand(5, 3, dtype=d) + 0.1).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b, c: embedding_coupling(a, b, c, IM, BOXES, stride=8), (p, q, phi))
    bases = torch.randn(2, 3, 10, 12, dtype=d, requires_grad=True)
    att = torch.randn(5, 3, 4, 4, dtype=d, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: blend(a, b, BOXES, IM, mask_size=6), (bases, att))
    shapes = torch.randn(5, 4, 4, dtype=d, requires_grad=True)
    sal = torch.randn(2, 1, 7, 8, dtype=d, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: shape_saliency(a, b, BOXES, IM, stride=8), (shapes, sal))
    u = torch.randn(2, 5, 2, dtype=d, requires_grad=True)
    s = torch.rand(2, 2, dtype=d, requires_grad=True)
    v = torch.randn(2, 5, 2, dtype=d, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b, c: unit_product(a, b, c), (u, s, v))


# ---- numba kernels against the torch path -----------------------------------------------------------

def _inputs(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "p": torch.randn(2, 4, 6, 7, generator=g, dtype=dtype), "q": torch.randn(5, 4, generator=g, dtype=dtype),
        "phi": torch.rand(5, 4, generator=g, dtype=dtype), "bases": torch.randn(2, 4, 12, 14, generator=g, dtype=dtype),
        "att": torch.randn(5, 4, 7, 7, generator=g, dtype=dtype) * 3,
        "shapes": torch.randn(5, 8, 8, generator=g, dtype=dtype) * 3,
        "sal": torch.randn(2, 1, 15, 16, generator=g, dtype=dtype) * 3,
        "u": torch.randn(5, 4, 14, 3, generator=g, dtype=dtype), "s": torch.rand(5, 4, 3, generator=g, dtype=dtype),
        "v": torch.randn(5, 4, 14, 3, generator=g, dtype=dtype),
    }


CALLS = {
    "embedding_coupling": lambda x, b, be: embedding_coupling(x["p"], x["q"], x["phi"], IM, b, stride=8, backend=be),
    "blend": lambda x, b, be: blend(x["bases"], x["att"], b, IM, mask_size=9, backend=be),
    "shape_saliency": lambda x, b, be: shape_saliency(x["shapes"], x["sal"], b, IM, stride=4, backend=be),
    "unit_product": lambda x, b, be: unit_product(x["u"], x["s"], x["v"], backend=be),
}


@pytest.mark.kernels
@pytest.mark.parametrize("name", sorted(CALLS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_numba_matches_torch(name, dtype):
    x = _inputs(dtype)
    boxes = BOXES.to(dtype)
    fast, ref = CALLS[name](x, boxes, "numba"), CALLS[name](x, boxes, "reference")
    assert fast.dtype == ref.dtype == dtype and fast.shape == ref.shape
    tol = TOLERANCES[name] if dtype == torch.float64 else TOLERANCES["float32"]
    assert (fast.double() - ref.double()).abs().max().item() <= tol


@pytest.mark.kernels
def test_numpy_in_numpy_out_and_gradient_takes_torch():
    x = _inputs()
    out = embedding_coupling(x["p"].numpy(), x["q"].numpy(), x["phi"].numpy(), IM.numpy(), BOXES.numpy(), stride=8)
    assert isinstance(out, np.ndarray)
    assert np.abs(out - CALLS["embedding_coupling"](x, BOXES, "reference").numpy()).max() <= 1e-12
    att = x["att"].clone().requires_grad_()
    logits = blend(x["bases"], att, BOXES, IM, mask_size=9)  # auto: a gradient is wanted -> torch
    logits.sum().backward()
    assert att.grad is not None and att.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", ["numpy", "tensor"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_backend_returns_the_input_kind_and_dtype(kind, dtype):
    """The float64 kernels hand back what the torch path would: float32 in, float32 out."""
    g = torch.Generator().manual_seed(0)
    t = {"float32": torch.float32, "float64": torch.float64}[dtype]
    pixel, q, phi = torch.randn(2, 4, 6, 7, generator=g), torch.randn(3, 4, generator=g), torch.rand(3, 4, generator=g)
    bases, att = torch.randn(2, 3, 12, 14, generator=g), torch.randn(3, 3, 4, 4, generator=g)
    shapes, sal = torch.randn(3, 5, 5, generator=g), torch.randn(2, 1, 12, 14, generator=g)
    u, s, v = torch.randn(3, 5, 2, generator=g), torch.rand(3, 2, generator=g), torch.randn(3, 5, 2, generator=g)
    boxes, im = BOXES[:3].float(), IM[:3]

    def cast(x):
        x = x.to(t)
        return x.numpy() if kind == "numpy" else x

    calls = {
        "embedding_coupling": lambda b: embedding_coupling(cast(pixel), cast(q), cast(phi), im, backend=b),
        "blend": lambda b: blend(cast(bases), cast(att), cast(boxes), im, mask_size=6, backend=b),
        "shape_saliency": lambda b: shape_saliency(cast(shapes), cast(sal), cast(boxes), im, backend=b),
        "unit_product": lambda b: unit_product(cast(u), cast(s), cast(v), backend=b),
    }
    for name, call in calls.items():
        outs = {b: call(b) for b in ("reference", "numba")}
        for b, out in outs.items():
            assert (isinstance(out, np.ndarray) if kind == "numpy" else torch.is_tensor(out)), (name, b)
            assert str(out.dtype).replace("torch.", "") == dtype, (name, b, out.dtype)
        np.testing.assert_allclose(np.asarray(outs["numba"]), np.asarray(outs["reference"]),
                                   atol=TOLERANCES["float32"] if dtype == "float32" else 1e-10)
