"""Copy-paste scenes (Ghiasi et al., "Simple Copy-Paste is a Strong Data Augmentation Method for
Instance Segmentation", CVPR 2021): real objects cut from COCO images by their own masks, pasted at
seeded random scale, flip and position, occluding each other, onto backgrounds cut from other real
images. The output is a COCO-format set any COCO tool reads.

Every instance is stored as compressed RLE of its visible part (later objects occlude earlier
ones), with its box from that mask, its visible area, and a ``source`` record (the image and
annotation it was cut from), so that two sets made from disjoint sources are checkably disjoint.
"""

from __future__ import annotations

import os

import numpy as np

from .._io import atomic_write, atomic_write_json
from ..ops.masks import masks_to_boxes
from ..ops.rle import mask_to_rle

__all__ = ["make_copy_paste_coco"]

#: the one category of class-agnostic scenes
OBJECT = {"id": 1, "name": "object", "supercategory": "object"}


def make_copy_paste_coco(annotations, image_dir, out_dir, *, num_images: int = 100, size: int = 320, seed: int = 0,
                         classes: bool = False, objects_per_image: tuple[int, int] = (2, 6),
                         min_object_area: float = 400.0, min_visible: int = 64, split: str = "scenes",
                         progress: bool = True) -> str:
    """Write ``num_images`` scenes of ``size`` x ``size`` and their instances JSON; returns its path.

    Parameters
    ----------
    annotations, image_dir : the COCO set objects and backgrounds are cut from (non-crowd objects
        of at least ``min_object_area`` pixels; every image of the set is a background source).
    out_dir : gets ``<split>/*.jpg`` and ``annotations/instances_<split>.json``.
    seed : the same seed and sources give the same files, byte for byte.
    classes : keep the COCO categories (default: one category, "object").
    objects_per_image : how many objects a scene gets (inclusive range).
    min_visible : an instance left with fewer visible pixels is dropped (it is occluded).
    """
    from PIL import Image
    from tqdm import tqdm

    from .coco import CocoInstances
    from .detection import read_image

    data = CocoInstances(annotations, image_dir=image_dir)
    objects = [i for i in data if i.area >= min_object_area]
    if not objects:
        raise ValueError(f"{annotations}: no non-crowd object of at least {min_object_area:g} pixels to cut")
    backgrounds = sorted(data.images)
    rng = np.random.default_rng(seed)
    images_out, anns_out = [], []
    os.makedirs(os.path.join(out_dir, split), exist_ok=True)
    cache: dict = {}

    def pixels(image_id):
        if image_id not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[image_id] = np.asarray(read_image(data.image_path(image_id)))
        return cache[image_id]

    for k in tqdm(range(num_images), desc=f"copy-paste {split}", disable=not progress):
        bg = pixels(backgrounds[rng.integers(len(backgrounds))])
        h0, w0 = bg.shape[:2]
        side = int(rng.uniform(0.5, 1.0) * min(h0, w0))
        y, x = rng.integers(0, h0 - side + 1), rng.integers(0, w0 - side + 1)
        canvas = np.asarray(Image.fromarray(bg[y : y + side, x : x + side]).resize((size, size), Image.BILINEAR)).copy()
        placed = []  # (full mask, category id, source)
        for _ in range(rng.integers(objects_per_image[0], objects_per_image[1] + 1)):
            inst = objects[rng.integers(len(objects))]
            x0, y0, x1, y1 = (round(float(v)) for v in inst.box)
            x0, y0 = min(max(x0, 0), inst.width - 1), min(max(y0, 0), inst.height - 1)
            x1, y1 = min(max(x1, x0 + 1), inst.width), min(max(y1, y0 + 1), inst.height)
            img, mask = pixels(inst.image_id)[y0:y1, x0:x1], inst.mask()[y0:y1, x0:x1]
            longer = rng.uniform(0.15, 0.6) * size
            scale = longer / max(x1 - x0, y1 - y0)
            nw, nh = max(round((x1 - x0) * scale), 1), max(round((y1 - y0) * scale), 1)
            patch = np.asarray(Image.fromarray(img).resize((nw, nh), Image.BILINEAR))
            pmask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((nw, nh), Image.BILINEAR)) >= 128
            if rng.random() < 0.5:
                patch, pmask = patch[:, ::-1], pmask[:, ::-1]
            px, py = rng.integers(0, size - nw + 1), rng.integers(0, size - nh + 1)
            full = np.zeros((size, size), bool)
            full[py : py + nh, px : px + nw] = pmask
            canvas[full] = patch[pmask]
            placed.append((full, inst.category_id if classes else OBJECT["id"],
                           {"image_id": inst.image_id, "ann_id": inst.ann_id}))
        image_id = k + 1
        name = f"{image_id:012d}.jpg"
        atomic_write(os.path.join(out_dir, split, name), lambda f, c=canvas: Image.fromarray(c).save(f, "JPEG", quality=92))
        images_out.append({"id": image_id, "file_name": name, "height": size, "width": size})
        covered = np.zeros((size, size), bool)
        for full, category, source in reversed(placed):  # the last pasted is on top
            visible = full & ~covered
            covered |= full
            if visible.sum() < min_visible:
                continue
            box = masks_to_boxes(visible[None])[0]
            anns_out.append({"id": len(anns_out) + 1, "image_id": image_id, "category_id": int(category),
                             "segmentation": mask_to_rle(visible), "area": int(visible.sum()),
                             "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
                             "iscrowd": 0, "source": source})
    categories = data.categories if classes else [OBJECT]
    path = os.path.join(out_dir, "annotations", f"instances_{split}.json")
    atomic_write_json(path, {"images": images_out, "annotations": sorted(anns_out, key=lambda a: a["id"]),
                             "categories": categories,
                             "info": {"description": f"copy-paste scenes, seed {seed}",
                                      "source": os.path.abspath(os.fspath(annotations))}})
    return path
