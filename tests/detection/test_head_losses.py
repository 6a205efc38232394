"""MEInst and CRMask losses and decoding recomputed by hand on hand-made positives."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from maskrep.codecs import PCACodec, SVDCodec
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
    loss = head.losses({"codes": codes}, None, _positives(codes), _targets())["loss_mask"]
    pred = _picked(codes)
    target = torch.from_numpy(codec.encode(_crops(6)))  # the deterministic codes of the GT crops
    c = torch.tensor([0.5, 1.0, 0.25])
    expected = (c * ((pred - target) ** 2).sum(1)).sum() / max(1.75 * 5, 1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_meinst_mask_loss_by_hand():
    codec = _pca()
    head = MEInstHead(codec=codec, in_channels=4, num_convs=1, loss="mask")
    codes = _codes(5, torch.Generator().manual_seed(1))
    loss = head.losses({"codes": codes}, None, _positives(codes), _targets())["loss_mask"]
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
    first, second = (a.losses({"codes": codes}, None, pos, tg)["loss_mask"].item() for _ in range(2))
    assert first != second and int(a.jitter_step) == 2  # fresh jitter at every step
    b = MEInstHead(codec=_pca(), in_channels=4, num_convs=1, seed=3)
    b.load_state_dict(a.state_dict())  # a resumed run continues the draws
    c = MEInstHead(codec=_pca(), in_channels=4, num_convs=1, seed=3)
    c.losses({"codes": codes}, None, pos, tg)
    c.losses({"codes": codes}, None, pos, tg)
    assert b.losses({"codes": codes}, None, pos, tg)["loss_mask"].item() == c.losses({"codes": codes}, None, pos, tg)["loss_mask"].item()


def test_crmask_cls_loss_and_decode_by_hand():
    head = CRMaskHead(in_channels=4, codec=SVDCodec(mask_size=6, rank=2))
    codes = _codes(2 * (2 * 6 + 1), torch.Generator().manual_seed(4))
    loss = head.losses({"codes": codes}, None, _positives(codes), _targets())["loss_mask"]
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
    head.predict({"codes": codes}, None, dets)
    torch.testing.assert_close(dets[1]["mask"].maps[0], torch.sigmoid(logits[2]))
    assert dets[0]["mask"].frame == "box" and dets[0]["mask"].maps.shape == (2, 6, 6)


def test_crmask_reg_mode_by_hand():
    head = CRMaskHead(in_channels=4, codec=SVDCodec(mask_size=6, rank=2, mode="reg"), mask_weight=3.0, sigma_weight=0.5)
    codes = _codes(26, torch.Generator().manual_seed(5))
    losses = head.losses({"codes": codes}, None, _positives(codes), _targets())
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
    head.predict({"codes": codes}, None, dets)
    expected = compose_units(u[2:], torch.relu(s_raw[2:]) ** 2, v[2:])[0]  # s = ReLU(x)^2, unclamped
    torch.testing.assert_close(dets[1]["mask"].maps[0], expected)


def _crowd_coco(tmp_path):
    """A 64 x 64 image: instance A (class 1), then a crowd region (class 2) overlapping it, then
    instance B (class 0) overlapping the crowd region."""
    import json

    import pycocotools.mask as mask_utils
    from PIL import Image

    Image.new("RGB", (64, 64), (90, 90, 90)).save(tmp_path / "a.jpg")
    crowd = np.zeros((64, 64), bool)
    crowd[8:40, 24:56] = True
    flat = crowd.flatten(order="F")
    runs = np.diff(np.concatenate([[0], np.flatnonzero(flat[1:] != flat[:-1]) + 1, [flat.size]])).tolist()
    uncompressed = {"size": [64, 64], "counts": ([0] if flat[0] else []) + runs}  # iscrowd's uncompressed RLE
    assert (mask_utils.decode(mask_utils.frPyObjects(uncompressed, 64, 64)) == crowd).all()
    square = lambda x0, y0, x1, y1: [[x0, y0, x1, y0, x1, y1, x0, y1]]
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "height": 64, "width": 64}],
           "categories": [{"id": 5, "name": "c0"}, {"id": 6, "name": "c1"}, {"id": 7, "name": "c2"}],
           "annotations": [
               {"id": 1, "image_id": 1, "category_id": 6, "segmentation": square(0, 0, 32, 32), "bbox": [0, 0, 32, 32],
                "area": 1024, "iscrowd": 0},
               {"id": 2, "image_id": 1, "category_id": 7, "segmentation": uncompressed, "bbox": [24, 8, 32, 32],
                "area": int(crowd.sum()), "iscrowd": 1},
               {"id": 3, "image_id": 1, "category_id": 5, "segmentation": square(40, 32, 64, 64),
                "bbox": [40, 32, 24, 32], "area": 768, "iscrowd": 0}]}
    path = tmp_path / "crowd.json"
    path.write_text(json.dumps(doc))
    return path


def test_blendmask_semantic_target_labels_crowd_regions_in_file_order(tmp_path):
    from maskrep.data.detection import DetectionDataset, collate
    from maskrep.detection.heads import BlendMaskHead

    ds = DetectionDataset(_crowd_coco(tmp_path), tmp_path, min_size=64, max_size=64, with_masks=True)
    item = ds[0]
    assert item["labels"].tolist() == [1, 0]  # the crowd region is no instance
    assert item["crowd"]["labels"].tolist() == [2] and item["crowd"]["after"].tolist() == [1]
    _, targets = collate([item])
    sem = BlendMaskHead.semantic_target(targets, [t["masks"] for t in targets], (64, 64), (8, 8))[0]
    # pixel (8r, 8c): A is rows/cols < 32, crowd rows 8-39 x cols 24-55 over A, B rows >= 32, cols >= 40 over both
    assert sem[0, 0] == 2  # A alone
    assert sem[1, 3] == 3  # crowd over A (painted after it)
    assert sem[1, 5] == 3  # crowd alone
    assert sem[4, 5] == 1  # B over the crowd (B comes after it in the file)
    assert sem[7, 1] == 0  # background
    assert (sem == 3).sum() == 16 - 2  # rows 1-4 x cols 3-6, less the two cells of B



def test_blendmask_semantic_head_norm_is_batchnorm_unless_asked():
    from torch import nn

    from maskrep.detection.heads import BlendMaskHead

    def norms(head):
        return {type(m) for m in head.basis.seg_head.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))}

    assert norms(BlendMaskHead(in_channels=32, num_classes=3, basis_channels=32)) == {nn.BatchNorm2d}
    assert norms(BlendMaskHead(in_channels=32, num_classes=3, basis_channels=32, semantic_norm="GN")) == {nn.GroupNorm}
    # the tower keeps its own norm
    head = BlendMaskHead(in_channels=32, num_classes=3, basis_channels=32)
    assert any(isinstance(m, nn.GroupNorm) for m in head.basis.tower.modules())
