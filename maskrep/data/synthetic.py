"""A seeded generator of COCO-format instance data, for tests and the demo.

Shapes: ellipses, convex and concave polygons, stars, rings with holes, thin bars; several per
image, overlapping, later ones occluding earlier ones, on textured backgrounds. The output is an
image folder plus an instances JSON that :class:`maskrep.data.CocoInstances` reads like real COCO:

- unoccluded polygonal shapes are stored as polygon lists (xywh box = polygon extent, clipped);
- rings (they have holes) and occluded instances as compressed RLE, with ``iscrowd=0``;
- some images get a crowd region stored as uncompressed RLE with ``iscrowd=1``, as COCO does.

Category ids are sparse (1, 2, 3, 5, 7, 9) so that the contiguous-label mapping is exercised.
"""

from __future__ import annotations

import os

import numpy as np

from .._io import atomic_write_json
from ..ops.masks import masks_to_boxes
from ..ops.polygons import polygons_to_mask
from ..ops.rle import _runs, mask_to_rle

__all__ = ["CATEGORIES", "make_synthetic_coco", "make_synthetic_splits"]

CATEGORIES = (
    {"id": 1, "name": "ellipse", "supercategory": "shape"},
    {"id": 2, "name": "convex", "supercategory": "shape"},
    {"id": 3, "name": "concave", "supercategory": "shape"},
    {"id": 5, "name": "star", "supercategory": "shape"},
    {"id": 7, "name": "ring", "supercategory": "shape"},
    {"id": 9, "name": "thin", "supercategory": "shape"},
)


def _radial_polygon(rng, cx, cy, radii, angles) -> np.ndarray:
    return np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1)  # (P, 2)


def _shape(rng: np.random.Generator, name: str, h: int, w: int):
    """One shape: (polygon (P, 2) or None, full mask (H, W) bool)."""
    scale = min(h, w)
    cx, cy = rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h
    r = rng.uniform(0.08, 0.3) * scale
    rot = rng.uniform(0, 2 * np.pi)
    if name == "ellipse":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        a, b = r, r * rng.uniform(0.35, 1.0)
        poly = np.stack(
            [cx + a * np.cos(t) * np.cos(rot) - b * np.sin(t) * np.sin(rot),
             cy + a * np.cos(t) * np.sin(rot) + b * np.sin(t) * np.cos(rot)], 1)
    elif name == "convex":
        k = int(rng.integers(3, 9))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        poly = _radial_polygon(rng, cx, cy, np.full(k, r), angles)
    elif name == "concave":
        k = int(rng.integers(6, 14))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        poly = _radial_polygon(rng, cx, cy, r * rng.uniform(0.3, 1.0, k), angles)
    elif name == "star":
        k = int(rng.integers(5, 8))
        angles = rot + np.arange(2 * k) * np.pi / k
        radii = np.where(np.arange(2 * k) % 2 == 0, r, r * rng.uniform(0.35, 0.55))
        poly = _radial_polygon(rng, cx, cy, radii, angles)
    elif name == "thin":
        length, width = rng.uniform(0.3, 0.7) * scale, rng.uniform(1.5, 4.0)
        d, n = np.array([np.cos(rot), np.sin(rot)]), np.array([-np.sin(rot), np.cos(rot)])
        c = np.array([cx, cy])
        poly = np.stack([c - d * length / 2 - n * width / 2, c + d * length / 2 - n * width / 2,
                         c + d * length / 2 + n * width / 2, c - d * length / 2 + n * width / 2])
    elif name == "ring":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        outer = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1)
        ri = r * rng.uniform(0.4, 0.7)
        inner = np.stack([cx + ri * np.cos(t), cy + ri * np.sin(t)], 1)
        mask = polygons_to_mask([outer], h, w) & ~polygons_to_mask([inner], h, w)
        return None, mask
    else:  # pragma: no cover
        raise ValueError(name)
    poly[:, 0] = poly[:, 0].clip(0, w)
    poly[:, 1] = poly[:, 1].clip(0, h)
    poly = np.round(poly, 2)  # what the JSON stores, so the stored area is this polygon's mask
    return poly, polygons_to_mask([poly], h, w)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(H, W, 3) float in [0, 1]: a gradient, stripes and noise."""
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = rng.uniform(0.2, 0.8, 3)
    grad = rng.uniform(-0.3, 0.3, (2, 3))
    freq, phase = rng.uniform(5, 40), rng.uniform(0, 2 * np.pi)
    angle = rng.uniform(0, np.pi)
    stripes = 0.08 * np.sin(freq * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    img = base + xx[..., None] * grad[0] + yy[..., None] * grad[1] + stripes[..., None]
    return img + rng.normal(0, 0.04, (h, w, 3))


def _render_instance(rng: np.random.Generator, img: np.ndarray, mask: np.ndarray) -> None:
    colour = rng.uniform(0, 1, 3)
    texture = rng.normal(0, 0.06, (int(mask.sum()), 3))
    img[mask] = colour + texture


def make_synthetic_coco(
    out_dir: str | os.PathLike,
    *,
    split: str = "train",
    num_images: int = 16,
    image_size: tuple[int, int] = (240, 320),
    max_instances: int = 6,
    crowd_prob: float = 0.25,
    seed: int = 0,
) -> str:
    """Write ``num_images`` images to ``out_dir/split/`` and ``out_dir/annotations/instances_{split}.json``.

    Parameters
    ----------
    out_dir : path
    split : str
    num_images : int
    image_size : (H, W)
    max_instances : int
        Each image gets 1..max_instances shapes.
    crowd_prob : float
        Chance that an image also gets a crowd region.
    seed : int
        The same seed writes the same files.

    Returns
    -------
    str, the path of the instances JSON.
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    h, w = image_size
    image_dir = os.path.join(out_dir, split)
    ann_dir = os.path.join(out_dir, "annotations")
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(ann_dir, exist_ok=True)
    names = [c["name"] for c in CATEGORIES]
    images, annotations = [], []
    ann_id = 1
    for image_id in range(1, num_images + 1):
        file_name = f"{image_id:012d}.jpg"
        img = _background(rng, h, w)
        shapes = []
        for _ in range(int(rng.integers(1, max_instances + 1))):
            cat = int(rng.integers(len(CATEGORIES)))
            poly, mask = _shape(rng, names[cat], h, w)
            if mask.sum() < 4:
                continue
            shapes.append((cat, poly, mask))
            _render_instance(rng, img, mask)
        # Occlusion: each shape loses what later shapes cover.
        covered = np.zeros((h, w), dtype=bool)
        visible = []
        for cat, poly, mask in reversed(shapes):
            visible.append((cat, poly, mask, mask & ~covered))
            covered |= mask
        for cat, poly, mask, vis in reversed(visible):
            area = int(vis.sum())
            if area == 0:
                continue
            if poly is not None and area == int(mask.sum()):
                seg = [[round(float(v), 2) for v in poly.reshape(-1)]]
                x0, y0 = poly.min(0)
                x1, y1 = poly.max(0)
                bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
            else:
                seg = mask_to_rle(vis)
                x0, y0, x1, y1 = masks_to_boxes(vis[None])[0].tolist()
                bbox = [x0, y0, x1 - x0, y1 - y0]
            annotations.append({"id": ann_id, "image_id": image_id, "category_id": CATEGORIES[cat]["id"],
                                "segmentation": seg, "area": float(area), "bbox": [round(v, 2) for v in bbox],
                                "iscrowd": 0})
            ann_id += 1
        if rng.random() < crowd_prob:
            crowd = np.zeros((h, w), dtype=bool)
            for _ in range(int(rng.integers(3, 8))):
                _, blob = _shape(rng, "ellipse", h, w)
                crowd |= blob
            crowd &= ~covered
            if crowd.any():
                _render_instance(rng, img, crowd)
                x0, y0, x1, y1 = masks_to_boxes(crowd[None])[0].tolist()
                annotations.append({"id": ann_id, "image_id": image_id, "category_id": CATEGORIES[0]["id"],
                                    "segmentation": {"size": [h, w], "counts": _runs(crowd).tolist()},
                                    "area": float(crowd.sum()), "bbox": [x0, y0, x1 - x0, y1 - y0], "iscrowd": 1})
                ann_id += 1
        Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8)).save(os.path.join(image_dir, file_name), quality=92)
        images.append({"id": image_id, "file_name": file_name, "height": h, "width": w})
    path = os.path.join(ann_dir, f"instances_{split}.json")
    atomic_write_json(path, {"info": {"description": f"maskrep synthetic shapes, seed {seed}"}, "licenses": [],
                             "images": images, "annotations": annotations, "categories": list(CATEGORIES)})
    return path


def make_synthetic_splits(out_dir: str | os.PathLike, *, num_train: int = 48, num_val: int = 16, seed: int = 0, **kwargs) -> dict:
    """Write a train and a val split with different seeds; returns {split: (json, image_dir)}."""
    out = {}
    for split, n, s in (("train", num_train, seed), ("val", num_val, seed + 1)):
        path = make_synthetic_coco(out_dir, split=split, num_images=n, seed=s, **kwargs)
        out[split] = (path, os.path.join(out_dir, split))
    return out
