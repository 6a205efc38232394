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
from tqdm import tqdm

from .._io import atomic_write_json, remove_stale_temporaries
from ..data.detection import DetectionDataset, TrainingBatches, make_loader
from ..detection import build_fcos
from ..detection.detector import PIXEL_MEAN, PIXEL_STD
from ..distributed import get_rank, get_world_size, init_from_env, is_main
from .evaluation import evaluate_detector
from .trainer import Trainer, load_checkpoint, read_checkpoint, warmup_step_lr

__all__ = ["apply_overrides", "base_config", "build_mask_head", "coco_split", "data_paths", "evaluate", "load_config",
           "load_model", "resolve_codec", "resolve_path", "train"]

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
    """Execute the config file; return its ``cfg`` (overrides applied, then checked) and the module
    (for builders)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config not found: {path}")
    if not path.endswith(".py"):
        raise ValueError(f"{path}: a config is a Python file (.py) that defines `cfg`; see experiments/fcos/")
    spec = importlib.util.spec_from_file_location(f"maskrep_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (SyntaxError, ImportError, NameError, AttributeError, TypeError) as e:
        raise ValueError(f"{path}: the config does not run ({type(e).__name__}: {e})") from None
    if not isinstance(getattr(module, "cfg", None), dict):
        raise ValueError(f"{path}: a config must define `cfg` (start from maskrep.engine.recipe.base_config())")  # noqa: TRY004
    cfg = apply_overrides(copy.deepcopy(module.cfg), overrides)
    validate_config(cfg, where=path)
    return cfg, module


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool))


#: key -> (what it must be, check); None passes where a setting may be unset
_RULES = {
    "solver.batch_size": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "solver.lr": ("a number > 0", lambda v: _is_number(v) and v > 0),
    "solver.momentum": ("a number in [0, 1)", lambda v: _is_number(v) and 0 <= v < 1),
    "solver.weight_decay": ("a number >= 0", lambda v: _is_number(v) and v >= 0),
    "solver.weight_decay_norm": ("a number >= 0", lambda v: _is_number(v) and v >= 0),
    "solver.max_iter": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "solver.steps": ("a list of integers, e.g. (60000, 80000)",
                     lambda v: isinstance(v, (list, tuple)) and all(_is_int(x) and x >= 0 for x in v)),
    "solver.gamma": ("a number > 0", lambda v: _is_number(v) and v > 0),
    "solver.warmup_iters": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "solver.warmup_factor": ("a number in (0, 1]", lambda v: _is_number(v) and 0 < v <= 1),
    "solver.warmup_method": ("'linear' or 'constant'", lambda v: v in ("linear", "constant")),
    "solver.clip_grad": ("a number > 0, or None", lambda v: v is None or (_is_number(v) and v > 0)),
    "solver.checkpoint_period": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "solver.log_period": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "solver.amp": ("'bf16' or None", lambda v: v in ("bf16", "none", None)),
    "solver.seed": ("an integer", _is_int),
    "eval_period": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "data.min_size_train": ("a list of integers >= 1, e.g. (800,)",
                            lambda v: isinstance(v, (list, tuple)) and len(v) > 0 and all(_is_int(x) and x >= 1 for x in v)),
    "data.max_size_train": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "data.min_size_test": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "data.max_size_test": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "data.flip_prob": ("a number in [0, 1]", lambda v: _is_number(v) and 0 <= v <= 1),
    "data.num_images": ("an integer >= 1, or None", lambda v: v is None or (_is_int(v) and v >= 1)),
    "data.with_masks": ("True or False", lambda v: isinstance(v, bool)),
    "data.num_workers": ("an integer >= 0", lambda v: _is_int(v) and v >= 0),
    "model.depth": ("one of 18, 34, 50, 101", lambda v: v in (18, 34, 50, 101)),
    "model.norm": ("'FrozenBN', 'BN' or 'GN'", lambda v: v in ("FrozenBN", "BN", "GN")),
    "model.freeze_at": ("an integer in [0, 5]", lambda v: _is_int(v) and 0 <= v <= 5),
    "model.width": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "model.fpn_channels": ("an integer >= 1", lambda v: _is_int(v) and v >= 1),
    "model.fpn_norm": ("None, 'BN' or 'GN'", lambda v: v in (None, "BN", "GN")),
    "model.use_p2": ("True or False", lambda v: isinstance(v, bool)),
    "model.backbone_weights": ("a file path, or None", lambda v: v is None or isinstance(v, str)),
    "model.mask_head": ("a dict with a 'name', or None", lambda v: v is None or (isinstance(v, dict) and "name" in v)),
    "out_dir": ("a folder path", lambda v: isinstance(v, str) and v != ""),
}


def validate_config(cfg: dict, *, where: str = "config") -> dict:
    """Check the settings a run depends on; an error names the key, the value and what is allowed."""
    flat = _flatten(cfg)
    for key, (allowed, ok) in _RULES.items():
        if key in flat and not ok(_value(cfg, key)):
            raise ValueError(f"{where}: {key} = {_value(cfg, key)!r} must be {allowed}")
    s = cfg.get("solver", {})
    if _is_int(s.get("max_iter")) and isinstance(s.get("steps"), (list, tuple)) and list(s["steps"]) != sorted(s["steps"]):
        raise ValueError(f"{where}: solver.steps = {s['steps']!r} must be increasing")
    return cfg


def _value(cfg: dict, key: str):
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


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
    ``codec`` goes through :func:`resolve_codec`.
    """
    if not spec:
        return None
    from ..detection.heads import HEADS, get_head

    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in HEADS:
        raise ValueError(f"model.mask_head.name must be one of {', '.join(sorted(HEADS))}, got {name!r}")
    if spec.get("codec") is not None:
        spec["codec"] = resolve_codec(spec["codec"])
    accepted = inspect.signature(HEADS[name]).parameters
    if "num_classes" in accepted:
        spec["num_classes"] = num_classes
    return get_head(name, in_channels=in_channels, **spec)


def resolve_codec(codec, where: str = "model.mask_head.codec"):
    """A codec from what a config may hold: a codec (as it is), a dict ``{"name", "params", "arrays"}``
    (what checkpoints store), a saved ``.npz`` path (``$MASKREP_DATASETS``-style variables expanded),
    or a spec ``name:key=value,...`` for a codec that needs no fitting."""
    from ..codecs import CODECS, MaskCodec, get_codec, load

    if isinstance(codec, MaskCodec):
        return codec
    if isinstance(codec, dict):
        built = get_codec(codec["name"], **codec["params"])
        built.load_state_dict({k: torch.as_tensor(v).numpy() for k, v in codec["arrays"].items()})
        return built
    text = str(codec)
    if not text.endswith(".npz") and text.partition(":")[0] in CODECS:
        from .reconstruction import parse_codec_spec

        built = parse_codec_spec(text)
        if not built.is_fitted:
            raise ValueError(f"{where} = {text!r}: this codec needs fitting; fit it first (`maskrep fit "
                             f"{built.name} ... --out FILE.npz`) and give the file")
        return built
    return load(resolve_path(text, where))


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

#: settings a resumed run may change; the rest must match the run in ``out_dir``
RESUMABLE_CHANGES = ("solver.max_iter", "solver.steps", "solver.gamma", "solver.lr", "solver.warmup_iters",
                     "solver.warmup_factor", "solver.warmup_method", "solver.checkpoint_period", "solver.log_period",
                     "solver.clip_grad", "eval_period", "data.num_workers", "out_dir", "model.backbone_weights")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "mask_head":
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.loads(json.dumps(v, default=str))  # tuples and lists compare alike
    return out


def config_changes(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """(changes a resumed run applies, changes it refuses), each "key: old -> new"."""
    a, b = _flatten(old), _flatten(new)
    applied, refused = [], []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            (applied if key in RESUMABLE_CHANGES else refused).append(f"{key}: {a.get(key, '<unset>')!r} -> "
                                                                     f"{b.get(key, '<unset>')!r}")
    return applied, refused


def train(cfg: dict, module=None, *, resume: bool = True, progress: bool = True) -> dict:
    """Train (resuming from ``out_dir``'s last checkpoint when ``resume``), then evaluate on the val set.

    Returns {"iterations", "train_seconds", "metrics"}; writes ``config.json``, ``metrics.jsonl``,
    checkpoints and ``coco_eval.json`` under ``cfg["out_dir"]``.

    Resuming checks the config against the run's: changes in :data:`RESUMABLE_CHANGES` are applied
    (a new ``solver.lr`` included) and said; any other change is refused before anything is
    written, so ``config.json`` always describes the weights beside it. Temporary files of killed
    writers are removed. SIGINT / SIGTERM save a checkpoint and raise
    :class:`maskrep.engine.trainer.TrainingInterrupted`.
    """
    validate_config(cfg)
    device = init_from_env()
    s = cfg["solver"]
    world = get_world_size()
    if s["batch_size"] % world:
        raise ValueError(f"solver.batch_size={s['batch_size']} is not divisible by the {world} processes")
    out_dir = cfg["out_dir"]
    os.makedirs(out_dir, exist_ok=True)
    for tmp in remove_stale_temporaries(out_dir):
        _say(f"removed {tmp}, left by a writer that was killed")
    last = os.path.join(out_dir, "last_checkpoint.pth")
    resuming = resume and os.path.exists(last)
    applied = []
    if resuming:
        saved = (read_checkpoint(last).get("extra") or {}).get("config")
        if saved is None and os.path.exists(os.path.join(out_dir, "config.json")):
            with open(os.path.join(out_dir, "config.json")) as f:
                saved = json.load(f)
        if saved is not None:
            applied, refused = config_changes(saved, cfg)
            if refused:
                raise ValueError(f"{out_dir} holds a run with other settings; a resumed run cannot change "
                                 f"{'; '.join(refused)}. Start afresh with --no-resume, or give another --out")
    torch.manual_seed(s["seed"])
    train_set, val_set = _builder(module, "build_datasets")(cfg)
    model = _builder(module, "build_model")(cfg, train_set.num_classes).to(device)
    optimizer = _builder(module, "build_optimizer")(cfg, model)
    scheduler = _builder(module, "build_scheduler")(cfg, optimizer)

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
                    trainer._log({"iteration": it, "eval": _loggable(m)})
                    _say(f"iteration {it}: " + ", ".join(f"{task} AP {v['AP']:.3f} AP50 {v['AP50']:.3f}"
                                                         for task, v in m.items()))
        hooks.append(periodic_eval)
    trainer = Trainer(model, optimizer, scheduler, loader, max_iter=s["max_iter"], out_dir=out_dir, device=device,
                      checkpoint_period=s["checkpoint_period"], clip_grad=s["clip_grad"], amp=s["amp"],
                      log_period=s["log_period"], hooks=hooks, progress=progress,
                      checkpoint_extra=checkpoint_extra(cfg, model, train_set))
    if resuming:
        it = trainer.resume(last)
        _apply_lr(optimizer, scheduler, s["lr"])
        _say(f"resumed from iteration {it} ({last})" + (f"; applying {'; '.join(applied)}" if applied else ""))
    else:
        trainer.start_fresh()
    if is_main():  # the record is written once the run is certain to start
        atomic_write_json(os.path.join(out_dir, "config.json"), json.loads(json.dumps(cfg, default=str)), indent=1)
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    metrics = evaluate_detector(model, val_set, out_dir=out_dir, device=device, progress=progress)
    return {"iterations": trainer.iteration, "train_seconds": seconds, "metrics": _loggable(metrics)}


def _say(message: str) -> None:
    if is_main():
        tqdm.write(message)


def _loggable(metrics: dict) -> dict:
    """Metrics without COCOeval's printed tables (kept for the console and coco_eval.json)."""
    return {task: {k: v for k, v in m.items() if k != "summary"} for task, m in metrics.items()}


def _apply_lr(optimizer, scheduler, lr: float) -> None:
    """A resumed run's base learning rate: every group restarts its schedule from ``lr``."""
    for group in optimizer.param_groups:
        group["initial_lr"] = lr
    scheduler.base_lrs = [lr] * len(optimizer.param_groups)
    for group, factor in zip(optimizer.param_groups, [f(scheduler.last_epoch) for f in scheduler.lr_lambdas]):
        group["lr"] = lr * factor


def evaluate(cfg: dict | None, checkpoint: str, module=None, *, out_dir: str | None = None, progress: bool = True,
             per_category: bool = False, data: tuple[str, str] | None = None) -> dict:
    """COCO-evaluate ``checkpoint`` on the val set of ``cfg`` (default: the config the checkpoint
    carries; ``data`` = (annotations, image folder) replaces its val set). Results go to ``out_dir``
    (default: ``eval_<checkpoint name>`` beside the checkpoint, so a training run's own
    ``coco_eval.json`` is never overwritten)."""
    device = init_from_env()
    model, extra = load_model(checkpoint, cfg, module)
    cfg = extra["config"]
    if data:
        cfg["data"]["val"] = tuple(data)
    validate_config(cfg)
    _, val_set = _builder(module, "build_datasets")(cfg)
    model.to(device)
    if out_dir is None:
        stem = os.path.splitext(os.path.basename(checkpoint))[0]
        out_dir = os.path.join(os.path.dirname(os.path.abspath(checkpoint)), f"eval_{stem}")
    return evaluate_detector(model, val_set, out_dir=out_dir, device=device, progress=progress,
                             per_category=per_category)
