"""The two-stage recipe of docs/integrations.md, executed: a Mask R-CNN-style mask branch (a small
backbone, maskrep's roi_align on the proposals, CodecMaskPredictor) trained with a PCA, a DCT and a
contour codec on synthetic shapes; the loss falls and the decoded masks beat an untrained
predictor's by a wide margin."""

import numpy as np
import pytest
import torch
from torch import nn

from maskrep.codecs import get_codec
from maskrep.integrations import CodecMaskPredictor, codec_loss, codec_targets, loss_kind
from maskrep.ops import binarize, mask_iou, roi_align


def _shapes(n_images: int, seed: int, size: int = 64):
    """Images with 3 bright right triangles each (one of four orientations, so the image says which)
    and their (N, H, W) masks, boxes and image indices."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    images = np.zeros((n_images, 3, size, size), np.float32)
    masks, boxes, owners = [], [], []
    for i in range(n_images):
        images[i] = rng.normal(60, 20, (1, size, size))
        for _ in range(3):
            x0, y0 = rng.uniform(2, size - 26, 2)
            w, h = rng.uniform(12, 24, 2)
            u, v = (xx - x0) / w, (yy - y0) / h
            inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
            corner = rng.integers(4)
            tri = inside & [(u + v <= 1), (u >= v), (u + v >= 1), (u <= v)][corner]
            images[i, :, tri] += 150
            masks.append(tri)
            boxes.append([x0, y0, x0 + w, y0 + h])
            owners.append(i)
    return (torch.from_numpy(images), np.stack(masks), torch.tensor(boxes, dtype=torch.float32),
            torch.tensor(owners))


class TwoStage(nn.Module):
    """A small backbone (stride 2) and the mask branch on RoIs: what Mask R-CNN's mask head sees."""

    def __init__(self, codec):
        super().__init__()
        self.backbone = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU())
        self.predictor = CodecMaskPredictor(codec, in_channels=16, roi_size=14, num_convs=2, hidden=32)

    def forward(self, images, boxes, owners):
        feats = self.backbone(images / 255.0)
        rois = torch.cat([owners[:, None].float(), boxes], 1)
        return self.predictor(roi_align(feats, rois, 14, spatial_scale=0.5, sampling_ratio=2, aligned=True))


def _decoded_iou(model, images, masks, boxes, owners) -> float:
    with torch.no_grad():
        probs = model.predictor.probabilities(model(images, boxes, owners))
    crops = codec_targets(model.predictor.codec, masks, boxes)["crops"].bool().numpy()
    return float(mask_iou(binarize(probs.numpy()), crops).mean())


@pytest.mark.parametrize("spec", ["pca", "dct", "contour"])
def test_two_stage_mask_branch_learns_with_a_codec(spec):
    torch.manual_seed(0)
    train, test = _shapes(24, seed=1), _shapes(8, seed=2)
    crops = codec_targets(get_codec("bitmap", mask_size=28), train[1], train[2])["crops"].bool().numpy()
    codec = {"pca": lambda: get_codec("pca", mask_size=28, dim=20).fit(crops),
             "dct": lambda: get_codec("dct", mask_size=28, dim=60),
             "contour": lambda: get_codec("contour", mask_size=28, dim=24)}[spec]()
    assert loss_kind(codec) == ("mask" if spec == "contour" else "codes")
    model = TwoStage(codec)
    untrained = _decoded_iou(model, *test)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    images, masks, boxes, owners = train
    losses = []
    g = torch.Generator().manual_seed(0)
    for step in range(150):
        pick = torch.randperm(len(images), generator=g)[:6]
        keep = torch.isin(owners, pick)
        remap = torch.full((len(images),), -1, dtype=torch.long)
        remap[pick] = torch.arange(len(pick))
        jitter = (torch.rand(int(keep.sum()), 4, generator=g) - 0.5) * 2.0  # proposals near the GT boxes
        b = boxes[keep] + jitter
        targets = codec_targets(codec, masks[keep.numpy()], b)
        loss = codec_loss(model.predictor, model(images[pick], b, remap[owners[keep]]), targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    trained = _decoded_iou(model, *test)
    print(f"{spec}: mask loss {np.mean(losses[:5]):.4f} -> {np.mean(losses[-20:]):.4f}; decoded IoU on unseen "
          f"images {untrained:.3f} untrained -> {trained:.3f} trained")
    assert np.mean(losses[-20:]) < 0.6 * np.mean(losses[:5]), (losses[:5], losses[-20:])
    assert trained > untrained + 0.15 and trained > 0.7, (untrained, trained)


def test_targets_from_bitmaps_polygons_and_rle_agree():
    from maskrep.ops import mask_to_rle

    m = np.zeros((2, 20, 30), bool)
    m[0, 2:10, 3:15] = True
    m[1, 8:18, 10:28] = True
    boxes = torch.tensor([[3.0, 2.0, 15.0, 10.0], [10.0, 8.0, 28.0, 18.0]])
    polygons = [[[3, 2, 15, 2, 15, 10, 3, 10]], [[10, 8, 28, 8, 28, 18, 10, 18]]]
    codec = get_codec("dct", mask_size=8, dim=10)
    a = codec_targets(codec, m, boxes)
    b = codec_targets(codec, polygons, boxes)
    c = codec_targets(codec, mask_to_rle(m), boxes)
    assert torch.equal(a["crops"], b["crops"]) and torch.equal(a["crops"], c["crops"]) and a["crops"].all()
    assert torch.allclose(a["codes"], c["codes"])


def test_torchvision_maskrcnn_recipe_runs_where_torchvision_is():
    pytest.importorskip("torchvision", reason="torchvision cannot be installed beside the CPU torch here; the GPU "
                                              "run (python -m benchmarks.gpu) executes this recipe")
    from maskrep.integrations import torchvision_codec_maskrcnn

    model = torchvision_codec_maskrcnn(get_codec("dct", mask_size=28, dim=60), num_classes=3)
    images = [torch.rand(3, 96, 128)]
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 60.0, 70.0]]), "labels": torch.tensor([1]),
                "masks": torch.zeros(1, 96, 128, dtype=torch.uint8)}]
    targets[0]["masks"][0, 10:70, 10:60] = 1
    losses = model(images, targets)
    assert "loss_mask" in losses and torch.isfinite(losses["loss_mask"])
    model.eval()
    out = model(images)
    assert "masks" in out[0]
