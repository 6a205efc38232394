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

    def streamed():
        """Each image's masks are pasted by both paths, compared, then freed (as an evaluation loop
        that encodes each image's masks would); times are summed per path."""
        times = {"numba": 0.0, "reference": 0.0, "grid_sample": 0.0}
        identical, differ, total = True, 0, 0
        for image, insts in by_image:
            boxes = np.stack([i.box for i in insts])
            size = (image["height"], image["width"])
            outs = {}
            for backend in ("numba", "reference"):
                t = time.perf_counter()
                outs[backend] = paste_masks(crops[image["id"]], boxes, size, backend=backend)
                times[backend] += time.perf_counter() - t
            t = time.perf_counter()
            gs = np.stack([grid_sample_paste(c, i.box, *size) for c, i in zip(crops[image["id"]], insts)])
            times["grid_sample"] += time.perf_counter() - t
            identical &= np.array_equal(outs["numba"], outs["reference"])
            differ += int((outs["numba"] != gs).sum())
            total += gs.size
        return times, identical, differ, total

    def retained():
        """All 1,672 full-image masks kept alive at once: first-touch page faults on ~460 MB of output."""
        t = time.perf_counter()
        outs = [paste_masks(crops[image["id"]], np.stack([i.box for i in insts]),
                            (image["height"], image["width"]), backend="numba") for image, insts in by_image]
        return time.perf_counter() - t, outs

    times, identical, differ, total = streamed()
    t_kept, _ = retained()
    t_fast, t_ref, t_torch = times["numba"], times["reference"], times["grid_sample"]
    print(f"{n} masks, 28 x 28, pasted into their images (grouped by image, each image's output freed after use)")
    print(f"  numba (box pixels only):          {n / t_fast:10,.0f} masks/s")
    print(f"  reference (whole image, numpy):   {n / t_ref:10,.0f} masks/s   numba is x{t_ref / t_fast:.1f}")
    print(f"  grid_sample (whole image, torch): {n / t_torch:10,.0f} masks/s   numba is x{t_torch / t_fast:.1f}")
    print(f"  numba output identical to the reference: {identical}; "
          f"pixels differing from grid_sample float32: {differ} of {total:,}")
    print(f"  numba with all {total / 1e6:,.0f} MB of masks kept alive at once: {n / t_kept:10,.0f} masks/s "
          "(the cost of first-touching fresh output pages)")


if __name__ == "__main__":
    main()
