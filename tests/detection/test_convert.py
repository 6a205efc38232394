"""AdelaiDet / detectron2 FCOS weights: names and shapes as detectron2 writes them, loaded strictly."""

import pytest
import torch

from maskrep.detection import build_fcos
from maskrep.detection.convert import ADELAIDET_INPUT, adelaidet_fcos_to_maskrep, convert_checkpoint

WIDTH, FPN, CLASSES, CONVS = 4, 8, 3, 2


def _norm(prefix, c, sd):
    for field, value in (("weight", torch.rand(c)), ("bias", torch.randn(c)), ("running_mean", torch.randn(c)),
                         ("running_var", torch.rand(c) + 0.5)):
        sd[f"{prefix}.norm.{field}"] = value


def adelaidet_r50_fcos_state_dict():
    """The keys and shapes of an AdelaiDet FCOS R-50 checkpoint (FrozenBN, stride in the 1x1),
    written out from detectron2's naming: stem, res2..res5 bottlenecks, FPN P3-P5 + P6/P7 top
    block, the FCOS head with GN towers (conv, GN, ReLU per step: indices 0, 1, 3, 4, ...)."""
    g = torch.Generator().manual_seed(0)
    sd = {"backbone.bottom_up.stem.conv1.weight": torch.randn(WIDTH, 3, 7, 7, generator=g)}
    _norm("backbone.bottom_up.stem.conv1", WIDTH, sd)
    cin = WIDTH
    for stage, blocks in zip((2, 3, 4, 5), (3, 4, 6, 3)):
        w = WIDTH * 2 ** (stage - 2)
        for j in range(blocks):
            p = f"backbone.bottom_up.res{stage}.{j}"
            if j == 0:
                sd[f"{p}.shortcut.weight"] = torch.randn(4 * w, cin, 1, 1, generator=g)
                _norm(f"{p}.shortcut", 4 * w, sd)
            for k, shape in ((1, (w, cin if j == 0 else 4 * w, 1, 1)), (2, (w, w, 3, 3)), (3, (4 * w, w, 1, 1))):
                sd[f"{p}.conv{k}.weight"] = torch.randn(*shape, generator=g)
                _norm(f"{p}.conv{k}", shape[0], sd)
            sd[f"{p}.conv1.norm.num_batches_tracked"] = torch.tensor(0)
        cin = 4 * w
    for level, c in ((3, 8 * WIDTH), (4, 16 * WIDTH), (5, 32 * WIDTH)):
        sd[f"backbone.fpn_lateral{level}.weight"] = torch.randn(FPN, c, 1, 1, generator=g)
        sd[f"backbone.fpn_lateral{level}.bias"] = torch.randn(FPN, generator=g)
        sd[f"backbone.fpn_output{level}.weight"] = torch.randn(FPN, FPN, 3, 3, generator=g)
        sd[f"backbone.fpn_output{level}.bias"] = torch.randn(FPN, generator=g)
    for p in ("p6", "p7"):
        sd[f"backbone.top_block.{p}.weight"] = torch.randn(FPN, FPN, 3, 3, generator=g)
        sd[f"backbone.top_block.{p}.bias"] = torch.randn(FPN, generator=g)
    head = "proposal_generator.fcos_head"
    for tower in ("cls_tower", "bbox_tower"):
        for i in range(CONVS):
            sd[f"{head}.{tower}.{3 * i}.weight"] = torch.randn(FPN, FPN, 3, 3, generator=g)
            sd[f"{head}.{tower}.{3 * i}.bias"] = torch.randn(FPN, generator=g)
            sd[f"{head}.{tower}.{3 * i + 1}.weight"] = torch.rand(FPN, generator=g)
            sd[f"{head}.{tower}.{3 * i + 1}.bias"] = torch.randn(FPN, generator=g)
    for name, c in (("cls_logits", CLASSES), ("bbox_pred", 4), ("ctrness", 1)):
        sd[f"{head}.{name}.weight"] = torch.randn(c, FPN, 3, 3, generator=g)
        sd[f"{head}.{name}.bias"] = torch.randn(c, generator=g)
    for i in range(5):
        sd[f"{head}.scales.{i}.scale"] = torch.rand(1, generator=g)
    return sd


def _model():
    return build_fcos(CLASSES, depth=50, width=WIDTH, fpn_channels=FPN, stride_in_1x1=True,
                      fcos={"num_convs": CONVS}, **ADELAIDET_INPUT)


def test_every_tensor_lands_in_place():
    sd = adelaidet_r50_fcos_state_dict()
    converted = adelaidet_fcos_to_maskrep({"model": sd})
    model = _model()
    model.load_state_dict(converted, strict=True)  # every name and shape matches
    state = model.state_dict()
    pairs = {
        "backbone.bottom_up.stem.conv1.norm.running_var": "backbone.bn1.running_var",
        "backbone.bottom_up.res3.0.shortcut.norm.bias": "backbone.layer2.0.downsample.1.bias",
        "backbone.bottom_up.res5.2.conv3.weight": "backbone.layer4.2.conv3.weight",
        "backbone.fpn_lateral4.weight": "fpn.lateral.1.weight",
        "backbone.top_block.p7.bias": "fpn.top.1.bias",
        "proposal_generator.fcos_head.bbox_tower.4.weight": "fcos.head.bbox_tower.4.weight",
        "proposal_generator.fcos_head.scales.3.scale": "fcos.head.scales.3.scale",
    }
    for theirs, ours in pairs.items():
        assert torch.equal(state[ours], sd[theirs]), theirs


def test_stride_in_1x1_and_bgr_input():
    model = _model()
    assert model.backbone.layer2[0].conv1.stride == (2, 2) and model.backbone.layer2[0].conv2.stride == (1, 1)
    rgb = build_fcos(CLASSES, depth=50, width=WIDTH, fpn_channels=FPN, stride_in_1x1=True, fcos={"num_convs": CONVS},
                     pixel_mean=ADELAIDET_INPUT["pixel_mean"], pixel_std=(1.0, 1.0, 1.0))
    rgb.load_state_dict(model.state_dict())  # an RGB-format model fed BGR data by hand
    image = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    a, b = model.features(image), rgb.features(image.flip(1))
    assert list(a) == ["p3", "p4", "p5", "p6", "p7"]
    for k in a:
        torch.testing.assert_close(a[k], b[k])


def test_unplaceable_keys_are_refused(tmp_path):
    sd = adelaidet_r50_fcos_state_dict()
    sd["proposal_generator.fcos_head.share_tower.0.weight"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"1 keys have no place in maskrep's FCOS, e\.g\. \['proposal_generator"):
        adelaidet_fcos_to_maskrep(sd)
    src, dst = tmp_path / "theirs.pth", tmp_path / "ours.pth"
    del sd["proposal_generator.fcos_head.share_tower.0.weight"]
    torch.save({"model": sd, "iteration": 90000}, src)
    assert convert_checkpoint(src, dst) == len([k for k in sd if not k.endswith("num_batches_tracked")]) + 1
    _model().load_state_dict(torch.load(dst, weights_only=True)["model"])
