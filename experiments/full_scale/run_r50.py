"""Every R-50 1x config at its full input size (shorter side 800) on the CPU: 2 training iterations
(batch 2) on 2 coco-mini train images and an evaluation on them, each config in a process of its
own, so that its peak memory is its own. Writes docs/full_scale_cpu.md and .json: seconds per
iteration, evaluation seconds, peak memory, and whether the run completed.

    MASKREP_DATASETS=../shared/data python experiments/full_scale/run_r50.py

Not a measurement of accuracy (2 iterations from random weights): the check that each config builds,
trains and evaluates at the size it is written for.
"""

import argparse
import glob
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs"))
    parser.add_argument("--runs", default=str(REPO / "outputs" / "full_scale"))
    args = parser.parse_args()

    from maskrep.codecs import PCACodec
    from maskrep.data import CocoInstances
    from maskrep.engine import fit_codec

    root = Path(os.environ.get("MASKREP_DATASETS", REPO.parent / "shared" / "data")) / "coco-mini"
    ann, images = root / "annotations" / "instances_train2017.json", root / "train2017"
    codec = Path(args.runs) / "pca28_d60_coco-mini-train.npz"  # MEInst's matrix, fitted on coco-mini train
    if not codec.exists():
        codec.parent.mkdir(parents=True, exist_ok=True)
        fit_codec(PCACodec(mask_size=28, dim=60), list(CocoInstances(ann))).save(codec)
    rows = {}
    for config in sorted(glob.glob(str(REPO / "experiments" / "*" / "*_R_50_1x*.py"))):
        name = Path(config).stem
        run = Path(args.runs) / name
        command = [sys.executable, "-m", "maskrep", "train", "--config", config, "--data", str(ann), str(images),
                   "--out", str(run), "--no-resume", "solver.max_iter=2", "solver.batch_size=2", "solver.warmup_iters=1",
                   "solver.steps=[]", "solver.log_period=1", "solver.checkpoint_period=1000", "data.num_images=2",
                   "data.num_workers=0", "eval_period=0"]
        if "meinst" in name:
            command.append(f"model.mask_head.codec={codec}")
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        output = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - t0
        logs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()] if (
            run / "metrics.jsonl").exists() else []
        iters = [r["time_per_iter"] for r in logs if "time_per_iter" in r]
        rows[name] = {"config": str(Path(config).relative_to(REPO)), "completed": proc.returncode == 0,
                      "seconds_per_iteration": iters, "total_seconds": seconds,
                      "peak_memory_gib": usage.ru_maxrss / 2**20,  # ru_maxrss is in KiB on Linux
                      "mask_head": (json.loads((run / "config.json").read_text())["model"].get("mask_head") or {}).get(
                          "name") if (run / "config.json").exists() else None,
                      "error": None if proc.returncode == 0 else output.strip().splitlines()[-1]}
        print(f"   {'ok' if proc.returncode == 0 else 'FAILED'} in {seconds:.0f} s, peak {rows[name]['peak_memory_gib']:.1f} GiB"
              + ("" if proc.returncode == 0 else f": {rows[name]['error']}"), flush=True)
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    (Path(args.out) / "full_scale_cpu.json").write_text(json.dumps({"machine": machine, "runs": rows}, indent=1))
    lines = ["# Every R-50 1x config at full size on the CPU", "",
             "Each `experiments/*/*_R_50_1x*.py` trains 2 iterations (batch 2, random weights) at its full input size",
             "(shorter side 800, longer at most 1333) on 2 coco-mini train images and evaluates on them, each in a",
             f"process of its own ({machine}):", "",
             "    MASKREP_DATASETS=../shared/data python experiments/full_scale/run_r50.py", "",
             "The check that each config builds, trains and evaluates at the size it is written for; the times are",
             "what a 2-core CPU takes, not what the configs are meant for (a GPU).", "",
             "| config | mask head | completed | seconds per iteration (1st, 2nd) | whole run, s | peak memory, GiB |",
             "|---|---|---|---|---|---|"]
    for name, r in rows.items():
        its = ", ".join(f"{t:.1f}" for t in r["seconds_per_iteration"]) or "-"
        lines.append(f"| {r['config']} | {r['mask_head'] or '-'} | {'yes' if r['completed'] else 'no: ' + r['error']} | "
                     f"{its} | {r['total_seconds']:.0f} | {r['peak_memory_gib']:.1f} |")
    (Path(args.out) / "full_scale_cpu.md").write_text("\n".join(lines) + "\n")
    return 0 if all(r["completed"] for r in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
