"""The demo job: write the synthetic data set, take six codecs at a few code lengths (PCA fitted on
its train split; the learned codec, which trains for minutes, is left out), measure reconstruction
on its val split, and draw the results."""

from __future__ import annotations

import os

import numpy as np

#: The demo's codec grid: (name, params) at small, quick settings.
DEMO_GRID = (
    [("pca", {"mask_size": 28, "dim": d}) for d in (10, 20, 40)]
    + [("svd", {"mask_size": 14, "rank": k}) for k in (1, 2, 3)]
    + [("dct", {"mask_size": 64, "dim": d}) for d in (50, 150, 300)]
    + [("bitmap", {"mask_size": 28, "resolution": r}) for r in (7, 14, 28)]
    + [("polar", {"mask_size": 64, "rays": 36})]
    + [("contour", {"mask_size": 64, "dim": d}) for d in (20, 40, 60)]
)


def run(out_dir: str, *, seed: int = 0, num_train: int = 48, num_val: int = 16) -> list[dict]:
    from PIL import Image

    from ._io import atomic_write, atomic_write_json
    from .codecs import get_codec
    from .data import CocoInstances, crop_instances
    from .data.synthetic import make_synthetic_splits
    from .engine import format_table, plot_rate_distortion, run_grid
    from .ops import paste_masks, rle_to_mask
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
    atomic_write_json(os.path.join(out_dir, "reconstruction.json"), results, indent=2)
    atomic_write(os.path.join(out_dir, "reconstruction.md"), lambda f: f.write(table + "\n"), binary=False)
    plot_rate_distortion(results, os.path.join(out_dir, "rate_distortion.png"))

    # pictures: ground truth, and the pca D=40 and contour D=60 round trips in the image, on the first val images
    pca = next(c for c in codecs if c.name == "pca" and c.code_length == 40)
    contour = next(c for c in codecs if c.name == "contour" and c.code_length == 60)
    pictures, titles = [], []
    for image, insts in val_data.by_image():
        if not insts or len(pictures) >= 9:
            continue
        img = np.asarray(Image.open(val_data.image_path(image["id"])).convert("RGB"))
        boxes = np.stack([i.box for i in insts])
        probs = pca.decode(pca.encode(crop_instances(insts, pca.mask_size)))
        polygons = rle_to_mask(contour.paste_rle(contour.encode(crop_instances(insts, contour.mask_size)), boxes,
                                                 img.shape[:2]))
        pictures.append(overlay_instances(img, np.stack([i.mask() for i in insts]), boxes))
        pictures.append(overlay_instances(img, paste_masks(probs, boxes, img.shape[:2]), boxes))
        pictures.append(overlay_instances(img, polygons, boxes))
        titles += [f"image {image['id']}: ground truth", "pca D=40 round trip", "contour D=60 round trip"]
    save_grid(pictures, os.path.join(out_dir, "examples.png"), titles=titles, columns=3)
    print(f"wrote {out_dir}/reconstruction.md, reconstruction.json, rate_distortion.png, examples.png")
    return results
