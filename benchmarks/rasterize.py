"""Rasterising polygons into their boxes at 28 x 28, coco-mini val2017 (1,672 instances).

    python -m benchmarks.rasterize

Times, in one process: the numba batch kernel (one call for all instances), maskrep's numpy
reference, and one pycocotools call per instance (frPyObjects -> merge -> decode, as detectron2's
``crop_and_resize`` does); prints masks/s, the ratios, and whether all three give identical crops
(pycocotools' polygon rule is the default, ``rule="coco"``).
"""

import numpy as np
import pycocotools.mask as mask_utils

from benchmarks._common import best_of, coco_mini, machine


def pycocotools_crops(polys, boxes, size):
    out = np.zeros((len(polys), size, size), dtype=bool)
    for k, (polygons, box) in enumerate(zip(polys, boxes)):
        w, h = max(box[2] - box[0], 0.1), max(box[3] - box[1], 0.1)
        mapped = [((p - box[:2]) * [size / w, size / h]).ravel().tolist() for p in polygons]
        out[k] = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(mapped, size, size)))
    return out


def main() -> None:
    from maskrep.data import CocoInstances
    from maskrep.ops import mask_iou, rasterize_in_boxes

    print(f"machine: {machine()}")
    data = CocoInstances(coco_mini() / "annotations" / "instances_val2017.json")
    insts = [i for i in data if i.polygons is not None]
    polys = [i.polygons for i in insts]
    boxes = np.stack([i.box for i in insts])
    n = len(insts)
    rasterize_in_boxes(polys[:2], boxes[:2], 28, backend="numba")  # compile or load from cache
    t_fast, fast = best_of(lambda: rasterize_in_boxes(polys, boxes, 28, backend="numba"), 5)
    t_ref, ref = best_of(lambda: rasterize_in_boxes(polys, boxes, 28, backend="reference"), 2)
    t_coco, coco = best_of(lambda: pycocotools_crops(polys, boxes, 28), 3)
    print(f"{n} instances, 28 x 28 (best of several runs)")
    print(f"  numba (one batch call):            {n / t_fast:10,.0f} masks/s")
    print(f"  pycocotools (one call / instance): {n / t_coco:10,.0f} masks/s   numba is x{t_coco / t_fast:.1f}")
    print(f"  reference (numpy, per instance):   {n / t_ref:10,.0f} masks/s   numba is x{t_ref / t_fast:.1f}")
    print(f"  numba identical to the reference: {np.array_equal(fast, ref)}; "
          f"identical to pycocotools: {np.array_equal(fast, coco)} (mean IoU {mask_iou(fast, coco).mean():.4f})")


if __name__ == "__main__":
    main()
