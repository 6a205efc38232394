"""FCOS target assignment, losses and inference against hand-computed cases."""

import math

import pytest
import torch
from torch.nn import functional as F

from maskrep.detection import FCOS, FCOSOutput, compute_locations
from maskrep.detection.losses import centerness_target, giou_loss_ltrb, sigmoid_focal_loss


def _fcos(**kw):
    kw.setdefault("strides", (8, 16))
    kw.setdefault("sizes_of_interest", (64,))
    kw.setdefault("in_features", ("p3", "p4"))
    return FCOS(8, 3, num_convs=1, **kw)


def _output(fcos, d, h=32, w=32):
    """Hand-made per-level predictions as FCOS's output record."""
    return FCOSOutput(d["logits"], d["bbox_reg"], d["ctrness"], [], _locs(fcos, h, w), fcos.strides, (h, w))


def _locs(fcos, h=32, w=32):
    return compute_locations([(h // s, w // s) for s in fcos.strides], fcos.strides)


def test_locations_are_cell_centres():
    locs = compute_locations([(2, 3), (1, 2)], [8, 16])
    assert locs[0].tolist() == [[4, 4], [12, 4], [20, 4], [4, 12], [12, 12], [20, 12]]
    assert locs[1].tolist() == [[8, 8], [24, 8]]


def test_centre_sampling_assignment():
    fcos = _fcos()
    labels, reg, _gt = fcos.targets_for_image(_locs(fcos), torch.tensor([[0.0, 0.0, 16.0, 16.0]]), torch.tensor([1]))
    # centre (8, 8), radius 12 clipped to the box: the four stride-8 points (4|12, 4|12)
    assert torch.nonzero(labels != 3).squeeze(1).tolist() == [0, 1, 4, 5]
    assert labels[[0, 1, 4, 5]].tolist() == [1, 1, 1, 1]
    assert reg[0].tolist() == [0.5, 0.5, 1.5, 1.5]  # (4, 4): l=4 t=4 r=12 b=12, / stride 8
    assert reg[5].tolist() == [1.5, 1.5, 0.5, 0.5]
    # stride-16 points: max distance 8 is outside [64, inf]
    assert (labels[16:] == 3).all()


def test_centre_region_is_clipped_and_strict():
    fcos = _fcos()
    # thin box: centre (20, 4), region x in (8, 32), y in (0, 8) -> row y=4, x = 12, 20, 28
    labels, _, _ = fcos.targets_for_image(_locs(fcos), torch.tensor([[0.0, 0.0, 40.0, 8.0]]), torch.tensor([0]))
    assert torch.nonzero(labels[:16] != 3).squeeze(1).tolist() == [1, 2, 3]
    # box [4, 0, 13, 8]: point (4, 4) lies exactly on the region's edge x = 4 (strict: out), (12, 4) is in
    labels, _, _ = fcos.targets_for_image(_locs(fcos), torch.tensor([[4.0, 0.0, 13.0, 8.0]]), torch.tensor([0]))
    assert torch.nonzero(labels[:16] != 3).squeeze(1).tolist() == [1]


def test_without_centre_sampling_any_point_inside_the_box():
    fcos = _fcos(center_sample=False)
    labels, _, _ = fcos.targets_for_image(_locs(fcos), torch.tensor([[0.0, 0.0, 40.0, 8.0]]), torch.tensor([0]))
    assert torch.nonzero(labels[:16] != 3).squeeze(1).tolist() == [0, 1, 2, 3]


def test_smallest_area_wins_and_first_on_ties():
    fcos = _fcos()
    boxes = torch.tensor([[0.0, 0.0, 24.0, 24.0], [0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 16.0, 16.0]])
    labels, _, gt = fcos.targets_for_image(_locs(fcos), boxes, torch.tensor([0, 1, 2]))
    # (4, 4) is in all three: the 16x16 boxes win, and of the two equal ones the first
    assert labels[0].item() == 1 and gt[0].item() == 1
    # (20, 20) is only in the big box
    assert labels[10].item() == 0 and gt[10].item() == 0


def test_scale_range_bounds_are_inclusive():
    fcos = _fcos(center_sample=False)
    # at point (4, 4) of stride 8, the box [4-60, 4-10, 4+64, 4+10] gives max distance exactly 64:
    # P3's range is [-1, 64] and P4's is [64, inf]: both take it
    box = torch.tensor([[-56.0, -6.0, 68.0, 14.0]])
    locs = compute_locations([(4, 4), (2, 2)], [8, 16])
    labels, reg, _ = fcos.targets_for_image(locs, box, torch.tensor([2]))
    assert labels[0].item() == 2
    assert reg[0].tolist() == [60 / 8, 10 / 8, 64 / 8, 10 / 8]
    # at P4's (8, 8): l=64 t=14 r=60 b=6 -> max 64, also positive on P4
    assert labels[16].item() == 2


def test_no_gt_is_all_background():
    fcos = _fcos()
    labels, reg, _ = fcos.targets_for_image(_locs(fcos), torch.zeros((0, 4)), torch.zeros(0, dtype=torch.long))
    assert (labels == 3).all() and reg.shape == (20, 4)


def test_giou_and_centerness_by_hand():
    pred = torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    target = torch.tensor([[2.0, 2.0, 2.0, 2.0]])
    # A_p 4, A_t 16, I 4, U 16, E 16: IoU = 5/17, no enclosing penalty
    assert giou_loss_ltrb(pred, target).item() == pytest.approx(1 - 5 / 17, abs=1e-6)
    # disjoint-shaped: pred (0, 0, 2, 1) vs target (1, 1, 1, 1): I = (0+1)*(0+1)=1, U = 2+4-1 = 5,
    # E = (1+2)*(1+1) = 6 -> GIoU = 2/6 - 1/6
    p2, t2 = torch.tensor([[0.0, 0.0, 2.0, 1.0]]), torch.tensor([[1.0, 1.0, 1.0, 1.0]])
    assert giou_loss_ltrb(p2, t2).item() == pytest.approx(1 - (2 / 6 - 1 / 6), abs=1e-6)
    assert giou_loss_ltrb(p2, t2, torch.tensor([0.5])).item() == pytest.approx(0.5 * (1 - 1 / 6), abs=1e-6)
    c = centerness_target(torch.tensor([[1.0, 2.0, 3.0, 2.0]]))
    assert c.item() == pytest.approx(math.sqrt(1 / 3 * 1.0))


def test_focal_loss_by_hand():
    z = torch.tensor([0.0, 2.0])
    y = torch.tensor([1.0, 0.0])
    p = torch.sigmoid(z)
    expected = 0.25 * (1 - p[0]) ** 2 * -torch.log(p[0]) + 0.75 * p[1] ** 2 * -torch.log(1 - p[1])
    assert sigmoid_focal_loss(z, y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_loss_normalisation():
    """Each loss is its sum over positives (or all locations) over AdelaiDet's normaliser."""
    torch.manual_seed(0)
    fcos = _fcos()
    locs = _locs(fcos)
    out = {"logits": [torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)],
           "bbox_reg": [torch.rand(2, 4, 4, 4) * 2, torch.rand(2, 4, 2, 2) * 2],
           "ctrness": [torch.randn(2, 1, 4, 4), torch.randn(2, 1, 2, 2)]}
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[8.0, 8.0, 30.0, 30.0], [0.0, 0.0, 40.0, 8.0]]), "labels": torch.tensor([0, 2])}]
    losses, pos = fcos.losses(_output(fcos, out), targets)

    # recompute by hand in level-first order
    per_img = [fcos.targets_for_image(locs, t["boxes"], t["labels"]) for t in targets]
    lab, reg, logit, rp, cp = [], [], [], [], []
    for lvl, (lo, n) in enumerate([(0, 16), (16, 4)]):
        for i in range(2):
            lab.append(per_img[i][0][lo:lo + n])
            reg.append(per_img[i][1][lo:lo + n])
            logit.append(out["logits"][lvl][i].flatten(1).t())
            rp.append(out["bbox_reg"][lvl][i].flatten(1).t())
            cp.append(out["ctrness"][lvl][i].flatten())
    lab, reg, logit, rp, cp = map(torch.cat, (lab, reg, logit, rp, cp))
    p = lab != 3
    n_pos = p.sum().item()
    assert n_pos == len(pos.pos_inds) > 0
    onehot = F.one_hot(lab.clamp(max=2), 3).float() * p[:, None]
    ctr = centerness_target(reg[p])
    assert losses["loss_fcos_cls"].item() == pytest.approx(sigmoid_focal_loss(logit, onehot).item() / n_pos, rel=1e-5)
    assert losses["loss_fcos_loc"].item() == pytest.approx(
        giou_loss_ltrb(rp[p], reg[p], ctr).item() / ctr.sum().item(), rel=1e-5)
    assert losses["loss_fcos_ctr"].item() == pytest.approx(
        F.binary_cross_entropy_with_logits(cp[p], ctr, reduction="sum").item() / n_pos, rel=1e-5)
    # the positive record: batch-global GT indices, image indices, levels
    assert pos.loss_denorm.item() == pytest.approx(ctr.sum().item())
    assert set(pos.im_inds.tolist()) == {0, 1}
    assert pos.gt_inds[pos.im_inds == 1].min().item() >= 1  # image 1's GTs come after image 0's one
    assert torch.equal(pos.locations, torch.cat([locs[0], locs[0], locs[1], locs[1]])[pos.pos_inds])
    # what heads need without recomputing FCOS facts: GT class and box, level stride, the location's
    # index in its level, and the predicted box (location -/+ predicted distances times the stride)
    all_boxes = torch.cat([t["boxes"] for t in targets])
    assert torch.equal(pos.gt_boxes, all_boxes[pos.gt_inds])
    assert pos.labels.tolist() == torch.cat([t["labels"] for t in targets])[pos.gt_inds].tolist()
    assert pos.strides.tolist() == [8.0 if lvl == 0 else 16.0 for lvl in pos.fpn_levels.tolist()]
    for lvl in (0, 1):
        sel = pos.fpn_levels == lvl
        assert torch.equal(locs[lvl][pos.loc_inds[sel]], pos.locations[sel])
    d = rp[p] * pos.strides[:, None]
    expected_boxes = torch.stack([pos.locations[:, 0] - d[:, 0], pos.locations[:, 1] - d[:, 1],
                                  pos.locations[:, 0] + d[:, 2], pos.locations[:, 1] + d[:, 3]], 1)
    torch.testing.assert_close(pos.pred_boxes, expected_boxes)
    # the reg targets, mapped back, are the GT boxes
    t = pos.reg_targets * pos.strides[:, None]
    back = torch.stack([pos.locations[:, 0] - t[:, 0], pos.locations[:, 1] - t[:, 1],
                        pos.locations[:, 0] + t[:, 2], pos.locations[:, 1] + t[:, 3]], 1)
    torch.testing.assert_close(back, pos.gt_boxes)


def test_no_positives_gives_finite_losses_with_graph():
    fcos = _fcos()
    out = {"logits": [torch.randn(1, 3, 4, 4, requires_grad=True), torch.randn(1, 3, 2, 2)],
           "bbox_reg": [torch.rand(1, 4, 4, 4, requires_grad=True), torch.rand(1, 4, 2, 2)],
           "ctrness": [torch.randn(1, 1, 4, 4, requires_grad=True), torch.randn(1, 1, 2, 2)]}
    losses, pos = fcos.losses(_output(fcos, out), [{"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0).long()}])
    assert len(pos.pos_inds) == 0
    assert all(torch.isfinite(v) and v.requires_grad for v in losses.values())
    assert losses["loss_fcos_loc"].item() == 0.0


def test_inference_decodes_boxes_and_scores():
    fcos = _fcos(score_thresh=0.05)
    out = {"logits": [torch.full((1, 3, 4, 4), -10.0), torch.full((1, 3, 2, 2), -10.0)],
           "bbox_reg": [torch.ones(1, 4, 4, 4), torch.ones(1, 4, 2, 2)],
           "ctrness": [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]}
    out["logits"][0][0, 2, 1, 1] = 2.0  # point (12, 12), class 2
    out["logits"][0][0, 2, 1, 2] = 1.0  # point (20, 12): its box overlaps the first by IoU 1/3
    out["bbox_reg"][0][0, :, 1, 1] = torch.tensor([0.5, 1.0, 1.5, 2.0])
    dets = fcos.inference(_output(fcos, out), [(32, 32)])[0]
    assert dets["labels"].tolist() == [2, 2]
    assert dets["boxes"][0].tolist() == [8.0, 4.0, 24.0, 28.0]  # (12 - 4, 12 - 8, 12 + 12, 12 + 16)
    assert dets["scores"][0].item() == pytest.approx(math.sqrt(torch.sigmoid(torch.tensor(2.0)).item() * 0.5))
    assert dets["fpn_levels"].tolist() == [0, 0]
    fcos.nms_thresh = 0.3  # now the second box goes
    assert len(fcos.inference(_output(fcos, out), [(32, 32)])[0]["boxes"]) == 1
    fcos.nms_thresh = 0.6
    fcos.post_nms_topk = 1  # the cap keeps the best
    assert fcos.inference(_output(fcos, out), [(32, 32)])[0]["boxes"].tolist() == [[8.0, 4.0, 24.0, 28.0]]
    for no_cap in (0, -1):  # AdelaiDet: a cap of 0 or less keeps everything
        fcos.post_nms_topk = no_cap
        assert len(fcos.inference(_output(fcos, out), [(32, 32)])[0]["boxes"]) == 2


def test_towers_have_biases_and_scales_are_one_element():
    fcos = FCOS(8, 3, num_convs=2, strides=(8, 16), sizes_of_interest=(64,), in_features=("p3", "p4"))
    convs = [m for m in fcos.head.cls_tower.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 2 and all(c.bias is not None for c in convs)
    assert [tuple(s.scale.shape) for s in fcos.head.scales] == [(1,), (1,)]


def _random_batch(seed=0):
    torch.manual_seed(seed)
    out = {"logits": [torch.randn(2, 3, 4, 4), torch.randn(2, 3, 2, 2)],
           "bbox_reg": [torch.rand(2, 4, 4, 4) * 2, torch.rand(2, 4, 2, 2) * 2],
           "ctrness": [torch.randn(2, 1, 4, 4), torch.randn(2, 1, 2, 2)]}
    targets = [{"boxes": torch.tensor([[0.0, 0.0, 16.0, 16.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[8.0, 8.0, 30.0, 30.0], [0.0, 0.0, 40.0, 8.0]]), "labels": torch.tensor([0, 2])}]
    return out, targets


def test_box_quality_iou_by_hand():
    from maskrep.detection.losses import iou_giou_ltrb

    out, targets = _random_batch()
    ref = _fcos()
    fcos = _fcos(box_quality="iou")
    base, pos = ref.losses(_output(fcos, out), targets)
    losses, pos_iou = fcos.losses(_output(fcos, out), targets)
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_quality"}
    assert torch.equal(pos.pos_inds, pos_iou.pos_inds) and losses["loss_fcos_cls"] == base["loss_fcos_cls"]
    p = pos.pos_inds
    reg_pred = FCOS._level_first(out["bbox_reg"], 4)[p]
    ctr_pred = FCOS._level_first(out["ctrness"], 1)[p, 0]
    n = len(p)
    iou, giou = iou_giou_ltrb(reg_pred, pos.reg_targets)
    assert losses["loss_fcos_loc"].item() == pytest.approx((1 - giou).sum().item() / n, rel=1e-6)
    assert losses["loss_fcos_quality"].item() == pytest.approx(
        F.binary_cross_entropy_with_logits(ctr_pred, iou, reduction="sum").item() / n, rel=1e-6)
    with pytest.raises(ValueError, match="box_quality must be 'ctrness' or 'iou', got 'centerness'"):
        _fcos(box_quality="centerness")


def test_class_loss_normalisers():
    out, targets = _random_batch()
    fg = _fcos()
    base, pos = fg.losses(_output(fg, out), targets)
    focal_sum = base["loss_fcos_cls"].item() * len(pos.pos_inds)
    every = _fcos(loss_normalizer_cls="all").losses(_output(fg, out), targets)[0]["loss_fcos_cls"].item()
    assert every == pytest.approx(focal_sum / (2 * (16 + 4)), rel=1e-6)  # all locations of both images
    moving = _fcos(loss_normalizer_cls="moving_fg")
    n = len(pos.pos_inds)
    expected = 100.0
    for _ in range(3):  # the moving average starts at 100 and moves 10% towards the positives per step
        expected = 0.9 * expected + 0.1 * n
        assert moving.losses(_output(fg, out), targets)[0]["loss_fcos_cls"].item() == pytest.approx(focal_sum / expected, rel=1e-6)
    assert moving.state_dict()["moving_num_fg"].item() == pytest.approx(expected)  # checkpoints keep it
    moving.eval()
    moving.losses(_output(fg, out), targets)  # evaluation does not move it
    assert moving.moving_num_fg.item() == pytest.approx(expected)
