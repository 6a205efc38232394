"""The conformance checks every codec and every mask head passes, importable by plugin authors.

maskrep's own test suite runs them on every registered codec and head; a plugin's suite runs them on
its own::

    from maskrep.testing import check_codec, check_head
    check_codec(MyCodec(mask_size=16).fit(masks), folder=tmp_path)       # raises AssertionError on a fault
    check_head(lambda: MyHead(in_channels=16, num_classes=6))

Each ``check_*`` raises ``AssertionError`` (or the error the codec or head raised) naming what failed.
"""

from __future__ import annotations

import copy
import os
import tempfile

import numpy as np
import torch

__all__ = ["CODEC_CHECKS", "HEAD_CHECKS", "check_codec", "check_head", "disc_masks", "perturbed_detections",
           "small_detector", "synthetic_batch"]


def disc_masks(n: int, size: int, seed: int = 0) -> np.ndarray:
    """(n, S, S) bool discs of random centres and radii: simple shapes every codec should keep."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.zeros((n, size, size), bool)
    for i in range(n):
        cy, cx = rng.uniform(2, size - 2, 2)
        r = rng.uniform(2, size / 2)
        out[i] = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
    return out


# ---- codecs ----------------------------------------------------------------------------------------


def check_shapes(codec, folder=None) -> None:
    s, masks = codec.mask_size, disc_masks(7, codec.mask_size)
    codes = codec.encode(masks)
    assert isinstance(codes, np.ndarray) and codes.shape == (7, codec.code_length), codes.shape
    assert codes.dtype == np.float32, codes.dtype
    probs = codec.decode(codes)
    assert probs.shape == (7, s, s) and probs.dtype == np.float32, (probs.shape, probs.dtype)
    assert probs.min() >= 0 and probs.max() <= 1, "decoded probabilities must lie in [0, 1]"


def check_round_trip(codec, folder=None, min_iou: float = 0.8) -> None:
    from .ops import binarize, mask_iou

    masks = disc_masks(50, codec.mask_size, seed=3)
    iou = mask_iou(binarize(codec.decode(codec.encode(masks))), masks).mean()
    assert iou > min_iou, f"round-trip IoU {iou:.3f} on discs, below {min_iou}"


def check_deterministic(codec, folder=None) -> None:
    masks = disc_masks(5, codec.mask_size)
    a, b = codec.encode(masks), codec.encode(masks)
    assert np.array_equal(a, b), "two encodings of the same masks differ"
    single = np.concatenate([codec.encode(masks[i : i + 1]) for i in range(5)])
    np.testing.assert_allclose(single, a, rtol=1e-5, atol=1e-5, err_msg="one at a time differs from the batch")


def check_empty_batch(codec, folder=None) -> None:
    s = codec.mask_size
    assert codec.encode(np.zeros((0, s, s), bool)).shape == (0, codec.code_length)
    assert codec.decode(np.zeros((0, codec.code_length), np.float32)).shape == (0, s, s)


def check_numpy_torch(codec, folder=None) -> None:
    masks = disc_masks(4, codec.mask_size)
    t = torch.from_numpy(masks)
    codes_t = codec.encode(t)
    assert isinstance(codes_t, torch.Tensor) and codes_t.device == t.device, "a tensor in gives a tensor out"
    np.testing.assert_allclose(codes_t.numpy(), codec.encode(masks), rtol=1e-6, atol=1e-6)
    probs_t = codec.decode(codes_t)
    assert isinstance(probs_t, torch.Tensor)
    np.testing.assert_allclose(probs_t.numpy(), codec.decode(codec.encode(masks)), rtol=1e-6, atol=1e-6)


def check_differentiable(codec, folder=None) -> None:
    """The torch module's decode has correct gradients (``gradcheck`` in float64)."""
    module = copy.deepcopy(codec.module()).double()
    codes = torch.from_numpy(codec.encode(disc_masks(3, codec.mask_size))).double()
    # a generic point: off the clamp's kinks at exactly 0 and 1, and off the ties of grid-symmetric
    # shapes (two boundary segments equally near a pixel centre), where a gradient has a kink
    noise = torch.rand(codes.shape, generator=torch.Generator().manual_seed(0), dtype=codes.dtype)
    codes = (0.9 * codes + 0.05 + 0.01 * noise).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda c: module(c), (codes,), eps=1e-6, atol=1e-5)


def check_save_load(codec, folder=None) -> None:
    from .codecs import load

    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        path = os.path.join(tmp, f"{codec.name}.npz")
        codec.save(path)
        again = load(path)
    assert type(again) is type(codec) and again.params == codec.params and again.name == codec.name
    for key, value in codec.state_dict().items():
        np.testing.assert_array_equal(again.state_dict()[key], value, err_msg=key)
    masks = disc_masks(6, codec.mask_size)
    np.testing.assert_array_equal(again.encode(masks), codec.encode(masks))


def check_bad_input(codec, folder=None) -> None:
    s = codec.mask_size
    for bad, kind in ((np.zeros((2, s + 1, s), bool), ValueError), (np.zeros((2, s, s), np.uint8), TypeError)):
        try:
            codec.encode(bad)
        except kind:
            pass
        else:
            raise AssertionError(f"encode took {bad.dtype} {bad.shape} without a {kind.__name__}")
    try:
        codec.decode(np.zeros((2, codec.code_length + 1), np.float32))
    except ValueError:
        pass
    else:
        raise AssertionError("decode took codes of the wrong length")


CODEC_CHECKS = (check_shapes, check_round_trip, check_deterministic, check_empty_batch, check_numpy_torch,
                check_differentiable, check_save_load, check_bad_input)


def check_codec(codec, folder=None) -> None:
    """Every codec check on a fitted (or fit-free) codec; ``folder`` holds the save/load files."""
    for check in CODEC_CHECKS:
        check(codec, folder)


# ---- mask heads -----------------------------------------------------------------------------------


def synthetic_batch(batch: int = 2, height: int = 96, width: int = 128, *, num_classes: int = 6, instances: int = 4,
                    device="cpu", seed: int = 0):
    """(B, 3, H', W') uint8 images padded to 32 and their targets (boxes, labels, polygon
    ``masks``, sizes): ellipses of random size, what a head's checks train and predict on."""
    from .structures import InstanceMasks

    rng = np.random.default_rng(seed)
    hp, wp = -(-height // 32) * 32, -(-width // 32) * 32
    images = torch.zeros((batch, 3, hp, wp), dtype=torch.uint8)
    images[:, :, :height, :width] = torch.from_numpy(rng.integers(0, 255, (batch, 3, height, width), dtype=np.uint8))
    targets = []
    t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    for i in range(batch):
        x0, y0 = rng.uniform(0, width * 0.6, instances), rng.uniform(0, height * 0.6, instances)
        x1 = x0 + rng.uniform(width * 0.1, width * 0.4, instances)
        y1 = y0 + rng.uniform(height * 0.1, height * 0.4, instances)
        boxes = np.stack([x0, y0, x1, y1], 1)
        polys = [[np.stack([(a + c) / 2 + (c - a) / 2 * np.cos(t), (b + d) / 2 + (d - b) / 2 * np.sin(t)], 1)]
                 for a, b, c, d in boxes]
        targets.append({"boxes": torch.tensor(boxes, dtype=torch.float32, device=device),
                        "labels": torch.tensor(rng.integers(0, num_classes, instances), device=device),
                        "masks": InstanceMasks(polys, (height, width)), "size": (height, width),
                        "orig_size": (height, width), "image_id": i + 1, "flipped": False})
    return images.to(device), targets


def small_detector(head, num_classes: int = 6):
    """A narrow FCOS (ResNet-18 of width 8, FPN of ``head``'s input width, one conv per tower) around
    ``head``, seeded; P2 added when the head reads it."""
    from .detection import build_fcos

    channels = getattr(head, "in_channels", None) or 16
    torch.manual_seed(0)
    return build_fcos(num_classes, depth=18, norm="GN", freeze_at=0, width=8, fpn_channels=channels, fpn_norm="GN",
                      use_p2="p2" in head.in_features, mask_head=head, fcos={"num_convs": 1})


def check_losses_and_gradients(make_model, images, targets) -> None:
    """Finite scalar losses in training, and a gradient into every trainable head parameter."""
    model = make_model().train()
    losses = model(images, targets)
    assert {"loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"} <= set(losses) and len(losses) > 3, sorted(losses)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values()), losses
    sum(losses.values()).backward()
    missing = [n for n, p in model.mask_head.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing, f"no gradient reaches {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def check_no_instances(make_model, images, targets) -> None:
    """A batch without instances still gives finite losses tied to the graph."""
    model = make_model().train()
    empty = [dict(t, boxes=t["boxes"][:0], labels=t["labels"][:0], masks=t["masks"][[]]) for t in targets]
    losses = model(images, empty)
    assert all(torch.isfinite(v) and v.requires_grad for v in losses.values()), losses


def check_prediction_and_state_dict(make_model, images, targets) -> None:
    """Every detection gets its mask, which becomes a COCO RLE at the original size; the state dict
    round-trips to the same outputs."""
    import pycocotools.mask as mask_utils

    from .detection.heads import MaskMaps
    from .engine.evaluation import detections_to_coco

    model = make_model().eval()
    model.fcos.score_thresh = 0.0  # an untrained model: keep every candidate
    with torch.no_grad():
        dets = model(images, image_sizes=[t["size"] for t in targets])
    assert all(isinstance(d["mask"], MaskMaps) and len(d["mask"].maps) == len(d["boxes"]) > 0 for d in dets)
    results = detections_to_coco(dets[0], targets[0], list(range(1, 100)))
    seg = results[0]["segmentation"]
    assert seg["size"] == list(targets[0]["orig_size"]) and isinstance(seg["counts"], str)
    assert mask_utils.decode({"size": seg["size"], "counts": seg["counts"].encode()}).shape == tuple(targets[0]["orig_size"])
    again = make_model()
    with torch.no_grad():
        for p in again.parameters():
            p.add_(1.0)  # differ first
    again.load_state_dict(copy.deepcopy(model.state_dict()))
    again.eval()
    again.fcos.score_thresh = 0.0
    with torch.no_grad():
        dets2 = again(images, image_sizes=[t["size"] for t in targets])
    for a, b in zip(dets, dets2):
        assert torch.equal(a["boxes"], b["boxes"]) and torch.equal(a["mask"].maps, b["mask"].maps)


HEAD_CHECKS = (check_losses_and_gradients, check_no_instances, check_prediction_and_state_dict)


def check_head(make_head, images=None, targets=None) -> None:
    """Every head check: ``make_head()`` builds a fresh head (FPN width 16 unless it says otherwise
    in ``in_channels``); the batch defaults to :func:`synthetic_batch`."""
    if images is None:
        images, targets = synthetic_batch()
    for check in HEAD_CHECKS:
        check(lambda: small_detector(make_head()), images, targets)


# ---- COCO evaluation ------------------------------------------------------------------------------


def perturbed_detections(annotations, *, images: int | None = None, per_image: int = 100, seed: int = 0,
                         score_decimals: int = 3) -> tuple[list[int], list[dict]]:
    """(image ids, COCO results) to evaluate against a COCO set: each non-crowd GT mask shifted by up
    to 6 px (15% with another category), then rectangles of random categories up to ``per_image``
    detections an image, each with its mask's box and a rounded score (ties happen); the first
    ``images`` images (all when None). What evaluators are compared on."""
    import json

    from .data import CocoInstances
    from .ops import mask_to_rle

    with open(annotations, encoding="utf-8") as f:
        doc = json.load(f)
    picked = doc["images"] if images is None else doc["images"][:images]
    by_image: dict = {}
    for inst in CocoInstances(annotations):
        by_image.setdefault(inst.image_id, []).append(inst)
    cats = [c["id"] for c in doc["categories"]]
    rng = np.random.default_rng(seed)
    results = []
    for im in picked:
        h, w = im["height"], im["width"]
        masks = [(np.roll(i.mask(), tuple(rng.integers(-6, 7, 2)), (0, 1)),
                  i.category_id if rng.random() < 0.85 else int(rng.choice(cats))) for i in by_image.get(im["id"], [])]
        while len(masks) < per_image:
            x0, y0 = rng.integers(0, w - 10), rng.integers(0, h - 10)
            m = np.zeros((h, w), bool)
            m[y0 : y0 + rng.integers(5, 200), x0 : x0 + rng.integers(5, 200)] = True
            masks.append((m, int(rng.choice(cats))))
        for m, c in masks[:per_image]:
            ys, xs = np.nonzero(m)
            results.append({"image_id": im["id"], "category_id": c, "segmentation": mask_to_rle(m),
                            "bbox": [float(xs.min()), float(ys.min()), float(np.ptp(xs) + 1), float(np.ptp(ys) + 1)],
                            "score": float(np.round(rng.random(), score_decimals))})
    return [im["id"] for im in picked], results
