"""Instance masks of one image behind one interface: the container the data pipeline hands to heads.

COCO annotates an instance as polygons or as RLE (crowds, and some data sets for every instance);
:class:`InstanceMasks` holds either kind per instance and offers the two things heads need:
:meth:`InstanceMasks.crop_in_boxes`, the one place ground-truth crops are made (polygons by
pycocotools' rule inside the box, bitmaps by RoIAlign, as detectron2's ``PolygonMasks`` and
``BitMasks`` do), and :meth:`InstanceMasks.to_bitmap`, full-image masks sampled at a stride over
the padded batch. It lives on the CPU (numpy); results come back as the kind of the boxes given.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._array import is_tensor, like, to_numpy
from .ops.masks import crop_masks_in_boxes, polygons_to_masks, rasterize_in_boxes
from .ops.polygons import as_polygon
from .ops.rle import rle_to_mask

__all__ = ["InstanceMasks", "crop_batch"]


class InstanceMasks:
    """The masks of one image's N instances, each polygons or a bitmap.

    Parameters
    ----------
    items : sequence of length N
        Per instance: a sequence of polygons (each (P, 2) or flat [x0, y0, ...], image pixels), an
        (H, W) bool bitmap, or a COCO RLE dict (decoded when first needed).
    image_size : (H, W) or None
        The image the masks belong to; None only for containers that gather instances of several
        images (:func:`maskrep.data.crop_instances`), which cannot :meth:`to_bitmap`.

    Examples
    --------
    >>> import numpy as np
    >>> m = InstanceMasks([[[2, 2, 10, 2, 10, 10, 2, 10]], np.eye(12, dtype=bool)], (12, 12))
    >>> len(m), m.kinds
    (2, ('polygons', 'bitmap'))
    >>> m.crop_in_boxes(np.array([[2.0, 2.0, 10.0, 10.0], [0.0, 0.0, 12.0, 12.0]]), 4).shape
    (2, 4, 4)
    >>> m.to_bitmap(stride=4, padded_size=(16, 16)).shape
    (2, 4, 4)
    """

    def __init__(self, items: Sequence, image_size: tuple[int, int] | None):
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self._items = []
        for k, item in enumerate(items):
            if isinstance(item, dict):
                self._items.append(item)
            elif isinstance(item, np.ndarray) and item.ndim == 2 and item.dtype == bool:
                if self.image_size is not None and item.shape != self.image_size:
                    raise ValueError(f"instance {k}: bitmap of shape {item.shape} in an image of size {self.image_size}")
                self._items.append(item)
            else:
                self._items.append(tuple(as_polygon(p) for p in item))

    # ---- construction ------------------------------------------------------------------------------

    @classmethod
    def from_instances(cls, instances: Sequence, image_size: tuple[int, int] | None = None) -> InstanceMasks:
        """From :class:`maskrep.data.CocoInstance` records (polygons, or their RLE)."""
        return cls([i.polygons if i.polygons is not None else i.rle for i in instances], image_size)

    @classmethod
    def from_bitmaps(cls, masks) -> InstanceMasks:
        """From an (N, H, W) bool array or tensor."""
        m = to_numpy(masks)
        if m.ndim != 3 or m.dtype != bool:
            raise ValueError(f"bitmaps must be (N, H, W) bool, got {m.dtype} {m.shape}")
        return cls(list(m), m.shape[1:])

    @classmethod
    def cat(cls, parts: Sequence[InstanceMasks]) -> InstanceMasks:
        """The instances of several containers of one image, in order."""
        sizes = {p.image_size for p in parts}
        if len(sizes) > 1:
            raise ValueError(f"cannot join masks of images of different sizes: {sorted(map(str, sizes))}")
        return cls([item for p in parts for item in p._items], sizes.pop() if sizes else None)

    # ---- the container -----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index) -> InstanceMasks:
        """A subset, as a container: an int, a slice, a sequence of ints or a bool mask."""
        if is_tensor(index):
            index = index.cpu().numpy()
        if isinstance(index, (int, np.integer)):
            picked = [self._items[index]]
        elif isinstance(index, slice):
            picked = self._items[index]
        else:
            index = np.asarray(index)
            if index.dtype == bool:
                index = np.flatnonzero(index)
            picked = [self._items[int(i)] for i in index]
        return InstanceMasks(picked, self.image_size)

    @property
    def kinds(self) -> tuple[str, ...]:
        """Per instance "polygons", "bitmap" or "rle"."""
        return tuple("rle" if isinstance(i, dict) else "bitmap" if isinstance(i, np.ndarray) else "polygons"
                     for i in self._items)

    def _bitmap(self, k: int) -> np.ndarray:
        item = self._items[k]
        if isinstance(item, dict):
            item = self._items[k] = rle_to_mask(item)
        return item

    # ---- what heads use -----------------------------------------------------------------------------

    def crop_in_boxes(self, boxes, size: int, *, rule: str = "coco"):
        """Each instance's mask cropped to its box and resampled to (size, size).

        Parameters
        ----------
        boxes : ndarray or Tensor of shape (N, 4), xyxy image pixels
            One box per instance (its own, a proposal's, a positive's). float32 boxes give
            detectron2's crops exactly.
        size : int
        rule : {"coco", "center"}
            The polygon rule (:mod:`maskrep.ops.polygons`).

        Returns
        -------
        (N, S, S) bool, the kind (and device) of ``boxes``. Polygons are rasterised inside the box
        (:func:`maskrep.ops.rasterize_in_boxes`); bitmaps are RoIAligned (aligned, adaptive
        sampling) and thresholded at 0.5 (:func:`maskrep.ops.crop_masks_in_boxes`).
        """
        boxes_np = to_numpy(boxes)
        if boxes_np.shape != (len(self), 4):
            raise ValueError(f"boxes must be ({len(self)}, 4), one per instance, got {boxes_np.shape}")
        out = np.zeros((len(self), size, size), dtype=bool)
        kinds = self.kinds
        poly = [k for k, kind in enumerate(kinds) if kind == "polygons"]
        if poly:
            out[poly] = rasterize_in_boxes([self._items[k] for k in poly], boxes_np[poly], size, rule=rule,
                                           backend="auto")
        for k in (k for k, kind in enumerate(kinds) if kind != "polygons"):
            out[k] = crop_masks_in_boxes(self._bitmap(k)[None], boxes_np[k : k + 1].astype(np.float64), size=size)[0]
        return like(out, boxes)

    def to_bitmap(self, stride: int = 1, padded_size: tuple[int, int] | None = None, *,
                  offset: int | None = None) -> np.ndarray:
        """Full-image masks, zero-padded to ``padded_size``, sampled every ``stride`` pixels.

        Returns (N, Hp // stride, Wp // stride) bool: cell (i, j) is the pixel
        (i * stride + offset, j * stride + offset) of the padded mask. The default offset
        ``stride // 2`` is the point sampling CondInst and EmbedMask's detectron2 port use for their
        stride-4 targets; 0 is what nearest-neighbour down-sampling (``F.interpolate``) picks.
        """
        if self.image_size is None:
            raise ValueError("to_bitmap needs masks of one image (image_size is None)")
        h, w = self.image_size
        hp, wp = padded_size or (h, w)
        if hp < h or wp < w:
            raise ValueError(f"padded_size {padded_size} is smaller than the image {self.image_size}")
        full = np.zeros((len(self), hp, wp), dtype=bool)
        kinds = self.kinds
        poly = [k for k, kind in enumerate(kinds) if kind == "polygons"]
        if poly:
            full[poly, :h, :w] = polygons_to_masks([self._items[k] for k in poly], h, w)
        for k in (k for k, kind in enumerate(kinds) if kind != "polygons"):
            full[k, :h, :w] = self._bitmap(k)
        start = stride // 2 if offset is None else int(offset)
        return full[:, start::stride, start::stride][:, : hp // stride, : wp // stride]

    # ---- data augmentation -------------------------------------------------------------------------

    def transform(self, scale: tuple[float, float], size: tuple[int, int], *, flip: bool = False) -> InstanceMasks:
        """The masks of the image resized to ``size`` (h, w) by ``scale`` (sy, sx), then flipped
        horizontally when ``flip``. Polygons are mapped exactly; bitmaps by nearest neighbour."""
        sy, sx = scale
        h, w = int(size[0]), int(size[1])
        items = []
        for k, item in enumerate(self._items):
            if isinstance(item, tuple):
                polys = [p * [sx, sy] for p in item]
                if flip:
                    polys = [np.stack([w - p[:, 0], p[:, 1]], axis=1) for p in polys]
                items.append(tuple(polys))
                continue
            full = self._bitmap(k)
            big_h, big_w = full.shape
            rows = np.minimum(((np.arange(h) + 0.5) * big_h / h).astype(int), big_h - 1)
            cols = np.minimum(((np.arange(w) + 0.5) * big_w / w).astype(int), big_w - 1)
            m = full[rows][:, cols]
            items.append(np.ascontiguousarray(m[:, ::-1] if flip else m))
        return InstanceMasks(items, (h, w))

    def __repr__(self) -> str:
        counts = {kind: self.kinds.count(kind) for kind in sorted(set(self.kinds))}
        return f"InstanceMasks({len(self)} instances {counts}, image_size={self.image_size})"


def crop_batch(masks_per_image: Sequence[InstanceMasks], gt_inds, boxes, size: int, *, rule: str = "coco"):
    """Crops of a batch's instances chosen by batch-global index: (P, S, S) bool.

    Parameters
    ----------
    masks_per_image : list of length B of InstanceMasks
        The batch's ground truth; instance j of image i has global index sum(len(m) for m before i) + j.
    gt_inds : (P,) int64
        Which instance each crop shows (FCOS positives' ``gt_inds``).
    boxes : (P, 4) xyxy
        Where to crop it (its GT box, or a positive's / proposal's box).

    Returns the kind of ``boxes`` (a tensor on its device for tensor boxes).
    """
    inds = to_numpy(gt_inds).astype(np.int64)
    boxes_np = to_numpy(boxes)
    out = np.zeros((len(inds), size, size), dtype=bool)
    start = 0
    for masks in masks_per_image:
        sel = np.flatnonzero((inds >= start) & (inds < start + len(masks)))
        if sel.size:
            out[sel] = masks[inds[sel] - start].crop_in_boxes(boxes_np[sel], size, rule=rule)
        start += len(masks)
    if inds.size and (inds.min() < 0 or inds.max() >= start):
        raise IndexError(f"gt_inds must lie in [0, {start}), got [{inds.min()}, {inds.max()}]")
    return like(out, boxes)
