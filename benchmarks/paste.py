"""Pasting 28 x 28 masks into their full images, coco-mini val2017 (1,672 instances).

    python -m benchmarks.paste

Times, in one process: the numba kernel (box pixels only), maskrep's whole-image reference, and a
whole-image torch ``grid_sample`` paste (detectron2's rule); prints masks/s, the ratios and whether
the numba output equals the reference's. Also the kernel's first-call (compile or cache-load) time.
"""

import time

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks._common import coco_mini, machine


def grid_sample_paste(probs: np.ndarray, box, h: int, w: int) -> np.ndarray:
    """Whole-image bilinear resampling of one (S, S) crop with torch (float32), >= 0.5."""
    x0, y0, x1, y1 = (float(v) for v in box)
    gx = (torch.arange(w, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
    gy = (torch.arange(h, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
    grid = torch.stack([gx[None, :].expand(h, w), gy[:, None].expand(h, w)], -1)[None]  # (1, H, W, 2)
    out = F.grid_sample(torch.from_numpy(probs)[None, None], grid, align_corners=False)
    return (out[0, 0] >= 0.5).numpy()


def main() -> None:
    t0 = time.perf_counter()
    from maskrep._kernels.numba_cpu import paste_masks_kernel  # noqa: F401  (import + cache load)
    from maskrep.data import CocoInstances, crop_instances
    from maskrep.ops import paste_masks

    first = paste_masks(np.ones((1, 28, 28), np.float32), np.array([[0.0, 0.0, 5.0, 5.0]]), (8, 8), backend="numba")
    print(f"machine: {machine()}")
    print(f"numba kernel import + first call (compile, or load from cache): {time.perf_counter() - t0:.2f} s "
          f"({first.sum()} px)")

    data = CocoInstances(coco_mini() / "annotations" / "instances_val2017.json")
    by_image = [(image, insts) for image, insts in data.by_image() if insts]
    n = sum(len(insts) for _, insts in by_image)
    crops = {image["id"]: crop_instances(insts, 28).astype(np.float32) for image, insts in by_image}

    def run(backend):
        outs = []
        t = time.perf_counter()
        for image, insts in by_image:
            boxes = np.stack([i.box for i in insts])
            outs.append(paste_masks(crops[image["id"]], boxes, (image["height"], image["width"]), backend=backend))
        return time.perf_counter() - t, outs

    t_fast, fast = run("numba")
    t_ref, ref = run("reference")
    t = time.perf_counter()
    torch_outs = [np.stack([grid_sample_paste(c, i.box, image["height"], image["width"])
                            for c, i in zip(crops[image["id"]], insts)]) for image, insts in by_image]
    t_torch = time.perf_counter() - t
    identical = all(np.array_equal(a, b) for a, b in zip(fast, ref))
    differ = sum(int((a != b).sum()) for a, b in zip(fast, torch_outs))
    total = sum(a.size for a in fast)
    print(f"{n} masks, 28 x 28, pasted into their images (grouped by image)")
    print(f"  numba (box pixels only):          {n / t_fast:10,.0f} masks/s")
    print(f"  reference (whole image, numpy):   {n / t_ref:10,.0f} masks/s   numba is x{t_ref / t_fast:.1f}")
    print(f"  grid_sample (whole image, torch): {n / t_torch:10,.0f} masks/s   numba is x{t_torch / t_fast:.1f}")
    print(f"  numba output identical to the reference: {identical}; "
          f"pixels differing from grid_sample float32: {differ} of {total:,}")


if __name__ == "__main__":
    main()
