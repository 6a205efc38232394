"""The prepared GPU run cannot rot: its dry run executes every step on the CPU at tiny sizes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.realdata
def test_gpu_run_dry_run_executes_every_step(tmp_path, coco_mini):
    if os.environ.get("NUMBA_DISABLE_JIT", "0") not in ("", "0"):
        pytest.skip("the dry run is exercised by the pass with the JIT on")
    env = {**os.environ, "MASKREP_DATASETS": str(coco_mini.parent)}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.gpu", "--dry-run", "--out", str(tmp_path),
                           "--data", str(tmp_path / "no-pack")], check=False, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    results = json.loads((tmp_path / "gpu.json").read_text())
    steps = results["steps"]
    assert proc.returncode == 0, {k: v.get("error") for k, v in steps.items()}
    assert list(steps) == ["cuda_tests", "kernels", "fcos_r50", "meinst_mini8", "torchvision_maskrcnn"]
    assert steps["cuda_tests"]["status"] == "ok" and steps["cuda_tests"]["figures"]["passed"] > 0
    kernels = steps["kernels"]["figures"]
    assert kernels["paste"]["equals_cpu_kernel"] and kernels["rasterize"]["equals_cpu_kernel"]
    assert all(kernels[k]["max_abs_difference"] < 1e-5 for k in ("pairwise_iou", "blend", "embedding_coupling",
                                                                  "shape_saliency"))
    fcos = steps["fcos_r50"]["figures"]
    heads = ("meinst", "crmask", "blendmask", "embedmask", "centermask", "refinemask")
    assert all(fcos[h]["train_images_per_s"] > 0 and fcos[h]["inference_cost_batch1"] > 0 for h in heads)
    assert steps["meinst_mini8"]["figures"]["iterations"] == 2
    assert steps["torchvision_maskrcnn"]["status"] == ("ok" if "torchvision" in results["environment"] and
                                                       results["environment"]["torchvision"] else "skipped")
    assert "| fcos_r50 | ok |" in (tmp_path / "gpu.md").read_text()
