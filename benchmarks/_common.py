"""Shared helpers for the benchmark scripts (never imported by tests)."""

import os
import platform
import resource
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def coco_mini() -> Path:
    root = Path(os.environ.get("MASKREP_DATASETS", REPO.parent / "shared" / "data")) / "coco-mini"
    if not (root / "annotations").is_dir():
        raise SystemExit(f"coco-mini not found at {root}: set MASKREP_DATASETS")
    return root


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def best_of(fn, repeats: int):
    """(best wall time in seconds, last result) over ``repeats`` calls."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t)
    return best, result
