"""Every figure that needs an accelerator, from one command (docs/gpu.md).

    python -m benchmarks.gpu --out DIR                 # on a CUDA machine: about 6 minutes of an H200
    python -m benchmarks.gpu --dry-run --out DIR       # every step on the CPU at tiny sizes (make test runs it)
    python -m benchmarks.gpu --pack outputs/gpu_pack   # here, before: the data, the PCA matrix and the wheels

Steps, each timed, each failure recorded (the rest go on), DIR/gpu.json and DIR/gpu.md rewritten
after every step so that a run cut short keeps what it measured:

1. ``cuda_tests``: the suite's CUDA-marked tests (the numba.cuda kernels against their references)
   on the GPU (in the dry run: in numba's CUDA simulator);
2. ``kernels``: paste, rasterisation, pairwise IoU and the assembly ops, maskrep's GPU path against
   torch's own GPU path for the same job (or the CPU peer where torch has none), with parity;
3. ``fcos_r50``: FCOS-R50 at 800 x 1333, training images/s (bf16 autocast, batch 8) and inference
   images/s (batch 1 and 8), alone and with each of the six heads: each head's added cost;
4. ``meinst_mini8``: 300 iterations of MEInst R-18 on the 8 coco-mini images of the CPU check
   (experiments/meinst/meinst_R_18_mini8.py): the loss, the mask AP, seconds per iteration;
5. ``torchvision_maskrcnn``: a DCT codec inside torchvision's Mask R-CNN
   (:func:`maskrep.integrations.torchvision_codec_maskrcnn`): training steps, mask loss, images/s.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
STEPS = ("cuda_tests", "kernels", "fcos_r50", "meinst_mini8", "torchvision_maskrcnn")
#: what the GPU machine may lack, brought as wheels (``--pack`` downloads them for CPython 3.12, x86-64)
WHEELS = ("pycocotools", "pytest", "pluggy", "iniconfig", "packaging", "pygments", "hypothesis", "sortedcontainers",
          "attrs", "tqdm")
#: modules the run imports, and the wheel that provides each
NEEDED = {"pycocotools": "pycocotools", "pytest": "pytest", "hypothesis": "hypothesis", "tqdm": "tqdm"}
HEADS = ("meinst", "crmask", "blendmask", "embedmask", "centermask", "refinemask")


# ---- set-up ---------------------------------------------------------------------------------------


def install_missing(wheels: Path, site: Path) -> list[str]:
    """Install, from the wheels in ``wheels`` only (no network), the modules of :data:`NEEDED` this
    Python lacks into ``site``, and put ``site`` on the path of this process and its children."""
    missing = [wheel for module, wheel in NEEDED.items() if importlib.util.find_spec(module) is None]
    if missing:
        if not wheels.is_dir():
            raise FileNotFoundError(f"modules {missing} are missing and there is no wheel folder {wheels} "
                                    "(make it with `python -m benchmarks.gpu --pack ...` on a machine with a network)")
        site.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheels),
                        "--target", str(site), *missing], check=True)
    if site.is_dir():
        sys.path.insert(0, str(site))
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), str(REPO), os.environ.get("PYTHONPATH")]))
        importlib.invalidate_caches()
    return missing


def pack(out: Path, wheels: Path) -> None:
    """Prepare, on a machine with the data and a network, what the GPU machine cannot fetch: the 8
    coco-mini train images of the CPU check with their annotations, the PCA matrix its MEInst
    config fits on all of coco-mini train, and the wheels of :data:`WHEELS`."""
    from maskrep.codecs import PCACodec
    from maskrep.data import CocoInstances
    from maskrep.engine import fit_codec

    root = Path(os.environ.get("MASKREP_DATASETS", REPO.parent / "shared" / "data")) / "coco-mini"
    ann = root / "annotations" / "instances_train2017.json"
    doc = json.loads(ann.read_text())
    with_instances = {a["image_id"] for a in doc["annotations"] if not a.get("iscrowd")}
    keep = [im for im in doc["images"] if im["id"] in with_instances][:8]
    ids = {im["id"] for im in keep}
    small = {**doc, "images": keep, "annotations": [a for a in doc["annotations"] if a["image_id"] in ids]}
    (out / "coco-mini" / "annotations").mkdir(parents=True, exist_ok=True)
    (out / "coco-mini" / "train2017").mkdir(parents=True, exist_ok=True)
    (out / "coco-mini" / "annotations" / "instances_train2017.json").write_text(json.dumps(small))
    for im in keep:
        shutil.copy(root / "train2017" / im["file_name"], out / "coco-mini" / "train2017" / im["file_name"])
    codec = out / "pca28_d60_coco-mini-train.npz"  # what the MEInst config fits on all of coco-mini train
    if not codec.exists():
        fit_codec(PCACodec(mask_size=28, dim=60), list(CocoInstances(ann))).save(codec)
    wheels.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps",
                    "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
                    "--python-version", "3.12", "--implementation", "cp", "-d", str(wheels), *WHEELS], check=True)
    print(f"packed {len(keep)} images into {out}, the PCA matrix at {codec}, wheels in {wheels}")


def environment() -> dict:
    import numba
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "numba": numba.__version__,
           "cpu_cores": os.cpu_count(), "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    for name in ("numba_cuda", "torchvision", "pycocotools"):
        try:
            env[name] = importlib.metadata.version(name.replace("_", "-"))
        except importlib.metadata.PackageNotFoundError:
            env[name] = None
    return env


# ---- timing helpers -------------------------------------------------------------------------------


def _sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def best_time(fn, repeats: int = 3, warmup: int = 1) -> float:
    """The best of ``repeats`` timed calls of ``fn`` after ``warmup`` calls, device synchronised."""
    for _ in range(warmup):
        fn()
    _sync()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync()
        best = min(best, time.perf_counter() - t0)
    return best


# ---- steps ----------------------------------------------------------------------------------------


def step_cuda_tests(ctx: dict) -> dict:
    """The suite's CUDA-marked tests: real hardware, or numba's simulator in the dry run."""
    import re

    env = dict(os.environ)
    if ctx["dry_run"]:
        env["NUMBA_ENABLE_CUDASIM"] = "1"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
                           str(REPO / "tests")], check=False, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=ctx["limit"])
    tail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-500:]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|errors?)", tail)}
    out = {"summary": tail, **counts, "simulator": ctx["dry_run"]}
    if proc.returncode != 0:
        raise RuntimeError(f"pytest -m cuda exited {proc.returncode}: {tail}\n{proc.stdout[-2000:]}")
    return out


def _grid_sample_paste(probs, boxes, h: int, w: int, threshold: float = 0.5):
    """detectron2's GPU paste rule: every mask resampled over the whole image with ``grid_sample``
    (align_corners=False, zeros outside), >= threshold; (N, H, W) bool on the inputs' device."""
    import torch
    from torch.nn import functional as F

    x0, y0, x1, y1 = boxes[:, 0:1], boxes[:, 1:2], boxes[:, 2:3], boxes[:, 3:4]
    xs = torch.arange(w, device=probs.device, dtype=torch.float32) + 0.5
    ys = torch.arange(h, device=probs.device, dtype=torch.float32) + 0.5
    gx = (xs[None] - x0) / (x1 - x0) * 2 - 1  # (N, W)
    gy = (ys[None] - y0) / (y1 - y0) * 2 - 1  # (N, H)
    grid = torch.stack([gx[:, None, :].expand(-1, h, -1), gy[:, :, None].expand(-1, -1, w)], -1)
    return F.grid_sample(probs[:, None].float(), grid, align_corners=False)[:, 0] >= threshold


def step_kernels(ctx: dict) -> dict:
    import numpy as np
    import pycocotools.mask as mask_utils
    import torch

    from maskrep.assembly import blend, embedding_coupling, shape_saliency
    from maskrep.ops import mask_iou_pairwise, paste_masks, rasterize_in_boxes

    dry, dev = ctx["dry_run"], ctx["device"]
    rng = np.random.default_rng(0)
    out = {}
    # what maskrep's "cuda" backend takes: CUDA tensors on a GPU; numpy arrays in the simulator
    on_gpu = (lambda a: torch.as_tensor(a, device=dev)) if dev.type == "cuda" else (lambda a: a)

    # paste: N 28 x 28 maps into an 800 x 1333 image
    n, (h, w) = (6, (24, 32)) if dry else (1000, (800, 1333))
    probs = rng.random((n, 28, 28)).astype(np.float32)
    x0, y0 = rng.uniform(0, w * 0.7, n), rng.uniform(0, h * 0.7, n)
    boxes = np.stack([x0, y0, x0 + rng.uniform(4, w * 0.3, n), y0 + rng.uniform(4, h * 0.3, n)], 1)
    p_dev, b_dev = on_gpu(probs), on_gpu(boxes)
    p_t, b_t = torch.as_tensor(probs, device=dev), torch.as_tensor(boxes, device=dev, dtype=torch.float32)
    ours = paste_masks(p_dev, b_dev, (h, w), backend="cuda")
    peer = _grid_sample_paste(p_t, b_t, h, w)
    reference = paste_masks(probs, boxes, (h, w), backend="numba")
    t_ours = best_time(lambda: paste_masks(p_dev, b_dev, (h, w), backend="cuda"), repeats=1 if dry else 3)
    t_peer = best_time(lambda: _grid_sample_paste(p_t, b_t, h, w), repeats=1 if dry else 3)
    out["paste"] = {"masks": n, "image": [h, w], "maskrep_cuda_masks_per_s": n / t_ours,
                    "grid_sample_masks_per_s": n / t_peer, "ratio": t_peer / t_ours,
                    "equals_cpu_kernel": bool(np.array_equal(np.asarray(torch.as_tensor(ours).cpu()), reference)),
                    "pixels_differing_from_grid_sample": int((torch.as_tensor(ours).cpu() != peer.cpu()).sum())}

    # rasterisation: one 12-vertex polygon per instance into its box at 28 x 28
    n = 6 if dry else 2000
    angles = np.sort(rng.uniform(0, 2 * np.pi, (n, 12)), 1)
    radii = rng.uniform(10, 60, (n, 12))
    centres = rng.uniform(80, 600, (n, 2))
    polys = [[np.stack([c[0] + r * np.cos(a), c[1] + r * np.sin(a)], 1).reshape(-1)] for c, r, a in
             zip(centres, radii, angles)]
    pboxes = np.array([[p[0][0::2].min(), p[0][1::2].min(), p[0][0::2].max(), p[0][1::2].max()] for p in polys])
    pb_dev = on_gpu(pboxes)
    ours = rasterize_in_boxes(polys, pb_dev, 28, backend="cuda")
    cpu = rasterize_in_boxes(polys, pboxes, 28, backend="numba")

    def coco_crops():
        for p, b in zip(polys, pboxes):  # detectron2's PolygonMasks.crop_and_resize: pycocotools per instance
            s = 28 / np.maximum(b[2:] - b[:2], 0.1)
            q = [((np.asarray(p[0]).reshape(-1, 2) - b[:2]) * s).reshape(-1).tolist()]
            mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(q, 28, 28)))

    t_ours = best_time(lambda: rasterize_in_boxes(polys, pb_dev, 28, backend="cuda"), repeats=1 if dry else 3)
    t_cpu = best_time(lambda: rasterize_in_boxes(polys, pboxes, 28, backend="numba"), repeats=1 if dry else 3)
    t_coco = best_time(coco_crops, repeats=1, warmup=0)
    out["rasterize"] = {"instances": n, "maskrep_cuda_per_s": n / t_ours, "maskrep_numba_cpu_per_s": n / t_cpu,
                        "pycocotools_per_s": n / t_coco, "ratio_to_pycocotools": t_coco / t_ours,
                        "equals_cpu_kernel": bool(np.array_equal(np.asarray(torch.as_tensor(ours).cpu()), cpu))}

    # pairwise IoU of full-image masks: maskrep's bit-packed CPU kernel against a float product on the GPU
    n, (h, w) = (5, (16, 24)) if dry else (300, (480, 640))
    a = rng.random((n, h, w)) < 0.3
    b = rng.random((n, h, w)) < 0.3
    a_t, b_t = torch.as_tensor(a, device=dev), torch.as_tensor(b, device=dev)

    def torch_iou():
        fa, fb = a_t.flatten(1).float(), b_t.flatten(1).float()
        inter = fa @ fb.T
        return inter / (fa.sum(1)[:, None] + fb.sum(1)[None] - inter)

    t_ours = best_time(lambda: mask_iou_pairwise(a, b, backend="numba"), repeats=1 if dry else 3)
    t_peer = best_time(torch_iou, repeats=1 if dry else 3)
    diff = float(np.abs(mask_iou_pairwise(a, b) - torch_iou().double().cpu().numpy()).max())
    out["pairwise_iou"] = {"pairs": n * n, "pixels": h * w, "maskrep_numba_cpu_pairs_per_s": n * n / t_ours,
                           "torch_device_pairs_per_s": n * n / t_peer, "max_abs_difference": diff}

    # assembly: the torch path on the device against the numba CPU kernel, same job
    k, d, (fh, fw) = (3, 16, (8, 12)) if dry else (100, 16, (200, 336))
    g = torch.Generator().manual_seed(0)
    bx = torch.tensor(np.stack([rng.uniform(0, fw * 2, k), rng.uniform(0, fh * 2, k),
                                rng.uniform(fw * 2, fw * 4, k), rng.uniform(fh * 2, fh * 4, k)], 1), dtype=torch.float32)
    jobs = {
        "blend": (lambda x: blend(x[0], x[1], x[2], mask_size=56, backend="auto"),
                  [torch.randn(1, 4, fh, fw, generator=g), torch.randn(k, 4, 14, 14, generator=g), bx]),
        "embedding_coupling": (lambda x: embedding_coupling(x[0], x[1], x[2], backend="auto"),
                               [torch.randn(1, d, fh, fw, generator=g), torch.randn(k, d, generator=g),
                                torch.rand(k, d, generator=g)]),
        "shape_saliency": (lambda x: shape_saliency(x[0], x[1], x[2], stride=4.0, backend="auto"),
                           [torch.randn(k, 32, 32, generator=g), torch.randn(1, 1, fh, fw, generator=g), bx]),
    }
    for name, (fn, args) in jobs.items():
        on_dev = [t.to(dev) for t in args]
        on_cpu = [t.double().numpy() for t in args]
        t_dev = best_time(lambda fn=fn, x=on_dev: fn(x), repeats=1 if dry else 3)
        t_cpu = best_time(lambda fn=fn, x=on_cpu: fn(x), repeats=1 if dry else 3)
        diff = float(np.abs(fn(on_dev).double().cpu().numpy() - fn(on_cpu)).max())
        out[name] = {"instances": k, "torch_device_per_s": k / t_dev, "numba_cpu_per_s": k / t_cpu,
                     "ratio": t_cpu / t_dev, "max_abs_difference": diff}
    return out


def _small_heads() -> dict:
    """Head settings for the dry run (FPN width 16)."""
    return {"meinst": {"num_convs": 1}, "crmask": {}, "embedmask": {"embed_dim": 5, "branch_channels": 8,
                                                                   "branch_convs": 1},
            "blendmask": {"attn_size": 4, "mask_size": 8, "basis_channels": 8, "basis_convs": 1},
            "centermask": {"mask_size": 6, "saliency_channels": 8, "saliency_convs": 1},
            "refinemask": {"channels": 24, "mask_size": 4, "instance_convs": 1, "semantic_convs": 1}}


def _pca_codec(size: int = 28, dim: int = 60):
    """A PCA matrix fitted on random ellipses: the shapes of the timing runs (no data needed)."""
    import numpy as np

    from maskrep.codecs import PCACodec

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    c, r = rng.uniform(0.3, 0.7, (2000, 2)) * size, rng.uniform(0.2, 0.5, (2000, 2)) * size
    masks = ((yy - c[:, 1, None, None]) / r[:, 1, None, None]) ** 2 + ((xx - c[:, 0, None, None]) / r[:, 0, None, None]) ** 2 < 1
    return PCACodec(mask_size=size, dim=dim).fit(masks)


def step_fcos_r50(ctx: dict) -> dict:
    import torch

    from maskrep.detection import build_fcos
    from maskrep.detection.heads import get_head
    from maskrep.testing import synthetic_batch

    dry, dev = ctx["dry_run"], ctx["device"]
    h, w, batch = (128, 160, 2) if dry else (800, 1333, 8)
    arch = ({"depth": 18, "width": 8, "fpn_channels": 16, "norm": "GN", "fcos": {"num_convs": 1}} if dry else
            {"depth": 50, "fpn_channels": 256, "norm": "FrozenBN"})
    channels, classes = arch["fpn_channels"], 80
    train_iters, infer_iters = (1, 1) if dry else (5, 10)
    codec = _pca_codec(8, 6) if dry else _pca_codec()
    out = {"input": [h, w], "train_batch": batch, "dtype_train": "bf16 autocast", "dtype_inference": "float32",
           "architecture": "ResNet-18, width 8" if dry else "ResNet-50 FPN, FCOS (AdelaiDet defaults)"}
    for name in ("fcos", *HEADS):
        torch.manual_seed(0)
        head = None
        if name != "fcos":
            params = {"in_channels": channels, **(_small_heads()[name] if dry else {})}
            if name == "meinst":
                params["codec"] = codec
            elif name != "crmask":
                params["num_classes"] = classes
            head = get_head(name, **params)
        model = build_fcos(classes, mask_head=head, use_p2=bool(head is not None and "p2" in head.in_features),
                           **arch).to(dev)
        images, targets = synthetic_batch(batch, h, w, num_classes=classes, instances=6, device=dev)
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-4, momentum=0.9)

        def train_step(model=model, opt=opt, images=images, targets=targets):
            with torch.autocast(dev.type, dtype=torch.bfloat16):
                losses = model(images, targets)
            opt.zero_grad(set_to_none=True)
            sum(losses.values()).backward()
            opt.step()

        model.train()
        t_train = best_time(train_step, repeats=train_iters, warmup=1)
        model.eval()
        row = {"train_images_per_s": batch / t_train,
               "params": sum(p.numel() for p in model.parameters()),
               "head_params": sum(p.numel() for p in head.parameters()) if head is not None else 0}
        with torch.no_grad():
            for b in (1, batch):
                sizes = [(h, w)] * b
                t = best_time(lambda m=model, x=images[:b], s=sizes: m(x, image_sizes=s), repeats=infer_iters,
                              warmup=1)
                row[f"inference_images_per_s_batch{b}"] = b / t
        if dev.type == "cuda":
            row["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
            torch.cuda.reset_peak_memory_stats()
        out[name] = row
        del model, opt, images, targets
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    base = out["fcos"]
    for name in HEADS:
        out[name]["train_cost"] = base["train_images_per_s"] / out[name]["train_images_per_s"]
        out[name]["inference_cost_batch1"] = (base["inference_images_per_s_batch1"]
                                              / out[name]["inference_images_per_s_batch1"])
    return out


def step_meinst_mini8(ctx: dict) -> dict:
    from maskrep.engine.recipe import load_config, train

    data = ctx["data"]
    if not (data / "coco-mini" / "annotations" / "instances_train2017.json").is_file():
        return {"skip": f"no coco-mini under {data} (pack it with --pack, carry it to the GPU machine)"}
    os.environ["MASKREP_DATASETS"] = str(data)
    run_dir = ctx["out"] / "meinst_mini8"
    packed = data / "pca28_d60_coco-mini-train.npz"  # from --pack; else fitted into the output folder
    codec = packed if packed.exists() else ctx["out"] / "pca28_d60_coco-mini-train.npz"
    overrides = [f"out_dir={run_dir}", f"model.mask_head.codec={codec}", "solver.checkpoint_period=1000",
                 "eval_period=0"]
    overrides += (["solver.max_iter=2", "solver.batch_size=2", "solver.warmup_iters=1", "solver.steps=[]",
                   "solver.log_period=1", "data.min_size_train=[128]", "data.min_size_test=128",
                   "data.max_size_train=200", "data.max_size_test=200"] if ctx["dry_run"] else
                  ["solver.max_iter=300", "solver.steps=[225,270]", "solver.warmup_iters=75"])
    cfg, module = load_config(str(REPO / "experiments" / "meinst" / "meinst_R_18_mini8.py"), overrides)
    result = train(cfg, module, resume=False, progress=False)
    logs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    losses = [r["loss"] for r in logs if "loss" in r]
    metrics = json.loads((run_dir / "coco_eval.json").read_text()) if (run_dir / "coco_eval.json").exists() else {}
    return {"iterations": result["iterations"], "seconds_per_iteration": result["train_seconds"] / result["iterations"],
            "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
            "mask_AP": metrics.get("segm", {}).get("AP"), "mask_AP50": metrics.get("segm", {}).get("AP50"),
            "box_AP": metrics.get("bbox", {}).get("AP"), "overrides": overrides}


def step_torchvision_maskrcnn(ctx: dict) -> dict:
    """torchvision's Mask R-CNN with its mask predictor swapped for a DCT codec's
    (:func:`maskrep.integrations.torchvision_codec_maskrcnn`): training steps on synthetic images,
    the mask loss, images/s, and inference."""
    if importlib.util.find_spec("torchvision") is None:
        return {"skip": "torchvision is not installed here (it is on the GPU machine)"}
    import torch

    from maskrep.codecs import get_codec
    from maskrep.integrations import torchvision_codec_maskrcnn
    from maskrep.testing import synthetic_batch

    dev, dry = ctx["device"], ctx["dry_run"]
    h, w, batch, iters = (96, 128, 2, 2) if dry else (800, 1333, 4, 20)
    torch.manual_seed(0)
    model = torchvision_codec_maskrcnn(get_codec("dct", mask_size=28, dim=60), num_classes=7).to(dev)
    images, targets = synthetic_batch(batch, h, w, num_classes=6, device=dev)
    tv_images = [im[:, :h, :w].float() / 255 for im in images]
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1,
                   "masks": torch.from_numpy(t["masks"].to_bitmap()).to(dev, torch.uint8)} for t in targets]
    opt = torch.optim.SGD(model.parameters(), lr=0.005, momentum=0.9)
    model.train()
    losses = []
    _sync()
    t0 = time.perf_counter()
    for _ in range(iters):
        out = model(tv_images, tv_targets)
        opt.zero_grad()
        sum(out.values()).backward()
        opt.step()
        losses.append(float(out["loss_mask"]))
    _sync()
    seconds = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        dets = model(tv_images[:1])
    return {"input": [h, w], "batch": batch, "iterations": iters, "train_images_per_s": batch * iters / seconds,
            "loss_mask_first": losses[0], "loss_mask_last": losses[-1], "inference_masks": list(dets[0]["masks"].shape)}


# ---- the run --------------------------------------------------------------------------------------


def write_report(results: dict, out: Path) -> None:
    from maskrep._io import atomic_write, atomic_write_json

    atomic_write_json(str(out / "gpu.json"), results, indent=1)
    env = results["environment"]
    device = (f"Device: {env.get('gpu', 'no GPU (dry run on the CPU)')}; torch {env['torch']}, CUDA {env.get('cuda')}, "
              f"numba {env['numba']}, numba-cuda {env.get('numba_cuda')}, torchvision {env.get('torchvision')}, "
              f"Python {env['python']}.")
    dry = " (dry run: tiny sizes on the CPU; the figures mean nothing)" if results["dry_run"] else ""
    command = f"Command: `python -m benchmarks.gpu {'--dry-run ' if results['dry_run'] else ''}--out DIR`{dry}."
    lines = ["# GPU figures", "", device, "", command, "", "| step | status | seconds |", "|---|---|---|"]
    for name, step in results["steps"].items():
        lines.append(f"| {name} | {step['status']} | {step['seconds']:.1f} |")
    for name, step in results["steps"].items():
        lines += ["", f"## {name}", "", "```", json.dumps(step.get("figures", step.get("error")), indent=1), "```"]
    atomic_write(str(out / "gpu.md"), lambda f: f.write(("\n".join(lines) + "\n").encode()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", help="folder for gpu.json, gpu.md and the runs")
    parser.add_argument("--dry-run", action="store_true", help="every step on the CPU at tiny sizes")
    parser.add_argument("--steps", nargs="*", choices=STEPS, default=list(STEPS), help="the steps to run (all)")
    parser.add_argument("--data", default=str(REPO / "outputs" / "gpu_pack"),
                        help="folder holding coco-mini/ (from --pack; default outputs/gpu_pack, else $MASKREP_DATASETS)")
    parser.add_argument("--wheels", default=str(REPO / "wheels"), help="wheels of the missing modules (wheels/)")
    parser.add_argument("--pack", metavar="DIR", help="prepare the data, the PCA matrix and the wheels into DIR, "
                                                      "then stop")
    parser.add_argument("--step-limit", type=float, default=240.0, help="seconds a subprocess step may take (240)")
    args = parser.parse_args(argv)
    if args.pack:
        pack(Path(args.pack), Path(args.wheels))
        return 0
    if not args.out:
        parser.error("--out is required")
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.dry_run:  # numba's simulator stands in for the GPU; set before numba is imported
        os.environ["NUMBA_ENABLE_CUDASIM"] = "1"
    installed = install_missing(Path(args.wheels), out / "site")

    import torch

    data = Path(args.data)
    if not (data / "coco-mini").is_dir():
        data = Path(os.environ.get("MASKREP_DATASETS", REPO.parent / "shared" / "data"))
    device = torch.device("cuda" if torch.cuda.is_available() and not args.dry_run else "cpu")
    ctx = {"dry_run": args.dry_run, "device": device, "out": out, "data": data, "limit": args.step_limit}
    results = {"dry_run": args.dry_run, "environment": environment(), "installed_from_wheels": installed, "steps": {}}
    if device.type != "cuda" and not args.dry_run:
        print("no CUDA device: the steps run on the CPU at full size (use --dry-run for the quick check)")
    for name in args.steps:
        print(f"== {name}", flush=True)
        t0 = time.perf_counter()
        try:
            figures = globals()[f"step_{name}"](ctx)
            status = "skipped" if "skip" in figures else "ok"
            results["steps"][name] = {"status": status, "seconds": time.perf_counter() - t0, "figures": figures}
        except Exception as e:  # noqa: BLE001 (any failure is recorded; the next step still runs)
            results["steps"][name] = {"status": "failed", "seconds": time.perf_counter() - t0,
                                      "error": f"{type(e).__name__}: {e}",
                                      "traceback": traceback.format_exc()[-3000:]}
        print(f"   {results['steps'][name]['status']} in {results['steps'][name]['seconds']:.1f} s", flush=True)
        write_report(results, out)
    failed = [n for n, s in results["steps"].items() if s["status"] == "failed"]
    print(f"wrote {out / 'gpu.json'} and {out / 'gpu.md'}" + (f"; failed: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
