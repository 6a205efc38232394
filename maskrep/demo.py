"""The demo job: write the synthetic data set, fit every codec on its train split at a few code
lengths, measure reconstruction on its val split, and draw the results."""

from __future__ import annotations

import json
import os

import numpy as np

#: The demo's codec grid: (name, params) at small, quick settings.
DEMO_GRID = (
    [("pca", {"mask_size": 28, "dim": d}) for d in (10, 20, 40)]
    + [("svd", {"mask_size": 14, "rank": k}) for k in (1, 2, 3)]
    + [("dct", {"mask_size": 64, "dim": d}) for d in (50, 150, 300)]
    + [("bitmap", {"mask_size": 28, "resolution": r}) for r in (7, 14, 28)]
)


def run(out_dir: str, *, seed: int = 0, num_train: int = 48, num_val: int = 16) -> list[dict]:
    from PIL import Image

    from .codecs import get_codec
    from .data import CocoInstances, crop_instances
    from .data.synthetic import make_synthetic_splits
    from .engine import format_table, plot_rate_distortion, run_grid
    from .ops import paste_masks
    from .viz import overlay_instances, save_grid

    os.makedirs(out_dir, exist_ok=True)
    splits = make_synthetic_splits(os.path.join(out_dir, "data"), num_train=num_train, num_val=num_val, seed=seed)
    train_data = CocoInstances(splits["train"][0], image_dir=splits["train"][1])
    val_data = CocoInstances(splits["val"][0], image_dir=splits["val"][1])
    train, val = list(train_data), list(val_data)
    print(f"synthetic data in {out_dir}/data: train {len(train)} instances ({train_data.summary()}), "
          f"val {len(val)} ({val_data.summary()})")

    codecs = [get_codec(name, **params) for name, params in DEMO_GRID]
    results = run_grid(codecs, train, val)
    table = format_table(results)
    print(table)
    with open(os.path.join(out_dir, "reconstruction.json"), "w") as f:
        json.dump(results, f, indent=2)
    with open(os.path.join(out_dir, "reconstruction.md"), "w") as f:
        f.write(table + "\n")
    plot_rate_distortion(results, os.path.join(out_dir, "rate_distortion.png"))

    # pictures: ground truth, and the pca D=40 reconstruction pasted back, on the first val images
    codec = next(c for c in codecs if c.name == "pca" and c.code_length == 40)
    pictures, titles = [], []
    for image, insts in val_data.by_image():
        if not insts or len(pictures) >= 4:
            continue
        img = np.asarray(Image.open(val_data.image_path(image["id"])).convert("RGB"))
        boxes = np.stack([i.box for i in insts])
        probs = codec.decode(codec.encode(crop_instances(insts, codec.mask_size)))
        pictures.append(overlay_instances(img, np.stack([i.mask() for i in insts]), boxes))
        pictures.append(overlay_instances(img, paste_masks(probs, boxes, img.shape[:2]), boxes))
        titles += [f"image {image['id']}: ground truth", f"image {image['id']}: pca D=40 round trip"]
    save_grid(pictures, os.path.join(out_dir, "examples.png"), titles=titles, columns=2)
    print(f"wrote {out_dir}/reconstruction.md, reconstruction.json, rate_distortion.png, examples.png")
    return results
