"""Evaluation on RLEs: paste straight to COCO RLE, and IoU on RLEs, against what the field runs today.

    python -m benchmarks.rle

On coco-mini val2017 (1,672 non-crowd instances, 28 x 28 decoded crops), in one process:

* paste + encode: a detectron2-style CPU paste (per box region, one mask a chunk, float32
  ``grid_sample``, >= 0.5, into an (N, H, W) bool array) followed by pycocotools ``mask.encode``,
  against ``maskrep.ops.paste_masks_to_rle``; the RLE bytes are compared with pycocotools' encoding
  of maskrep's dense paste. The floor of any dense path: writing the N x H x W output bytes once.
* pairwise IoU: pycocotools ``mask.iou`` against ``maskrep.ops.rle_iou`` on the RLEs an evaluation
  holds: per image, 100 detections (the instances' reconstructions in jittered boxes) against
  every annotation, crowd ones as crowd. The floor: reading the RLE strings once.

Each path runs in passes of its own over every image (the best of three), so none runs while
another's worker threads still spin; a last pass compares the outputs.
"""

import time

import numpy as np
import pycocotools.mask as mask_utils
import torch
import torch.nn.functional as F

from benchmarks._common import coco_mini, machine


def best_of(run, repeat: int = 3) -> float:
    """The shortest of ``repeat`` timed passes of ``run()`` (seconds)."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def detectron2_style_paste(probs: torch.Tensor, boxes: torch.Tensor, h: int, w: int) -> np.ndarray:
    """(N, S, S) float32 maps -> (N, H, W) bool, the way detectron2 pastes on the CPU: each mask in
    turn (a chunk of one), resampled with ``grid_sample`` over the integer region around its box
    only (one pixel of margin, clipped to the image), thresholded, written into the full masks."""
    out = torch.zeros((len(probs), h, w), dtype=torch.bool)
    for k in range(len(probs)):
        x0, y0, x1, y1 = boxes[k].tolist()
        c0, r0 = max(int(np.floor(x0)) - 1, 0), max(int(np.floor(y0)) - 1, 0)
        c1, r1 = min(int(np.ceil(x1)) + 1, w), min(int(np.ceil(y1)) + 1, h)
        if c1 <= c0 or r1 <= r0:
            continue
        gx = (torch.arange(c0, c1, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
        gy = (torch.arange(r0, r1, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
        grid = torch.stack(torch.broadcast_tensors(gx[None, :], gy[:, None]), -1)[None]  # (1, rows, cols, 2)
        region = F.grid_sample(probs[k][None, None], grid, align_corners=False)[0, 0]
        out[k, r0:r1, c0:c1] = region >= 0.5
    return out.numpy()


def encode_dense(masks: np.ndarray) -> list[dict]:
    """pycocotools' encode of (N, H, W) bool, one mask at a time as evaluators call it."""
    return [mask_utils.encode(np.asfortranarray(m[:, :, None].astype(np.uint8)))[0] for m in masks]


def main() -> None:
    from maskrep.codecs import get_codec
    from maskrep.data import CocoInstances, crop_instances
    from maskrep.ops import paste_masks, paste_masks_to_rle, rle_iou

    print(f"machine: {machine()}")
    data = CocoInstances(coco_mini() / "annotations" / "instances_val2017.json")
    codec = get_codec("dct", mask_size=28, dim=60)  # soft decoded maps, as a mask head gives
    images = []
    for image, insts in data.by_image():
        if insts:
            maps = codec.paste_maps(codec.encode(crop_instances(insts, 28))).astype(np.float32)
            images.append(((image["height"], image["width"]), maps, np.stack([i.box for i in insts])))
    n = sum(len(m) for _, m, _ in images)
    pixels = sum(len(m) * h * w for (h, w), m, _ in images)
    paste_masks_to_rle(images[0][1], images[0][2], images[0][0])  # compile / load the kernels

    # ---- paste + encode ----------------------------------------------------------------------------
    # Each path in a pass of its own over every image (as an evaluation loop calls it), so no path
    # runs while another's worker threads are still spinning; then one pass compares the outputs.
    t_d2 = best_of(lambda: [encode_dense(detectron2_style_paste(torch.from_numpy(maps), torch.from_numpy(boxes).float(),
                                                                h, w)) for (h, w), maps, boxes in images])
    t_ours = best_of(lambda: [paste_masks_to_rle(maps, boxes, (h, w)) for (h, w), maps, boxes in images])
    buf = np.empty(max(len(m) * h * w for (h, w), m, _ in images), dtype=np.uint8)
    # writing the dense output once, nothing else
    t_floor = best_of(lambda: [buf[: len(maps) * h * w].fill(1) for (h, w), maps, _ in images])
    identical, pixel_diffs = True, 0
    for (h, w), maps, boxes in images:
        ours = paste_masks_to_rle(maps, boxes, (h, w))
        dense = paste_masks(maps, boxes, (h, w))  # maskrep's dense paste, encoded by pycocotools
        identical &= [r["counts"] for r in ours] == [r["counts"].decode() for r in encode_dense(dense)]
        d2_masks = detectron2_style_paste(torch.from_numpy(maps), torch.from_numpy(boxes).float(), h, w)
        pixel_diffs += int((dense != d2_masks).sum())
    print(f"paste to COCO RLE: {n} masks of 28 x 28 into their images ({pixels / 1e6:,.0f} M output pixels)")
    print(f"  detectron2-style paste + pycocotools encode: {n / t_d2:9,.0f} masks/s")
    print(f"  maskrep paste_masks_to_rle:                  {n / t_ours:9,.0f} masks/s   x{t_d2 / t_ours:.1f}")
    print(f"  floor of a dense path (write {pixels / 1e6:,.0f} MB once): {n / t_floor:9,.0f} masks/s   "
          f"maskrep is x{t_floor / t_ours:.1f} of it")
    print(f"  RLEs identical to pycocotools' encoding of maskrep's dense paste: {identical}; "
          f"pixels differing from the float32 grid_sample paste: {pixel_diffs} of {pixels:,}")

    # ---- IoU on RLEs ---------------------------------------------------------------------------------
    crowd_data = CocoInstances(coco_mini() / "annotations" / "instances_val2017.json", skip_crowd=False)
    rng = np.random.default_rng(0)
    pairs = []
    for (image, gts), ((h, w), maps, boxes) in zip(((im, g) for im, g in crowd_data.by_image()
                                                    if any(not i.iscrowd for i in g)), images):
        pick = rng.integers(0, len(maps), 100)
        jitter = rng.normal(0, 0.05, (100, 4)) * np.tile(boxes[pick, 2:] - boxes[pick, :2], 2)
        dts = paste_masks_to_rle(maps[pick], boxes[pick] + jitter, (h, w))
        gt = [i.to_rle() for i in gts]
        crowd = [int(i.iscrowd) for i in gts]
        pairs.append(([{"size": d["size"], "counts": d["counts"].encode()} for d in dts],
                      [{"size": g["size"], "counts": g["counts"].encode()} for g in gt], dts, gt, crowd))
    rle_iou(pairs[0][2], pairs[0][3], pairs[0][4])
    npairs = sum(len(p[0]) * len(p[1]) for p in pairs)
    t_coco = best_of(lambda: [mask_utils.iou(a, b, c) for a, b, _, _, c in pairs])
    t_ours = best_of(lambda: [rle_iou(a, b, c) for _, _, a, b, c in pairs])
    theirs = [mask_utils.iou(a, b, c) for a, b, _, _, c in pairs]
    ours = [rle_iou(a, b, c) for _, _, a, b, c in pairs]
    same = all(np.array_equal(np.asarray(a).reshape(b.shape), b) for a, b in zip(theirs, ours))
    nbytes = sum(len(r["counts"]) for p in pairs for r in (*p[2], *p[3]))
    joined = [np.frombuffer(b"".join(r["counts"] for r in (*a, *b)), dtype=np.uint8) for a, b, _, _, _ in pairs]
    t_read = best_of(lambda: [int(chars.sum(dtype=np.int64)) for chars in joined])  # reading the input once
    print(f"pairwise IoU on RLEs: {len(pairs)} images, 100 detections x their annotations ({npairs:,} pairs, "
          f"{nbytes / 1e6:.1f} MB of RLE strings)")
    print(f"  pycocotools mask.iou: {npairs / t_coco:12,.0f} pairs/s")
    print(f"  maskrep rle_iou:      {npairs / t_ours:12,.0f} pairs/s   x{t_coco / t_ours:.1f}   identical: {same}")
    print(f"  floor (read the {nbytes / 1e6:.1f} MB of strings once): {npairs / t_read:12,.0f} pairs/s   "
          f"maskrep is x{t_read / t_ours:.2f} of it")


if __name__ == "__main__":
    main()
