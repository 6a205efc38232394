"""Rate-distortion of every codec on coco-mini: fit on train2017, evaluate on val2017.

    python experiments/reconstruction/run.py [--data DIR] [--out docs]

Writes docs/reconstruction_table.md, docs/reconstruction.json and docs/rate_distortion.png. The
learned codec is the one of the head comparison (docs/heads_cpu.md): fitted on coco-mini train2017
and kept in outputs/codecs/, where this script takes it when present (else it fits and keeps it).
"""

import argparse
import json
import os
import platform
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

GRID = (
    [("pca", {"mask_size": 28, "dim": d}) for d in (20, 40, 60, 80, 100)]
    + [("pca", {"mask_size": 56, "dim": d}) for d in (60, 100)]
    + [("svd", {"mask_size": 14, "rank": k}) for k in (1, 2, 3, 4, 6)]
    + [("svd", {"mask_size": 14, "rank": 3, "mode": "reg"})]
    + [("svd", {"mask_size": 28, "rank": k}) for k in (3, 6)]
    + [("dct", {"mask_size": 128, "dim": d}) for d in (50, 100, 200, 300, 500)]
    + [("bitmap", {"mask_size": 28, "resolution": r}) for r in (7, 14, 28)]
    + [("polar", {"mask_size": 64, "rays": k}) for k in (18, 36, 58)]
    + [("contour", {"mask_size": 64, "dim": d, "mode": "adaptive"}) for d in (20, 40, 60, 100)]
    + [("contour", {"mask_size": 64, "dim": d, "mode": "uniform"}) for d in (40, 60, 100)]
    + [("contour", {"mask_size": 64, "dim": d, "mode": "fourier"}) for d in (20, 40, 60, 100)]
    + [("contour", {"mask_size": 128, "dim": d, "mode": "adaptive"}) for d in (40, 60)]
    + [("learned", {"mask_size": 28, "dim": 60})]
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.environ.get("MASKREP_DATASETS", str(REPO.parent / "shared" / "data")))
    parser.add_argument("--out", default=str(REPO / "docs"))
    args = parser.parse_args()

    from maskrep.codecs import get_codec
    from maskrep.data import CocoInstances
    from maskrep.engine import fit_or_load, format_table, plot_rate_distortion, run_grid

    root = Path(args.data) / "coco-mini" / "annotations"
    train = list(CocoInstances(root / "instances_train2017.json"))
    val = list(CocoInstances(root / "instances_val2017.json"))
    print(f"train {len(train)} instances, val {len(val)} instances")
    codecs = [get_codec(n, **p) for n, p in GRID]
    for i, (name, params) in enumerate(GRID):
        if name == "learned":  # fitted once, shared with the head comparison
            spec = f"{name}:" + ",".join(f"{k}={v}" for k, v in params.items())
            codecs[i] = fit_or_load(spec, lambda: train, str(REPO / "outputs" / "codecs"), "coco-mini-train")
    results = run_grid(codecs, train, val, progress=False)
    os.makedirs(args.out, exist_ok=True)
    table = format_table(results)
    with open(os.path.join(args.out, "reconstruction.json"), "w") as f:
        json.dump(results, f, indent=2)
    plot_rate_distortion(results, os.path.join(args.out, "rate_distortion.png"))
    with open(os.path.join(args.out, "reconstruction_table.md"), "w") as f:
        f.write(f"<!-- written by experiments/reconstruction/run.py on {platform.machine()}, "
                f"{os.cpu_count()} cores -->\n{table}\n")
    print(table)


if __name__ == "__main__":
    sys.exit(main())
