"""MEInst and CRMask losses and decoding recomputed by hand on hand-made positives."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from maskrep.codecs import PCACodec
from maskrep.codecs.svd import compose_units
from maskrep.detection import Positives
from maskrep.detection.heads import CRMaskHead, MEInstHead
from maskrep.structures import InstanceMasks

SQUARE = [[2.0, 2.0, 10.0, 2.0, 10.0, 9.0, 2.0, 9.0]]
TRIANGLE = [[1.0, 1.0, 11.0, 3.0, 4.0, 11.0]]


def _positives(codes_per_level):
    """Three positives: image 0 level 0 at locations 1 and 5, image 1 level 1 at location 0."""
    return Positives(
        pos_inds=torch.arange(3), gt_inds=torch.tensor([0, 1, 2]), im_inds=torch.tensor([0, 0, 1]),
        fpn_levels=torch.tensor([0, 0, 1]), loc_inds=torch.tensor([1, 5, 0]),
        locations=torch.zeros(3, 2), strides=torch.tensor([8.0, 8.0, 16.0]), labels=torch.zeros(3, dtype=torch.long),
        gt_boxes=torch.tensor([[2.0, 2.0, 10.0, 9.0], [1.0, 1.0, 11.0, 11.0], [1.0, 1.0, 11.0, 11.0]]),
        pred_boxes=torch.zeros(3, 4), reg_targets=torch.ones(3, 4), reg_pred=torch.ones(3, 4),
        gt_ctrs=torch.tensor([0.5, 1.0, 0.25]), loss_denorm=torch.tensor(1.75), num_pos_avg=torch.tensor(3.0))


def _targets():
    return [{"boxes": torch.tensor([[2.0, 2.0, 10.0, 9.0], [1.0, 1.0, 11.0, 11.0]]), "labels": torch.zeros(2).long(),
             "masks": InstanceMasks([SQUARE, TRIANGLE], (12, 12))},
            {"boxes": torch.tensor([[1.0, 1.0, 11.0, 11.0]]), "labels": torch.zeros(1).long(),
             "masks": InstanceMasks([TRIANGLE], (12, 12))}]


def _codes(c, g):
    return [torch.randn(2, c, 3, 3, generator=g), torch.randn(2, c, 2, 2, generator=g)]


def _picked(codes):
    return torch.stack([codes[0][0, :, 0, 1], codes[0][0, :, 1, 2], codes[1][1, :, 0, 0]])  # (3, C)


def _crops(size):
    t = _targets()
    return np.stack([t[0]["masks"].crop_in_boxes(t[0]["boxes"], size)[0].numpy(),
                     t[0]["masks"].crop_in_boxes(t[0]["boxes"], size)[1].numpy(),
                     t[1]["masks"].crop_in_boxes(t[1]["boxes"], size)[0].numpy()])


def _pca(sigmoid=True):
    rng = np.random.default_rng(0)
    return PCACodec(mask_size=6, dim=5, sigmoid=sigmoid).fit(rng.random((300, 6, 6)) < np.linspace(0.2, 0.8, 6))


def test_meinst_mse_loss_by_hand():
    codec = _pca()
    head = MEInstHead(codec=codec, in_channels=4, num_convs=1, jitter=False)
    codes = _codes(5, torch.Generator().manual_seed(0))
    loss = head.losses({"codes": codes}, _positives(codes), _targets())["loss_mask"]
    pred = _picked(codes)
    target = torch.from_numpy(codec.encode(_crops(6)))  # the deterministic codes of the GT crops
    c = torch.tensor([0.5, 1.0, 0.25])
    expected = (c * ((pred - target) ** 2).sum(1)).sum() / max(1.75 * 5, 1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_meinst_mask_loss_by_hand():
    codec = _pca()
    head = MEInstHead(codec=codec, in_channels=4, num_convs=1, loss="mask")
    codes = _codes(5, torch.Generator().manual_seed(1))
    loss = head.losses({"codes": codes}, _positives(codes), _targets())["loss_mask"]
    logits = head.codec_module.decode_logits(_picked(codes)).flatten(1)
    crops = torch.from_numpy(_crops(6)).flatten(1).float()
    c = torch.tensor([0.5, 1.0, 0.25])
    bce = F.binary_cross_entropy_with_logits(logits, crops, reduction="none").sum(1)
    assert loss.item() == pytest.approx(((c * bce).sum() / max(1.75 * 36, 1)).item(), rel=1e-5)
    with pytest.raises(ValueError, match="loss='mask' needs a codec that decodes to logits"):
        MEInstHead(codec=_pca(sigmoid=False), in_channels=4, loss="mask")


def test_meinst_jitter_is_redrawn_every_step_and_reproducible():
    codes = _codes(5, torch.Generator().manual_seed(2))
    pos, tg = _positives(codes), _targets()
    a = MEInstHead(codec=_pca(), in_channels=4, num_convs=1, seed=3)
    first, second = (a.losses({"codes": codes}, pos, tg)["loss_mask"].item() for _ in range(2))
    assert first != second and int(a.jitter_step) == 2  # fresh jitter at every step
    b = MEInstHead(codec=_pca(), in_channels=4, num_convs=1, seed=3)
    b.load_state_dict(a.state_dict())  # a resumed run continues the draws
    c = MEInstHead(codec=_pca(), in_channels=4, num_convs=1, seed=3)
    c.losses({"codes": codes}, pos, tg)
    c.losses({"codes": codes}, pos, tg)
    assert b.losses({"codes": codes}, pos, tg)["loss_mask"].item() == c.losses({"codes": codes}, pos, tg)["loss_mask"].item()


def test_crmask_cls_loss_and_decode_by_hand():
    head = CRMaskHead(in_channels=4, mask_size=6, rank=2)
    codes = _codes(2 * (2 * 6 + 1), torch.Generator().manual_seed(4))
    loss = head.losses({"codes": codes}, _positives(codes), _targets())["loss_mask"]
    x = _picked(codes)
    u, s, v = x[:, :12].reshape(3, 6, 2), x[:, 12:14], x[:, 14:].reshape(3, 6, 2)
    u_hat = u / torch.sqrt((u * u).sum(1, keepdim=True) + 1e-6)
    v_hat = v / torch.sqrt((v * v).sum(1, keepdim=True) + 1e-6)
    logits = torch.einsum("nik,nk,njk->nij", u_hat, s.exp(), v_hat)  # U diag(exp s) V^T
    crops = torch.from_numpy(_crops(6)).float()
    bce = F.binary_cross_entropy_with_logits(logits, crops, reduction="none").mean((1, 2))
    c = torch.tensor([0.5, 1.0, 0.25])
    assert loss.item() == pytest.approx((2.0 * (c * bce).sum() / 1.75).item(), rel=1e-5)
    det = {"fpn_levels": torch.tensor([0, 1]), "loc_inds": torch.tensor([1, 0])}
    dets = [det, {"fpn_levels": torch.tensor([1]), "loc_inds": torch.tensor([0])}]
    head.predict({"codes": codes}, dets)
    torch.testing.assert_close(dets[1]["mask"].maps[0], torch.sigmoid(logits[2]))
    assert dets[0]["mask"].frame == "box" and dets[0]["mask"].maps.shape == (2, 6, 6)


def test_crmask_reg_mode_by_hand():
    head = CRMaskHead(in_channels=4, mask_size=6, rank=2, mode="reg", mask_weight=3.0, sigma_weight=0.5)
    codes = _codes(26, torch.Generator().manual_seed(5))
    losses = head.losses({"codes": codes}, _positives(codes), _targets())
    x = _picked(codes)
    u, s_raw, v = x[:, :12].reshape(3, 6, 2), x[:, 12:14], x[:, 14:].reshape(3, 6, 2)
    crops = torch.from_numpy(_crops(6)).double()
    ug, sg, vhg = torch.linalg.svd(crops)
    target = (ug[:, :, :2] * sg[:, None, :2]) @ vhg[:, :2]  # rank-2 reconstruction
    pred = compose_units(u.double(), sg[:, :2], v.double())  # the GT's singular values, teacher-forced
    c = torch.tensor([0.5, 1.0, 0.25], dtype=torch.float64)
    mse = ((pred - target) ** 2).mean((1, 2))
    sig = ((torch.relu(s_raw.double()) - sg[:, :2].sqrt()) ** 2).mean(1)
    assert losses["loss_mask"].item() == pytest.approx((3.0 * (c * mse).sum() / 1.75).item(), rel=1e-4)
    assert losses["loss_sigma"].item() == pytest.approx((0.5 * (c * sig).sum() / 1.75).item(), rel=1e-4)
    dets = [{"fpn_levels": torch.tensor([1]), "loc_inds": torch.tensor([0])}, {"fpn_levels": torch.tensor([1]),
                                                                              "loc_inds": torch.tensor([0])}]
    head.predict({"codes": codes}, dets)
    expected = compose_units(u[2:], torch.relu(s_raw[2:]) ** 2, v[2:])[0]  # s = ReLU(x)^2, unclamped
    torch.testing.assert_close(dets[1]["mask"].maps[0], expected)
