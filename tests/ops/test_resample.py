import pytest
import torch
from naive import aligned_bilinear_transcribed, lovasz_hinge_loop

from maskrep.detection.losses import lovasz_hinge
from maskrep.ops import aligned_bilinear


@pytest.mark.parametrize("factor", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 3, 5, 7), (1, 2, 4, 1)])
def test_aligned_bilinear_equals_the_transcription(factor, shape):
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(factor), dtype=torch.float64)
    torch.testing.assert_close(aligned_bilinear(x, factor), aligned_bilinear_transcribed(x, factor))
    assert aligned_bilinear(x, factor).shape == (*shape[:2], shape[2] * factor, shape[3] * factor)


def test_aligned_bilinear_gradcheck_and_errors():
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: aligned_bilinear(t, 2), (x,))
    with pytest.raises(ValueError, match="factor must be a positive integer, got 1.5"):
        aligned_bilinear(x, 1.5)


def test_lovasz_hinge_equals_the_loop_and_a_hand_case():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 30, generator=g, dtype=torch.float64)
    y = (torch.rand(4, 30, generator=g) < 0.4).double()
    y[2] = 0  # no foreground
    y[3] = 1  # all foreground
    got = lovasz_hinge(z, y)
    for i in range(4):
        assert got[i].item() == pytest.approx(lovasz_hinge_loop(z[i].tolist(), y[i].tolist()), rel=1e-12)
    # two pixels, one of each label, both predicted right with margin > 1: zero loss
    assert lovasz_hinge(torch.tensor([[2.0, -3.0]]), torch.tensor([[1.0, 0.0]])).item() == 0.0
    # all logits 0: every error is 1, the gradient sums to the Jaccard loss of the empty mask, 1
    assert lovasz_hinge(torch.zeros(1, 5), torch.tensor([[1.0, 0, 1, 0, 0]])).item() == pytest.approx(1.0)
    assert torch.autograd.gradcheck(lambda t: lovasz_hinge(t, y[:2]), (z[:2].clone().requires_grad_(),))
