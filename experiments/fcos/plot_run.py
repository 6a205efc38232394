"""Plot a training run's metrics.jsonl: the losses and the periodic COCO box AP.

    python experiments/fcos/plot_run.py outputs/fcos_R_18_mini8 docs/fcos_cpu.png
"""

import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main(run_dir: str, out: str) -> None:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        records = [json.loads(line) for line in f]
    losses = [r for r in records if "loss" in r]
    evals = [r for r in records if "eval" in r]
    final = os.path.join(run_dir, "coco_eval.json")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    it = [r["iteration"] for r in losses]
    for key in ("loss", "loss_fcos_cls", "loss_fcos_loc", "loss_fcos_ctr"):
        ax1.plot(it, [r[key] for r in losses], label=key)
    ax1.set_xlabel("iteration")
    ax1.set_yscale("log")
    ax1.legend(fontsize=8)
    ax1.set_title("training losses")
    pts = [(r["iteration"], r["eval"]["bbox"]) for r in evals]
    if os.path.exists(final):
        with open(final) as f:
            pts.append((losses[-1]["iteration"], json.load(f)["bbox"]))
    for key in ("AP50", "AP"):
        ax2.plot([p[0] for p in pts], [p[1][key] for p in pts], marker="o", label=f"box {key}")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("iteration")
    ax2.legend(fontsize=8)
    ax2.set_title("COCO box AP on the 8 training images")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
