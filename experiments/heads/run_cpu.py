"""The comparison of every mask head on one detector: FCOS R-18 from scratch on 8 coco-mini train images at
shorter side 320, each head trained with the same data and schedule and evaluated on the same 8
images. For each trained model: COCO box and mask AP and the boundary F-score of its masks at the
original resolution; then the inference time of every trained model, in one process, taking turns,
against FCOS alone. RefineMask is also evaluated with its 28 x 28 stage alone. Writes docs/heads_cpu.json (one entry per
head, merged across runs) and the table in docs/heads_cpu.md.

    MASKREP_DATASETS=../shared/data python experiments/heads/run_cpu.py             # every row, ~2.5 h
    MASKREP_DATASETS=../shared/data python experiments/heads/run_cpu.py --heads meinst crmask
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {
    "fcos": "experiments/fcos/fcos_R_18_mini8.py",
    "meinst": "experiments/meinst/meinst_R_18_mini8.py",
    "crmask": "experiments/crmask/crmask_R_18_mini8.py",
    "blendmask": "experiments/blendmask/blendmask_R_18_mini8.py",
    "blendmask_crmask": "experiments/blendmask/blendmask_crmask_R_18_mini8.py",
    "embedmask": "experiments/embedmask/embedmask_R_18_mini8.py",
    "centermask": "experiments/centermask/centermask_R_18_mini8.py",
    "refinemask": "experiments/refinemask/refinemask_R_18_mini8.py",
}
#: MEInst's coefficient head with other codecs: config overrides per row
CODEC_ROWS = {
    "meinst_dct": "dct:mask_size=28,dim=60",
    "meinst_polar": "polar:mask_size=28,rays=58",
    "meinst_contour": "contour:mask_size=28,dim=60",
    "meinst_learned": "learned:mask_size=28,dim=60",
}
CONFIGS.update(dict.fromkeys(CODEC_ROWS, "experiments/meinst/meinst_codec_R_18_mini8.py"))
ROW_OVERRIDES = {name: [f"model.mask_head.codec={spec}", f"out_dir=outputs/{name}_R_18_mini8"]
                 for name, spec in CODEC_ROWS.items()}
LABELS = {"fcos": "FCOS (boxes only)", "meinst": "MEInst", "crmask": "CRMask", "blendmask": "BlendMask",
          "blendmask_crmask": "BlendMask + CRMask attentions", "embedmask": "EmbedMask", "centermask": "CenterMask",
          "refinemask": "RefineMask", "refinemask_28": "RefineMask, 28 x 28 stage alone",
          "meinst_dct": "MEInst head, DCT codec (28 x 28, 60)", "meinst_polar": "MEInst head, polar codec (58 rays, 60)",
          "meinst_contour": "MEInst head, contour codec (30 vertices, 60)",
          "meinst_learned": "MEInst head, learned codec (28 x 28, 60)"}


@torch.no_grad()
def evaluate_masks(model, dataset) -> dict:
    """COCO box / mask AP and the mean matched boundary F-score over the dataset's instances."""
    from maskrep.data.detection import collate
    from maskrep.detection.postprocess import masks_in_image
    from maskrep.engine.evaluation import coco_eval, detections_to_coco, matched_boundary_fscores
    from maskrep.structures import InstanceMasks

    model.eval()
    results, fscores = [], []
    for i in range(len(dataset)):
        images, targets = collate([dataset[i]])
        t = targets[0]
        det = model(images, image_sizes=[t["size"]])[0]
        results.extend(detections_to_coco(det, t, dataset.category_ids))
        if "mask" in det:
            image, insts = dataset.records[i]
            gt = InstanceMasks.from_instances(insts, (image["height"], image["width"])).to_bitmap()
            pred = masks_in_image(det["mask"], det["boxes"], t["size"], t["orig_size"])
            fscores.append(matched_boundary_fscores(pred, gt))
    out = {"box": coco_eval(dataset.coco.path, results, "bbox", dataset.image_ids)}
    if fscores:
        out["segm"] = coco_eval(dataset.coco.path, results, "segm", dataset.image_ids)
        out["boundary_f"] = float(np.concatenate(fscores).mean())
    return {k: ({n: v for n, v in m.items() if n != "summary"} if isinstance(m, dict) else m) for k, m in out.items()}


@torch.no_grad()
def inference_times(models: dict, dataset, repeats: int = 3) -> dict:
    """Seconds per image, batch 1, masks pasted at the original resolution: the best of ``repeats``
    passes over the dataset for each model, the models taking turns so that they share the
    machine's state."""
    from maskrep.data.detection import collate
    from maskrep.detection.postprocess import masks_in_image

    batches = [collate([dataset[i]]) for i in range(len(dataset))]

    def one_pass(model) -> float:
        t0 = time.perf_counter()
        for images, targets in batches:
            det = model(images, image_sizes=[targets[0]["size"]])[0]
            if "mask" in det:
                masks_in_image(det["mask"], det["boxes"], targets[0]["size"], targets[0]["orig_size"])
        return (time.perf_counter() - t0) / len(batches)

    for model in models.values():
        model.eval()
        one_pass(model)  # warm-up: compiled kernels, allocator
    best = dict.fromkeys(models, float("inf"))
    for _ in range(repeats):
        for name, model in models.items():
            best[name] = min(best[name], one_pass(model))
    return best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--heads", nargs="*", default=list(CONFIGS), choices=list(CONFIGS),
                        help="the rows to train (default: all); none: only time the trained models present")
    parser.add_argument("--out", default=str(REPO / "docs"))
    parser.add_argument("overrides", nargs="*", help="config overrides for every run, e.g. solver.max_iter=20")
    args = parser.parse_args()

    from maskrep.engine.recipe import load_config, load_model, train

    os.makedirs(args.out, exist_ok=True)
    json_path = Path(args.out) / "heads_cpu.json"
    results = json.loads(json_path.read_text()) if json_path.exists() else {}
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    for name in args.heads:
        overrides = [*ROW_OVERRIDES.get(name, []), *args.overrides]
        cfg, module = load_config(str(REPO / CONFIGS[name]), overrides)
        print(f"== {name}: {CONFIGS[name]} {' '.join(overrides)}", flush=True)
        result = train(cfg, module, resume=False, progress=False)
        model, _ = load_model(os.path.join(cfg["out_dir"], "model_final.pth"), cfg, module)
        _, val = module.build_datasets(cfg)
        head_params = sum(p.numel() for p in model.mask_head.parameters()) if model.mask_head else 0
        common = {"config": CONFIGS[name], "overrides": overrides, "iterations": result["iterations"],
                  "train_seconds": result["train_seconds"], "params": sum(p.numel() for p in model.parameters()),
                  "head_params": head_params, "machine": machine}
        results[name] = {**common, **evaluate_masks(model, val)}
        if name == "refinemask":  # the same trained model, its 28 x 28 stage pasted alone
            model.mask_head.output_stage = 1
            results["refinemask_28"] = {**common, **evaluate_masks(model, val)}
        print(json.dumps({k: results[name][k] for k in ("iterations", "train_seconds", "box", "segm", "boundary_f")
                          if k in results[name]}, indent=1), flush=True)
        json_path.write_text(json.dumps(results, indent=1))
    # inference times of every trained model present, in one process, against FCOS alone
    models, val = {}, None
    for name in [n for n in CONFIGS if n in results]:
        cfg, module = load_config(str(REPO / CONFIGS[name]), results[name]["overrides"])
        final = os.path.join(cfg["out_dir"], "model_final.pth")
        if os.path.exists(final):
            models[name], _ = load_model(final, cfg, module)
            val = val or module.build_datasets(cfg)[1]
    if "fcos" in models:
        times = inference_times(models, val)
        for name, seconds in times.items():
            results[name]["inference_s"] = seconds
            results[name]["inference_ratio"] = seconds / times["fcos"]
        if "refinemask" in models:
            models["refinemask"].mask_head.output_stage = 1
            t28 = inference_times({"fcos": models["fcos"], "refinemask_28": models["refinemask"]}, val)
            results["refinemask_28"].update(inference_s=t28["refinemask_28"],
                                            inference_ratio=t28["refinemask_28"] / t28["fcos"])
        json_path.write_text(json.dumps(results, indent=1))
    write_table(results, Path(args.out) / "heads_cpu.md")
    return 0


def write_table(results: dict, path: Path) -> None:
    """Rewrite the table between the markers in ``path`` from ``results``."""
    rows = [("| head | train time | box AP | box AP50 | mask AP50 | mask AP | boundary F | inference | ratio to FCOS | "
             "parameters | of which the head |"),
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in [*CONFIGS, "refinemask_28"]:
        r = results.get(name)
        if r is None:
            continue
        segm = r.get("segm") or {}
        cells = [f"{segm['AP50']:.3f}", f"{segm['AP']:.3f}", f"{r['boundary_f']:.3f}"] if segm else ["-", "-", "-"]
        timing = (f"{1000 * r['inference_s']:.0f} ms | x{r['inference_ratio']:.2f}" if "inference_s" in r else "- | -")
        rows.append(f"| {LABELS[name]} | {r['train_seconds'] / 60:.1f} min | {r['box']['AP']:.3f} | {r['box']['AP50']:.3f} "
                    f"| {' | '.join(cells)} | {timing} | {r['params']:,} | {r['head_params']:,} |")
    text = path.read_text() if path.exists() else "<!-- table -->\n<!-- /table -->\n"
    start, end = text.index("<!-- table -->"), text.index("<!-- /table -->")
    path.write_text(text[:start] + "<!-- table -->\n" + "\n".join(rows) + "\n" + text[end:])


if __name__ == "__main__":
    sys.exit(main())
