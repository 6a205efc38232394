"""ResNet names and loading, FrozenBN, FPN shapes, the whole detector forward."""

import pytest
import torch

from maskrep.detection import FPN, FrozenBatchNorm2d, ResNet, build_fcos, load_backbone_weights

# A sample of torchvision's resnet50 state-dict keys.
TORCHVISION_R50_KEYS = [
    "conv1.weight", "bn1.weight", "bn1.running_var", "layer1.0.conv1.weight", "layer1.0.bn3.bias",
    "layer1.0.downsample.0.weight", "layer1.0.downsample.1.running_mean", "layer3.5.conv2.weight",
    "layer4.2.bn3.weight",
]


def test_torchvision_names_and_counts():
    keys = set(ResNet(50, norm="BN").state_dict())
    assert set(TORCHVISION_R50_KEYS) <= keys
    # torchvision's resnet50 has 320 entries with fc.weight and fc.bias; we have no fc
    assert len(keys) == 318
    assert "layer2.1.conv1.weight" in ResNet(18, norm="BN").state_dict()


def test_weights_file_loads_into_frozen_bn(tmp_path):
    torch.manual_seed(0)
    src = ResNet(18, norm="BN")
    for m in src.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    state = dict(src.state_dict())
    state["fc.weight"] = torch.zeros(1000, 512)  # ImageNet classifier: ignored
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    dst = ResNet(18, norm="FrozenBN", freeze_at=2)
    assert load_backbone_weights(dst, path) == []
    src.eval()
    x = torch.rand(1, 3, 64, 64)
    for a, b in zip(src(x), dst(x)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    with pytest.raises(FileNotFoundError, match="backbone weights not found"):
        load_backbone_weights(dst, tmp_path / "missing.pth")


def test_freeze_at():
    r = ResNet(18, norm="FrozenBN", freeze_at=2)
    assert not r.conv1.weight.requires_grad and not r.layer1[0].conv1.weight.requires_grad
    assert r.layer2[0].conv1.weight.requires_grad
    assert all(p.requires_grad for p in ResNet(18, freeze_at=0).parameters())
    assert not any(isinstance(b, torch.nn.Parameter) for b in FrozenBatchNorm2d(4).buffers())


def test_fpn_levels_and_strides():
    r = ResNet(18, norm="GN", width=16)
    feats = r(torch.rand(1, 3, 128, 96))
    assert [f.shape[-1] for f in feats] == [24, 12, 6, 3]
    fpn = FPN(r.out_channels, 32)
    outs = fpn(feats)
    assert fpn.strides == [8, 16, 32, 64, 128]
    assert [tuple(o.shape[-2:]) for o in outs] == [(16, 12), (8, 6), (4, 3), (2, 2), (1, 1)]
    fpn2 = FPN(r.out_channels, 32, use_p2=True)
    assert fpn2.strides[0] == 4 and fpn2(feats)[0].shape[-2:] == (32, 24)


def test_detector_train_and_eval_step():
    torch.manual_seed(0)
    model = build_fcos(3, depth=18, norm="GN", freeze_at=0, width=8, fpn_channels=16, fcos={"num_convs": 1})
    images = torch.randint(0, 255, (2, 3, 64, 96), dtype=torch.uint8)
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.long)}]
    losses = model(images, targets)
    assert set(losses) == {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"}
    sum(losses.values()).backward()
    assert model.fcos.head.cls_logits.weight.grad is not None
    model.eval()
    dets = model(images, image_sizes=[(64, 90), (60, 96)])
    assert len(dets) == 2 and dets[0]["boxes"].shape[1] == 4
    with pytest.raises(ValueError, match="multiple of 32"):
        model(images[..., :50])
