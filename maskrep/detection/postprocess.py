"""From a head's mask maps to full-image masks at the original image size: the one paste path.

Heads give each image's detections a :class:`maskrep.detection.heads.MaskMaps`: box-frame S x S maps
(MEInst, CRMask, BlendMask, RefineMask) are pasted into the detections' boxes
(:func:`maskrep.ops.paste_masks`, detectron2's rule); image-frame maps at a stride (EmbedMask,
CenterMask) are up-sampled to the input as CondInst and EmbedMask's port do, then resized to the
original image.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from ..ops.masks import binarize, paste_masks
from ..ops.resample import aligned_bilinear
from .heads.base import MaskMaps

__all__ = ["masks_in_image", "rles_in_image", "scale_boxes"]


def scale_boxes(boxes, input_size: tuple[int, int], output_size: tuple[int, int], *, flipped: bool = False) -> np.ndarray:
    """(n, 4) xyxy boxes of the resized (and possibly flipped) input -> the original image's frame."""
    (h, w), (big_h, big_w) = input_size, output_size
    b = torch.as_tensor(boxes).detach().float().cpu().numpy().astype(np.float64).reshape(-1, 4)
    b = b * [big_w / w, big_h / h, big_w / w, big_h / h]
    if flipped:
        b = np.stack([big_w - b[:, 2], b[:, 1], big_w - b[:, 0], b[:, 3]], axis=1)
    return b


def masks_in_image(mask: MaskMaps, boxes, input_size: tuple[int, int], output_size: tuple[int, int], *,
                   flipped: bool = False, chunk: int = 16) -> np.ndarray:
    """One image's detection masks at the original image size: (n, H, W) bool.

    Parameters
    ----------
    mask : MaskMaps
        The head's maps for the image's n detections.
    boxes : (n, 4) xyxy in the resized input frame (the detections' boxes).
    input_size : (h, w) of the resized, unpadded input the detector saw.
    output_size : (H, W) of the original image.
    flipped : the input was the image flipped horizontally (the masks are flipped back).

    Notes
    -----
    Box frame: the boxes are scaled to the original image and each map is pasted into its box at
    that resolution (bilinear, zeros outside the crop, >= threshold). Image frame: as CondInst and
    EmbedMask's detectron2 port do, each map is up-sampled to the padded input with
    :func:`maskrep.ops.aligned_bilinear` (cell i lands on pixel i s + s // 2, the pixel the training
    targets sample), cropped to the unpadded input and resized bilinearly (``align_corners=False``)
    to the original image; the port thresholds with > 0.5, maskrep with >= ``threshold``. Codes
    frame: the codec pastes the codes into the scaled boxes itself (``codec.paste_rle``).
    """
    n = mask.maps.shape[0]
    big_h, big_w = output_size
    if mask.frame == "codes":
        from ..ops.rle import rle_to_mask

        rles = rles_in_image(mask, boxes, input_size, output_size)  # the codec's own paste, unflipped
        masks = np.stack([rle_to_mask(r) for r in rles]) if rles else np.zeros((0, big_h, big_w), dtype=bool)
    elif mask.frame == "box":
        out_boxes = scale_boxes(boxes, input_size, output_size)
        maps = mask.maps.detach().double().cpu().numpy()
        masks = paste_masks(maps, out_boxes, (big_h, big_w), threshold=mask.threshold)
    else:
        h, w = input_size
        maps = mask.maps.detach().float()
        masks = np.zeros((n, big_h, big_w), dtype=bool)
        for s in range(0, n, chunk):
            up = aligned_bilinear(maps[s : s + chunk], mask.stride)[:, :h, :w]  # (c, h, w) on the input
            if up.shape[-2:] != (h, w):
                raise ValueError(f"image-frame maps of shape {tuple(maps.shape[-2:])} at stride {mask.stride} do "
                                 f"not cover the input of size {(h, w)}")
            if (h, w) != (big_h, big_w):
                up = F.interpolate(up[:, None], size=(big_h, big_w), mode="bilinear", align_corners=False)[:, 0]
            masks[s : s + chunk] = binarize(up, mask.threshold).cpu().numpy()
    if flipped:
        masks = np.ascontiguousarray(masks[:, :, ::-1])
    return masks


def rles_in_image(mask: MaskMaps, boxes, input_size: tuple[int, int], output_size: tuple[int, int], *,
                  flipped: bool = False) -> list[dict]:
    """One image's detection masks at the original size as COCO RLEs (``{"size", "counts": str}``).

    Box-frame maps are pasted straight to RLE (:func:`maskrep.ops.paste_masks_to_rle`: the runs of
    the pixels each box reaches, byte for byte the encoding of :func:`masks_in_image`'s masks), and
    codes by their codec (``codec.paste_rle``); image-frame maps, and flipped inputs, go through
    the dense masks.
    """
    from ..ops.rle import mask_to_rle, paste_masks_to_rle

    if mask.frame == "codes" and not flipped:
        return mask.codec.paste_rle(mask.maps.detach().float().cpu(), scale_boxes(boxes, input_size, output_size),
                                    output_size, threshold=mask.threshold)
    if mask.frame == "box" and not flipped:
        maps = mask.maps.detach().double().cpu().numpy()
        return paste_masks_to_rle(maps, scale_boxes(boxes, input_size, output_size), output_size,
                                  threshold=mask.threshold)
    return [mask_to_rle(m) for m in masks_in_image(mask, boxes, input_size, output_size, flipped=flipped)]
