"""Conformance of every mask head in the table: forward, finite losses, gradients to every
parameter, COCO segm output, state-dict round trip. A new head is tested the moment it is listed."""


import numpy as np
import pytest
import torch

from maskrep.codecs import ContourCodec, LearnedCodec, PCACodec, SVDCodec
from maskrep.data.detection import DetectionDataset, collate
from maskrep.detection import build_fcos, list_heads
from maskrep.detection.heads import get_head
from maskrep.engine.evaluation import detections_to_coco
from maskrep.testing import HEAD_CHECKS


def _pca():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:8, 0:8]
    masks = np.stack([(yy - rng.uniform(2, 6)) ** 2 + (xx - rng.uniform(2, 6)) ** 2 < rng.uniform(4, 12)
                      for _ in range(200)])
    return PCACodec(mask_size=8, dim=6).fit(masks)


def _learned():
    masks = np.zeros((40, 8, 8), bool)
    masks[:, 2:6, 1:7] = True
    return LearnedCodec(mask_size=8, dim=4, width=2, epochs=1, batch_size=20).fit(masks)


#: small settings per head (FPN channels 16), with each head's options
SMALL = {
    "blendmask": lambda: {"num_classes": 6, "attn_size": 4, "mask_size": 8, "basis_channels": 8, "basis_convs": 1},
    "blendmask/crmask": lambda: {"num_classes": 6, "attn_size": 4, "mask_size": 8, "basis_channels": 8,
                                 "basis_convs": 1, "attention": "crmask", "rank": 2},
    "embedmask": lambda: {"num_classes": 6, "embed_dim": 5, "branch_channels": 8, "branch_convs": 1},
    "embedmask/few-proposals": lambda: {"num_classes": 6, "embed_dim": 5, "branch_channels": 8, "branch_convs": 1,
                                        "max_proposals": 3, "restrict_to_box": False},
    "centermask": lambda: {"num_classes": 6, "mask_size": 6, "saliency_channels": 8, "saliency_convs": 1},
    "centermask/agnostic": lambda: {"mask_size": 6, "saliency": "agnostic", "saliency_channels": 8,
                                    "saliency_convs": 1, "max_proposals": 3},
    "refinemask": lambda: {"num_classes": 6, "channels": 24, "mask_size": 4, "instance_convs": 1, "semantic_convs": 1,
                           "min_iou": 0.0},
    "refinemask/agnostic": lambda: {"class_agnostic": True, "channels": 24, "mask_size": 4, "instance_convs": 1,
                                    "semantic_convs": 1, "rois_per_image": 2},
    "crmask": lambda: {"codec": SVDCodec(mask_size=6, rank=2)},
    "crmask/reg": lambda: {"codec": SVDCodec(mask_size=6, rank=2, mode="reg")},
    "meinst": lambda: {"codec": _pca(), "num_convs": 1},
    "meinst/mask-loss": lambda: {"codec": _pca(), "num_convs": 1, "loss": "mask"},
    # the coefficient head is codec-agnostic: a contour codec and a learned one, trained on the decoded crop
    "meinst/contour": lambda: {"codec": ContourCodec(mask_size=8, dim=12), "num_convs": 1, "loss": "mask",
                               "code_init": "ellipse"},
    "meinst/learned": lambda: {"codec": _learned(), "num_convs": 1, "loss": "mask", "code_init": "ellipse"},
}


def test_every_head_has_small_params():
    assert set(list_heads()) <= {k.split("/")[0] for k in SMALL}, "add small test settings for the new head"


def _model(name):
    torch.manual_seed(0)
    head = get_head(name.split("/")[0], in_channels=16, **SMALL[name]())
    return build_fcos(6, depth=18, norm="GN", freeze_at=0, width=8, fpn_channels=16, fpn_norm="GN",
                      use_p2="p2" in head.in_features, mask_head=head, fcos={"num_convs": 1})


@pytest.fixture(scope="module")
def batch(synthetic):
    ds = DetectionDataset(*synthetic["train"], min_size=96, max_size=160, with_masks=True, filter_empty=True)
    return ds, collate([ds[0], ds[1]])


@pytest.fixture(params=sorted(SMALL))
def name(request):
    return request.param


@pytest.mark.parametrize("check", HEAD_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
def test_conformance(name, check, batch):
    """maskrep.testing's checks, the ones plugin heads run too, on the data pipeline's batch."""
    _, (images, targets) = batch
    check(lambda: _model(name), images, targets)


def test_checks_run_on_their_own_synthetic_batch():
    from maskrep.testing import check_head

    check_head(lambda: get_head("crmask", in_channels=16, codec=SVDCodec(mask_size=6, rank=2)))


def test_targets_without_masks_say_how_to_get_them(batch):
    _, (images, targets) = batch
    bare = [{k: v for k, v in t.items() if k != "masks"} for t in targets]
    with pytest.raises(ValueError, match=r"targets carry no 'masks' container: build the dataset with with_masks=True"):
        _model("meinst").train()(images, bare)


def test_training_mode_needs_targets(batch):
    _, (images, _) = batch
    with pytest.raises(ValueError, match="training mode and needs targets; call model.eval"):
        _model("crmask").train()(images)


def test_unknown_head_lists_the_table():
    with pytest.raises(KeyError, match="unknown mask head 'meinstt'; valid names: blendmask, centermask, crmask, embedmask, meinst, "
                                     "refinemask"):
        get_head("meinstt")


def test_a_head_that_needs_p2_refuses_an_fpn_without_it():
    head = get_head("refinemask", in_channels=16, **SMALL["refinemask"]())
    with pytest.raises(ValueError, match=r"RefineMaskHead needs FPN levels \('p2', 'p3', 'p4', 'p5'\), but the FPN "
                                         r"gives \('p3', .*p2 missing \(build the FPN with use_p2=True"):
        build_fcos(6, depth=18, norm="GN", freeze_at=0, width=8, fpn_channels=16, use_p2=False, mask_head=head)


def test_refinemask_merge_replaces_only_the_band():
    from maskrep.detection.heads.refinemask import merge_stages

    coarse = torch.full((1, 4, 4), -5.0)
    coarse[0, 1:3, 1:3] = 5.0  # a 2 x 2 object in a 4 x 4 map
    fine = torch.full((1, 8, 8), 7.0)  # the finer stage says "object" everywhere
    merged = merge_stages([coarse, fine], width=1)
    up = torch.nn.functional.interpolate(coarse[:, None], size=(8, 8), mode="bilinear", align_corners=True)[0, 0]
    # with width 1 every pixel of the coarse map is within one of the contour: the band, up-sampled
    # and >= 0.5, covers all of the 8 x 8 map here, so the fine stage wins everywhere
    assert torch.equal(merged[0], fine[0])
    big = torch.full((1, 8, 8), -5.0)
    big[0, 2:6, 2:6] = 5.0
    merged = merge_stages([big, torch.full((1, 16, 16), 7.0)], width=1)
    up = torch.nn.functional.interpolate(big[:, None], size=(16, 16), mode="bilinear", align_corners=True)[0, 0]
    far = merged[0, :2, :2]  # far from the contour: the coarse logits, up-sampled
    assert torch.equal(far, up[:2, :2]) and (merged[0] == 7.0).any()


def test_meinst_code_init():
    codec = ContourCodec(mask_size=8, dim=12)
    head = get_head("meinst", in_channels=16, codec=codec, num_convs=1, code_init="ellipse")
    decoded = codec.decode(head.mask_pred.bias.detach()[None].numpy())[0] >= 0.5
    assert decoded[4, 4] and decoded[1, 4] and not decoded[0, 0]  # a shape filling the box, corners left out
    assert torch.equal(get_head("meinst", in_channels=16, codec=_pca(), num_convs=1).mask_pred.bias, torch.zeros(6))
    with pytest.raises(ValueError, match="code_init must be 'zero' or 'ellipse', got 'disc'"):
        get_head("meinst", in_channels=16, codec=codec, code_init="disc")


@pytest.mark.parametrize("name", ["meinst/contour"])
def test_contour_codec_head_masks_are_its_codecs_polygon_fill(name, batch):
    """The head's masks at image resolution are the codec's decoded polygons filled in the image
    (pycocotools' rule), not a resampled S x S map: what ``maskrep reconstruct`` measures."""
    from maskrep.detection.postprocess import masks_in_image, scale_boxes
    from maskrep.ops import polygons_to_masks, rle_to_mask

    ds, (images, targets) = batch
    model = _model(name).eval()
    model.fcos.score_thresh = 0.0
    with torch.no_grad():
        det = model(images, image_sizes=[t["size"] for t in targets])[0]
    t, mask = targets[0], det["mask"]
    assert mask.frame == "codes" and mask.maps.shape == (len(det["boxes"]), 12)
    codec = model.mask_head.codec
    boxes = scale_boxes(det["boxes"], t["size"], t["orig_size"])  # (n, 4) in the original image
    polys = codec.decode_polygons(mask.maps)  # (n, P, 2) box units
    in_image = boxes[:, None, :2] + polys * (boxes[:, None, 2:] - boxes[:, None, :2])
    expected = polygons_to_masks([[p] for p in in_image], *t["orig_size"])
    got = masks_in_image(mask, det["boxes"], t["size"], t["orig_size"])
    assert expected.any() and np.array_equal(got, expected)
    rles = [r["segmentation"] for r in detections_to_coco(det, t, ds.category_ids)]
    assert np.array_equal(np.stack([rle_to_mask(r) for r in rles]), expected)
