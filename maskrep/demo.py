"""The demo job: synthetic data -> crops -> paste back -> quality figures and pictures."""

from __future__ import annotations

import json
import os

import numpy as np


def run(out_dir: str, *, seed: int = 0, num_train: int = 48, num_val: int = 16) -> dict:
    from PIL import Image

    from .data import CocoInstances, crop_instances
    from .data.synthetic import make_synthetic_splits
    from .ops import mask_iou, paste_masks
    from .viz import overlay_instances, save_grid

    os.makedirs(out_dir, exist_ok=True)
    splits = make_synthetic_splits(os.path.join(out_dir, "data"), num_train=num_train, num_val=num_val, seed=seed)
    print(f"synthetic data: {splits['train'][0]}, {splits['val'][0]}")
    val = CocoInstances(splits["val"][0], image_dir=splits["val"][1])
    summary: dict = {}
    pictures, titles = [], []
    for image, insts in val.by_image():
        if len(pictures) < 3 and insts:
            img = np.asarray(Image.open(val.image_path(image["id"])).convert("RGB"))
            masks = np.stack([i.mask() for i in insts])
            boxes = np.stack([i.box for i in insts])
            pictures.append(overlay_instances(img, masks, boxes))
            titles.append(f"image {image['id']}: {len(insts)} instances")
    instances = list(val)
    print(f"val: {len(instances)} instances, {val.summary()}")
    for size in (28, 56):
        crops = crop_instances(instances, size)
        ious = []
        for inst, crop in zip(instances, crops):
            pasted = paste_masks(crop[None].astype(np.float32), inst.box[None], (inst.height, inst.width))
            ious.append(float(mask_iou(pasted, inst.mask()[None])[0]))
        summary[f"crop_paste_iou_{size}"] = float(np.mean(ious))
        print(f"crop {size}x{size} then paste: mean full-image IoU {np.mean(ious):.4f}")
    save_grid(pictures, os.path.join(out_dir, "instances.png"), titles=titles)
    with open(os.path.join(out_dir, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(f"wrote {out_dir}/summary.json and {out_dir}/instances.png")
    return summary
