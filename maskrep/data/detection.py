"""Images and instances for detector training and evaluation.

:class:`DetectionDataset` reads a COCO-format dataset through :class:`CocoInstances`, decodes
images with Pillow, resizes by the shorter side (capped by the longer), flips horizontally, and
carries boxes, labels and, when asked, full-resolution instance masks. :func:`collate` pads a
batch to a multiple of 32. :class:`TrainingBatches` is the deterministic, resumable, shardable
stream of training batches: the augmentation of every sample is fixed by (seed, position), so a
run resumed at iteration k sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from ..structures import InstanceMasks
from .coco import CocoInstances

__all__ = ["DetectionDataset", "TrainingBatches", "collate", "eval_loader", "make_loader", "read_image", "resize_image"]


def _resized_shape(h: int, w: int, short: int, max_size: int) -> tuple[int, int]:
    """detectron2's ResizeShortestEdge output size."""
    scale = short / min(h, w)
    nh, nw = h * scale, w * scale
    if max(nh, nw) > max_size:
        scale = max_size / max(nh, nw)
        nh, nw = nh * scale, nw * scale
    return int(nh + 0.5), int(nw + 0.5)


def read_image(path: str) -> Image.Image:
    """An image file as RGB; a missing, unreadable or oversized file is an error naming it (an
    image over ``maskrep._config.MAX_IMAGE_PIXELS`` is refused from its header, before decoding)."""
    from .. import _config

    if os.path.isdir(path):
        raise IsADirectoryError(f"{path} is a folder, not an image: pass the images in it (e.g. {path}/*.jpg)")
    try:
        with Image.open(path) as im:
            if im.width * im.height > _config.MAX_IMAGE_PIXELS:
                raise ValueError(f"{path}: the image is {im.width} x {im.height} = {im.width * im.height:,} pixels, "
                                 f"over the {_config.MAX_IMAGE_PIXELS:,} one image may have "
                                 "(maskrep._config.MAX_IMAGE_PIXELS)")
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except Image.DecompressionBombError as e:  # Pillow's own bound, met first for huge headers
        import re

        m = re.search(r"\((\d+) pixels\)", str(e))
        claimed = f"{int(m.group(1)):,} pixels" if m else "more pixels than Pillow decodes"
        raise ValueError(f"{path}: the image header claims {claimed}, over the {_config.MAX_IMAGE_PIXELS:,} one "
                         "image may have (maskrep._config.MAX_IMAGE_PIXELS)") from None
    except (OSError, SyntaxError) as e:  # truncated or not an image
        raise OSError(f"{path}: cannot read the image ({e})") from None


def resize_image(img: Image.Image, short: int, max_size: int) -> Image.Image:
    """ResizeShortestEdge: the shorter side to ``short``, the longer at most ``max_size`` (bilinear)."""
    h, w = _resized_shape(img.height, img.width, short, max_size)
    return img if (h, w) == (img.height, img.width) else img.resize((w, h), Image.BILINEAR)


class DetectionDataset(torch.utils.data.Dataset):
    """One item per image.

    Parameters
    ----------
    annotations, image_dir : the COCO JSON and its image folder.
    min_size : shorter side after resizing; a tuple picks one at random per sample (multi-scale).
    max_size : cap on the longer side.
    flip_prob : probability of a horizontal flip (0 for evaluation).
    with_masks : also return ``masks``, the instances' :class:`maskrep.structures.InstanceMasks`
        in the resized (and flipped) frame (polygons mapped exactly, bitmaps by nearest neighbour),
        and ``crowd``, the image's crowd regions in the same frame: a dict with ``masks``
        (InstanceMasks), ``labels`` (C,) and ``after`` (C,), the number of instances that precede
        each region in the annotation file (for targets that paint every region in file order).
        Crowd regions are never instances: no box, no label in ``boxes`` / ``labels``.
    filter_empty : drop images without (non-crowd) instances, as training does.
    num_images : keep only the first ``num_images`` images (after filtering), in file order.

    Items are dicts: ``image`` (3, h, w) uint8 RGB, ``boxes`` (G, 4) float32 xyxy in the resized
    frame, ``labels`` (G,) int64, ``image_id``, ``orig_size`` (H, W), ``size`` (h, w), ``scale``
    (h/H, w/W), ``flipped`` and, with ``with_masks``, ``masks``.
    Index with an int, or with ``(index, seed)`` to fix the sample's augmentation.
    """

    def __init__(self, annotations, image_dir, *, min_size: int | Sequence[int] = 800, max_size: int = 1333,
                 flip_prob: float = 0.0, with_masks: bool = False, filter_empty: bool = False,
                 num_images: int | None = None, on_error: str = "raise"):
        self.coco = CocoInstances(annotations, image_dir=image_dir, on_error=on_error, skip_crowd=False)
        per_image, self.crowds = [], {}
        for image, all_insts in self.coco.by_image():
            insts = [i for i in all_insts if not i.iscrowd]
            # each crowd region with the count of instances before it in the file (annotation order)
            crowds = [(sum(not j.iscrowd for j in all_insts[:k]), i) for k, i in enumerate(all_insts) if i.iscrowd]
            if crowds:
                self.crowds[image["id"]] = crowds
            per_image.append((image, insts))
        if filter_empty:
            per_image = [(im, insts) for im, insts in per_image if insts]
        if num_images is not None:
            per_image = per_image[:num_images]
        if not per_image:
            raise ValueError(f"{self.coco.path}: no images to use")
        self.records = per_image
        self.min_sizes = (min_size,) if isinstance(min_size, int) else tuple(min_size)
        self.max_size = max_size
        self.flip_prob = flip_prob
        self.with_masks = with_masks
        self.category_ids = [c["id"] for c in self.coco.categories]

    @property
    def num_classes(self) -> int:
        return self.coco.num_classes

    @property
    def image_ids(self) -> list[int]:
        return [im["id"] for im, _ in self.records]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, key):
        index, seed = key if isinstance(key, tuple) else (key, None)
        rng = np.random.default_rng(seed)
        image_rec, insts = self.records[index]
        path = self.coco.image_path(image_rec["id"])
        try:
            img = read_image(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{self.coco.path}: image {image_rec['id']} not found at {path}") from None
        except OSError as e:
            raise OSError(f"{self.coco.path}: image {image_rec['id']}: {e}") from None
        big_w, big_h = img.size
        if (big_h, big_w) != (image_rec["height"], image_rec["width"]):
            raise ValueError(f"{path}: image is {big_w}x{big_h} but the annotations say "
                             f"{image_rec['width']}x{image_rec['height']}")
        short = self.min_sizes[rng.integers(len(self.min_sizes))] if len(self.min_sizes) > 1 else self.min_sizes[0]
        img = resize_image(img, short, self.max_size)
        w, h = img.size
        flip = self.flip_prob > 0 and rng.random() < self.flip_prob
        arr = np.asarray(img)
        if flip:
            arr = arr[:, ::-1]
        sy, sx = h / big_h, w / big_w
        boxes = np.array([i.box for i in insts], dtype=np.float64).reshape(-1, 4) * [sx, sy, sx, sy]
        if flip:
            boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
        item = {
            "image": torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))),
            "boxes": torch.from_numpy(boxes.astype(np.float32)),
            "labels": torch.tensor([i.label for i in insts], dtype=torch.long),
            "image_id": image_rec["id"],
            "orig_size": (big_h, big_w),
            "size": (h, w),
            "scale": (sy, sx),
            "flipped": bool(flip),
        }
        if self.with_masks:
            item["masks"] = InstanceMasks.from_instances(insts, (big_h, big_w)).transform((sy, sx), (h, w), flip=flip)
            crowds = self.crowds.get(image_rec["id"], [])
            item["crowd"] = {
                "masks": InstanceMasks.from_instances([c for _, c in crowds], (big_h, big_w)).transform(
                    (sy, sx), (h, w), flip=flip),
                "labels": torch.tensor([c.label for _, c in crowds], dtype=torch.long),
                "after": torch.tensor([k for k, _ in crowds], dtype=torch.long),
            }
        return item


def collate(batch: list[dict], size_divisibility: int = 32) -> tuple[torch.Tensor, list[dict]]:
    """Pad images to a common size divisible by ``size_divisibility``: -> (B, 3, Hp, Wp) uint8, targets."""
    hs = [b["image"].shape[1] for b in batch]
    ws = [b["image"].shape[2] for b in batch]
    hp = -(-max(hs) // size_divisibility) * size_divisibility
    wp = -(-max(ws) // size_divisibility) * size_divisibility
    images = torch.zeros((len(batch), 3, hp, wp), dtype=torch.uint8)
    for i, b in enumerate(batch):
        images[i, :, : hs[i], : ws[i]] = b["image"]
    targets = [{k: v for k, v in b.items() if k != "image"} for b in batch]
    return images, targets


class TrainingBatches(torch.utils.data.Sampler):
    """An endless, deterministic stream of batches of ``(index, seed)`` keys.

    Epoch e visits a permutation drawn from ``seed + e``; consecutive groups of
    ``batch_size * world_size`` keys form one global batch, and rank r takes its slice. Each key's
    augmentation seed is derived from its position in the stream. ``start_iter`` skips the first
    global batches (resume).
    """

    def __init__(self, size: int, batch_size: int, *, seed: int = 0, start_iter: int = 0, rank: int = 0,
                 world_size: int = 1):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_iter, self.rank, self.world_size = start_iter, rank, world_size

    def _stream(self) -> Iterator[tuple[int, int]]:
        epoch, pos = 0, 0
        while True:
            g = torch.Generator().manual_seed(self.seed + epoch)
            for i in torch.randperm(self.size, generator=g).tolist():
                yield i, (self.seed * 1_000_003 + pos) % 2**63
                pos += 1
            epoch += 1

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_global = self.batch_size * self.world_size
        stream = self._stream()
        # skip what earlier iterations consumed
        for _ in range(self.start_iter * per_global):
            next(stream)
        while True:
            batch = [next(stream) for _ in range(per_global)]
            yield batch[self.rank * self.batch_size : (self.rank + 1) * self.batch_size]

    def __len__(self) -> int:  # endless; DataLoader only needs this for len()
        return 2**62


def make_loader(dataset, batch_sampler, num_workers: int = 0):
    """A DataLoader over ``dataset`` driven by ``batch_sampler`` (e.g. :class:`TrainingBatches`)."""
    return torch.utils.data.DataLoader(dataset, batch_sampler=batch_sampler, num_workers=num_workers,
                                       collate_fn=collate, persistent_workers=num_workers > 0)


def eval_loader(dataset, batch_size: int = 1, num_workers: int = 0, rank: int = 0, world_size: int = 1):
    """A DataLoader visiting this rank's share of the images once, in order."""
    idx = list(range(rank, len(dataset), world_size))
    sub = torch.utils.data.Subset(dataset, idx)
    return torch.utils.data.DataLoader(sub, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                       collate_fn=collate)

