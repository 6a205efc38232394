"""Mask IoU on coco-mini val2017 full-image masks: element-wise (reconstruction evaluation) and
pairwise (matching), numba against the numpy reference in one process.

    python -m benchmarks.iou
"""

import time

import numpy as np

from benchmarks._common import coco_mini, machine


def main() -> None:
    from maskrep.data import CocoInstances
    from maskrep.ops import mask_iou, mask_iou_pairwise, paste_masks

    print(f"machine: {machine()}")
    data = CocoInstances(coco_mini() / "annotations" / "instances_val2017.json")
    per_image = [(im, insts) for im, insts in data.by_image() if insts]
    gt, rec = [], []
    from maskrep.data import crop_instances

    for im, insts in per_image:
        masks = np.stack([i.mask() for i in insts])
        crops = crop_instances(insts, 28).astype(np.float64)
        gt.append(masks)
        rec.append(paste_masks(crops, np.stack([i.box for i in insts]), (im["height"], im["width"])))
    n = sum(len(m) for m in gt)
    mask_iou(gt[0], rec[0], backend="numba")
    mask_iou_pairwise(gt[0], rec[0], backend="numba")
    for name, fn in (("element-wise", mask_iou), ("pairwise (per image)", mask_iou_pairwise)):
        times, outs = {}, {}
        for backend in ("numba", "reference"):
            t = time.perf_counter()
            outs[backend] = [fn(a, b, backend=backend) for a, b in zip(gt, rec)]
            times[backend] = time.perf_counter() - t
        same = all(np.array_equal(a, b) for a, b in zip(outs["numba"], outs["reference"]))
        print(f"{name}: {n} masks in {len(gt)} images")
        print(f"  numba:     {n / times['numba']:10,.0f} masks/s")
        print(f"  reference: {n / times['reference']:10,.0f} masks/s   numba is x{times['reference'] / times['numba']:.1f}"
              f"   identical: {same}")


if __name__ == "__main__":
    main()
