"""End-to-end regression: FCOS on a fixed input gives the recorded losses and detections.

Weights are set from each tensor's name (not from construction order), so the record survives
refactoring that keeps the parameter names. Re-record with ``MASKREP_ACCEPT=1`` only when a change
of outputs is intended.
"""

import json
import os
import zlib
from pathlib import Path

import pytest
import torch

from maskrep.detection import build_fcos

EXPECT = Path(__file__).resolve().parents[1] / "expect"


def named_init(model: torch.nn.Module) -> None:
    """Fill every parameter and float buffer from a generator seeded by its name."""
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if not t.is_floating_point() or name.endswith("moving_num_fg"):
                continue
            g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
            if name.endswith(("running_var", "weight", "scale", "bbox_pred.bias")) and t.dim() == 1:
                t.copy_(1.0 + 0.1 * torch.rand(t.shape, generator=g))  # norms, scales, box sizes near 1
            else:
                fan_in = max(t[0].numel(), 1) if t.dim() > 1 else 1
                t.copy_(torch.randn(t.shape, generator=g) / fan_in**0.5)


def tiny_fcos():
    model = build_fcos(3, depth=18, norm="GN", freeze_at=0, width=8, fpn_channels=16, fpn_norm="GN",
                       fcos={"num_convs": 1, "post_nms_topk": 8, "score_thresh": 0.01})
    named_init(model)
    return model


def fixed_batch():
    g = torch.Generator().manual_seed(7)
    images = torch.randint(0, 256, (2, 3, 64, 96), generator=g, dtype=torch.uint8)
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 40.0, 50.0], [30.0, 2.0, 90.0, 30.0]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[10.0, 10.0, 60.0, 60.0]]), "labels": torch.tensor([1])}]
    return images, targets


def check_expected(name: str, record: dict) -> None:
    path = EXPECT / f"{name}.json"
    if os.environ.get("MASKREP_ACCEPT") == "1":
        text = json.dumps(record, indent=1)
        assert len(text) < 50_000, "expected files over 50 KB are refused"
        path.write_text(text)
    expected = json.loads(path.read_text())
    assert expected.keys() == record.keys()
    for key, value in expected.items():
        assert record[key] == pytest.approx(value, rel=1e-5, abs=1e-6), key


def fcos_record(model, images, targets):
    model.train()
    losses = model(images, targets)
    model.eval()
    with torch.no_grad():
        dets = model(images)
    record = {k: float(v.detach()) for k, v in sorted(losses.items())}
    for i, d in enumerate(dets):
        record[f"boxes_{i}"] = d["boxes"].flatten().tolist()
        record[f"scores_{i}"] = d["scores"].tolist()
        record[f"labels_{i}"] = d["labels"].tolist()
    return record


def test_fcos_outputs_match_the_record():
    torch.manual_seed(0)
    check_expected("fcos_tiny", fcos_record(tiny_fcos(), *fixed_batch()))
