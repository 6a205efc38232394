"""Detector training and evaluation from a Python config.

A config is a Python file that defines ``cfg`` (nested dicts of plain values, see
:func:`base_config`) and may define any of the builders below to replace the defaults:
``build_model(cfg, num_classes)``, ``build_datasets(cfg) -> (train, val)``,
``build_optimizer(cfg, model)``, ``build_scheduler(cfg, optimizer)``. Command-line overrides
``key.sub=value`` change ``cfg`` before anything is built, so the builders see the final values.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import inspect
import json
import os
import time
import types

import torch

from ..data.detection import DetectionDataset, TrainingBatches, make_loader
from ..detection import build_fcos
from ..detection.detector import PIXEL_MEAN, PIXEL_STD
from ..distributed import get_rank, get_world_size, init_from_env, is_main
from .evaluation import evaluate_detector
from .trainer import Trainer, load_checkpoint, read_checkpoint, warmup_step_lr

__all__ = ["apply_overrides", "base_config", "build_mask_head", "coco_split", "data_paths", "evaluate", "load_config",
           "load_model", "resolve_path", "train"]

#: Data sets are found under the folder this environment variable names (detectron2's
#: DETECTRON2_DATASETS convention): ``${MASKREP_DATASETS}/coco/...``, ``${MASKREP_DATASETS}/coco-mini/...``.
DATASETS_VAR = "MASKREP_DATASETS"


def coco_split(name: str, split: str) -> tuple[str, str]:
    """(annotations, image folder) of a COCO-layout data set under ``$MASKREP_DATASETS``, left
    unexpanded until the data are built: ``coco_split("coco", "val2017")``."""
    root = f"${{{DATASETS_VAR}}}/{name}"
    return f"{root}/annotations/instances_{split}.json", f"{root}/{split}"


def resolve_path(path: str, key: str) -> str:
    """Expand environment variables in a config path; name the key and the variable when one is unset."""
    expanded = os.path.expandvars(os.fspath(path))
    if "$" in expanded:
        var = expanded[expanded.index("$"):].split("/")[0]
        raise ValueError(f"{key} = {path!r} needs {var}, which is not set: set {DATASETS_VAR} to the folder that "
                         f"holds the data sets, or pass --data ANNOTATIONS IMAGE_DIR")
    return expanded


def base_config() -> dict:
    """FCOS R-50 1x on COCO with AdelaiDet's defaults (docs/methods.md §1), COCO 2017 under
    ``$MASKREP_DATASETS/coco``."""
    return {
        "data": {
            "train": coco_split("coco", "train2017"),
            "val": coco_split("coco", "val2017"),
            "min_size_train": (800,), "max_size_train": 1333, "flip_prob": 0.5,
            "min_size_test": 800, "max_size_test": 1333,
            "num_images": None, "with_masks": False, "num_workers": 2,
        },
        "model": {
            "depth": 50, "norm": "FrozenBN", "freeze_at": 2, "width": 64, "fpn_channels": 256, "fpn_norm": None,
            "use_p2": False, "backbone_weights": None, "stride_in_1x1": False, "input_format": "RGB",
            "pixel_mean": PIXEL_MEAN, "pixel_std": PIXEL_STD, "mask_head": None,
            "fcos": {"sizes_of_interest": (64, 128, 256, 512), "center_sample": True, "pos_radius": 1.5,
                     "num_convs": 4, "norm": "GN", "use_scale": True, "thresh_with_ctr": False,
                     "score_thresh": 0.05, "pre_nms_topk": 1000, "nms_thresh": 0.6, "post_nms_topk": 100,
                     "box_quality": "ctrness", "loss_normalizer_cls": "fg"},
        },
        "solver": {
            "batch_size": 16, "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-4, "weight_decay_norm": 0.0,
            "max_iter": 90000, "steps": (60000, 80000), "gamma": 0.1, "warmup_iters": 1000, "warmup_factor": 1e-3,
            "warmup_method": "linear",
            "clip_grad": None, "checkpoint_period": 5000, "amp": "bf16", "seed": 0, "log_period": 20,
        },
        "eval_period": 0,
        "out_dir": "outputs/fcos",
    }


# ---- config files and overrides ------------------------------------------------------------------

def load_config(path: str, overrides=()) -> tuple[dict, types.ModuleType]:
    """Execute the config file; return its ``cfg`` (overrides applied) and the module (for builders)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config not found: {path}")
    spec = importlib.util.spec_from_file_location(f"maskrep_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "cfg"):
        raise ValueError(f"{path}: a config must define `cfg` (start from maskrep.engine.recipe.base_config())")
    cfg = apply_overrides(copy.deepcopy(module.cfg), overrides)
    return cfg, module


def apply_overrides(cfg: dict, overrides) -> dict:
    """``["solver.lr=0.02", "data.num_images=8"]`` -> cfg changed in place (values parsed as Python literals)."""
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            value = raw  # a bare string such as a path
        node = cfg
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                raise KeyError(f"override {item!r}: no section {p!r} in the config")
            node = node[p]
        if parts[-1] not in node:
            raise KeyError(f"override {item!r}: unknown key {parts[-1]!r}; known: {sorted(node)}")
        node[parts[-1]] = value
    return cfg


# ---- default builders ----------------------------------------------------------------------------

def build_model(cfg: dict, num_classes: int) -> torch.nn.Module:
    m = cfg["model"]
    head = build_mask_head(m["mask_head"], in_channels=m["fpn_channels"], num_classes=num_classes)
    return build_fcos(num_classes, depth=m["depth"], norm=m["norm"], freeze_at=m["freeze_at"], width=m["width"],
                      fpn_channels=m["fpn_channels"], fpn_norm=m["fpn_norm"], use_p2=m["use_p2"],
                      backbone_weights=m["backbone_weights"], fcos=m["fcos"], stride_in_1x1=m["stride_in_1x1"],
                      input_format=m["input_format"], pixel_mean=m["pixel_mean"], pixel_std=m["pixel_std"],
                      mask_head=head)


def build_mask_head(spec: dict | None, *, in_channels: int, num_classes: int):
    """``cfg["model"]["mask_head"]`` -> a mask head: ``{"name": ..., **keywords}``.

    ``in_channels`` comes from the FPN, ``num_classes`` from the data (for heads that take it); a
    ``codec`` given as a path is loaded (``$MASKREP_DATASETS``-style variables expanded), as a dict
    ``{"name", "params", "arrays"}`` (what checkpoints store) rebuilt, as a codec used as it is.
    """
    if not spec:
        return None
    from ..codecs import MaskCodec, get_codec, load
    from ..detection.heads import HEADS, get_head

    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in HEADS:
        raise ValueError(f"model.mask_head.name must be one of {', '.join(sorted(HEADS))}, got {name!r}")
    codec = spec.get("codec")
    if isinstance(codec, dict):
        built = get_codec(codec["name"], **codec["params"])
        built.load_state_dict({k: torch.as_tensor(v).numpy() for k, v in codec["arrays"].items()})
        spec["codec"] = built
    elif codec is not None and not isinstance(codec, MaskCodec):
        spec["codec"] = load(resolve_path(codec, "model.mask_head.codec"))
    accepted = inspect.signature(HEADS[name]).parameters
    if "num_classes" in accepted:
        spec["num_classes"] = num_classes
    return get_head(name, in_channels=in_channels, **spec)


def checkpoint_extra(cfg: dict, model, dataset) -> dict:
    """What a checkpoint carries besides weights, so that it alone rebuilds the model: the config
    (as JSON values), the class names and COCO category ids, and a mask head's codec arrays."""
    extra = {"config": json.loads(json.dumps(cfg, default=str)), "class_names": list(dataset.coco.class_names),
             "category_ids": list(dataset.category_ids)}
    codec = getattr(getattr(model, "mask_head", None), "codec", None)
    if codec is not None:
        extra["codec"] = {"name": codec.name, "params": dict(codec.params),
                          "arrays": {k: torch.from_numpy(v) for k, v in codec.state_dict().items()}}
    return extra


def load_model(checkpoint: str, cfg: dict | None = None, module=None):
    """(model, checkpoint extra) from a checkpoint written by ``maskrep train``; ``cfg`` (default: the
    one the checkpoint carries) says how to build the model."""
    state = read_checkpoint(checkpoint)
    extra = state.get("extra") or {}
    if cfg is None:
        if "config" not in extra:
            raise ValueError(f"{checkpoint}: the checkpoint carries no config; pass --config")
        cfg = extra["config"]
    cfg = copy.deepcopy(cfg)
    head = cfg["model"].get("mask_head")
    if head and "codec" in extra:
        head["codec"] = extra["codec"]  # the matrix the weights were trained with, not a file that may have moved
    if "class_names" in extra:
        num_classes = len(extra["class_names"])
    else:
        num_classes = _builder(module, "build_datasets")(cfg)[1].num_classes
    model = _builder(module, "build_model")(cfg, num_classes)
    load_checkpoint(checkpoint, model, restore_rng=False)
    return model, {**extra, "config": cfg}


def data_paths(cfg: dict, split: str) -> tuple[str, str]:
    """The config's (annotations, image folder) of ``split`` ("train" or "val"), variables expanded."""
    pair = cfg["data"][split]
    if not pair or len(pair) != 2:
        raise ValueError(f"data.{split} must be (annotations JSON, image folder), got {pair!r}")
    return tuple(resolve_path(p, f"data.{split}") for p in pair)


def build_datasets(cfg: dict) -> tuple[DetectionDataset, DetectionDataset]:
    d = cfg["data"]
    train = DetectionDataset(*data_paths(cfg, "train"), min_size=d["min_size_train"], max_size=d["max_size_train"],
                             flip_prob=d["flip_prob"], with_masks=d["with_masks"], filter_empty=True,
                             num_images=d["num_images"])
    val = DetectionDataset(*data_paths(cfg, "val"), min_size=d["min_size_test"], max_size=d["max_size_test"],
                           with_masks=False, num_images=d["num_images"])
    return train, val


def build_optimizer(cfg: dict, model: torch.nn.Module) -> torch.optim.Optimizer:
    s = cfg["solver"]
    norm_types = (torch.nn.GroupNorm, torch.nn.BatchNorm2d, torch.nn.LayerNorm)
    decay, no_decay = [], []
    for module in model.modules():
        for p in module.parameters(recurse=False):
            if p.requires_grad:
                (no_decay if isinstance(module, norm_types) else decay).append(p)
    groups = [{"params": decay, "weight_decay": s["weight_decay"]},
              {"params": no_decay, "weight_decay": s["weight_decay_norm"]}]
    return torch.optim.SGD(groups, lr=s["lr"], momentum=s["momentum"])


def build_scheduler(cfg: dict, optimizer):
    s = cfg["solver"]
    return warmup_step_lr(optimizer, warmup_iters=s["warmup_iters"], warmup_factor=s["warmup_factor"],
                          steps=s["steps"], gamma=s["gamma"], warmup_method=s.get("warmup_method", "linear"))


def _builder(module, name):
    return getattr(module, name, None) or globals()[name]


# ---- jobs ----------------------------------------------------------------------------------------

def train(cfg: dict, module=None, *, resume: bool = True, progress: bool = True) -> dict:
    """Train (resuming from ``out_dir``'s last checkpoint when ``resume``), then evaluate on the val set.

    Returns {"iterations", "train_seconds", "metrics"}; writes ``config.json``, ``metrics.jsonl``,
    checkpoints and ``coco_eval.json`` under ``cfg["out_dir"]``.
    """
    device = init_from_env()
    s = cfg["solver"]
    world = get_world_size()
    if s["batch_size"] % world:
        raise ValueError(f"solver.batch_size={s['batch_size']} is not divisible by the {world} processes")
    torch.manual_seed(s["seed"])
    train_set, val_set = _builder(module, "build_datasets")(cfg)
    model = _builder(module, "build_model")(cfg, train_set.num_classes).to(device)
    optimizer = _builder(module, "build_optimizer")(cfg, model)
    scheduler = _builder(module, "build_scheduler")(cfg, optimizer)
    out_dir = cfg["out_dir"]
    os.makedirs(out_dir, exist_ok=True)
    if is_main():
        with open(os.path.join(out_dir, "config.json"), "w") as f:
            json.dump(cfg, f, indent=1, default=str)

    def loader(start_iter: int):
        batches = TrainingBatches(len(train_set), s["batch_size"] // world, seed=s["seed"], start_iter=start_iter,
                                  rank=get_rank(), world_size=world)
        return make_loader(train_set, batches, cfg["data"]["num_workers"])

    hooks = []
    if cfg.get("eval_period"):
        def periodic_eval(trainer, it):
            if it % cfg["eval_period"] == 0 and it < trainer.max_iter:
                m = evaluate_detector(trainer.model, val_set, device=device, progress=False)
                if is_main():
                    trainer._log({"iteration": it, "eval": m})
        hooks.append(periodic_eval)
    trainer = Trainer(model, optimizer, scheduler, loader, max_iter=s["max_iter"], out_dir=out_dir, device=device,
                      checkpoint_period=s["checkpoint_period"], clip_grad=s["clip_grad"], amp=s["amp"],
                      log_period=s["log_period"], hooks=hooks, progress=progress,
                      checkpoint_extra=checkpoint_extra(cfg, model, train_set))
    if resume:
        trainer.resume()
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    metrics = evaluate_detector(model, val_set, out_dir=out_dir, device=device, progress=progress)
    return {"iterations": trainer.iteration, "train_seconds": seconds, "metrics": metrics}


def evaluate(cfg: dict, checkpoint: str, module=None, *, out_dir: str | None = None, progress: bool = True) -> dict:
    """COCO-evaluate ``checkpoint`` on the config's val set."""
    device = init_from_env()
    _, val_set = _builder(module, "build_datasets")(cfg)
    model, _ = load_model(checkpoint, cfg, module)
    model.to(device)
    return evaluate_detector(model, val_set, out_dir=out_dir or cfg["out_dir"], device=device, progress=progress)
