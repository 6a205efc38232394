"""What numba compilation costs: ``import maskrep`` (no numba), then each kernel's first call in a
fresh process with an empty cache (compiles and writes the cache) and again (loads the cache).

    python -m benchmarks.compile_time
"""

import json
import os
import subprocess
import sys
import tempfile

from benchmarks._common import REPO, machine

PROBE = r"""
import json, time
t = time.perf_counter()
import maskrep, maskrep.ops, maskrep.assembly
import sys
times = {"import maskrep (numba not imported)": time.perf_counter() - t, "numba imported": "numba" in sys.modules}
import numpy as np, torch
from maskrep.ops import (paste_masks, rasterize_in_boxes, mask_iou, mask_iou_pairwise, paste_masks_to_rle, rle_iou,
                         polygons_to_rle, outer_contours, mask_to_rle)
from maskrep.codecs import get_codec
from maskrep.assembly import blend, embedding_coupling, shape_saliency, unit_product
b = np.array([[0.0, 0.0, 4.0, 4.0]])
m = np.ones((1, 4, 4), bool)
calls = {
    "paste_masks": lambda: paste_masks(np.ones((1, 3, 3)), b, (6, 6), backend="numba"),
    "rasterize_in_boxes": lambda: rasterize_in_boxes([[[0, 0, 3, 0, 3, 3]]], b, 4, backend="numba"),
    "mask_iou": lambda: mask_iou(m, m, backend="numba"),
    "mask_iou_pairwise": lambda: mask_iou_pairwise(m, m, backend="numba"),
    "unit_product": lambda: unit_product(torch.ones(1, 4, 2), torch.ones(1, 2), torch.ones(1, 4, 2), backend="numba"),
    "blend": lambda: blend(torch.ones(1, 2, 4, 4), torch.ones(1, 2, 2, 2), torch.tensor(b), mask_size=3, backend="numba"),
    "embedding_coupling": lambda: embedding_coupling(torch.ones(1, 2, 3, 3), torch.ones(1, 2), torch.ones(1), backend="numba"),
    "shape_saliency": lambda: shape_saliency(torch.ones(1, 3, 3), torch.ones(1, 1, 4, 4), torch.tensor(b), backend="numba"),
    "paste_masks_to_rle": lambda: paste_masks_to_rle(np.ones((1, 3, 3)), b, (6, 6), backend="numba"),
    "rle_iou": lambda: rle_iou(mask_to_rle(m), mask_to_rle(m), backend="numba"),
    "polygons_to_rle": lambda: polygons_to_rle([[[0, 0, 3, 0, 3, 3]]], 4, 4, backend="numba"),
    "outer_contours": lambda: outer_contours(m, backend="numba"),
    "contour codec (simplify, soft fill)": lambda: (lambda c: c.decode(c.encode(np.pad(m, ((0, 0), (2, 2), (2, 2))))))(
        get_codec("contour", mask_size=8, dim=6)),
}
for name, fn in calls.items():
    t = time.perf_counter(); fn(); times[name] = time.perf_counter() - t
print(json.dumps(times))
"""


def run(cache_dir: str) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=cache_dir)
    out = subprocess.run([sys.executable, "-c", PROBE], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as cache:
        cold, warm = run(cache), run(cache)
    print(f"{'':40s} {'cold (compile)':>15s} {'warm (cache)':>13s}")
    for key in cold:
        if isinstance(cold[key], bool):
            print(f"{key:40s} {cold[key]!s:>15s} {warm[key]!s:>13s}")
        else:
            print(f"{key:40s} {cold[key]:14.2f}s {warm[key]:12.2f}s")
    total_cold = sum(v for k, v in cold.items() if not isinstance(v, bool) and not k.startswith("import"))
    total_warm = sum(v for k, v in warm.items() if not isinstance(v, bool) and not k.startswith("import"))
    print(f"{'all kernels, first call':40s} {total_cold:14.2f}s {total_warm:12.2f}s")


if __name__ == "__main__":
    main()
