"""Detector training and evaluation from a Python config: building models, data and optimisers,
and the train / evaluate jobs (the config files themselves: :mod:`maskrep.engine.config`, whose
functions are re-exported here).

A config is a Python file that defines ``cfg`` (nested dicts of plain values, see
:func:`base_config`) and may define any of the builders below to replace the defaults:
``build_model(cfg, num_classes)``, ``build_datasets(cfg) -> (train, val)``,
``build_optimizer(cfg, model)``, ``build_scheduler(cfg, optimizer)``. Command-line overrides
``key.sub=value`` change ``cfg`` before anything is built, so the builders see the final values.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import time
import warnings

import torch
from tqdm import tqdm

from .._io import atomic_write_json, remove_stale_temporaries
from ..data.detection import DetectionDataset, TrainingBatches, make_loader
from ..detection import build_fcos
from ..distributed import get_rank, get_world_size, init_from_env, is_main
from .config import (
    apply_overrides,
    base_config,
    coco_split,
    config_changes,
    data_paths,
    load_config,
    resolve_path,
    validate_config,
)
from .evaluation import evaluate_detector
from .trainer import Trainer, load_checkpoint, read_checkpoint, warmup_step_lr

__all__ = ["apply_overrides", "base_config", "build_mask_head", "coco_split", "data_paths", "evaluate", "load_config",
           "load_model", "resolve_codec", "resolve_path", "train"]


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
    from ..detection.heads import get_head, head_class, list_heads

    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in list_heads():
        raise ValueError(f"model.mask_head.name must be one of {', '.join(list_heads())}, got {name!r} (a plugin's "
                         "heads are found through the 'maskrep.heads' entry-point group of its installed package)")
    accepted = inspect.signature(head_class(name)).parameters
    unknown = [k for k in spec if k not in accepted]
    if unknown:
        raise ValueError(f"model.mask_head: the {name} head has no setting {unknown[0]!r}; its settings: "
                         f"{', '.join(k for k in accepted if k not in ('in_channels', 'num_classes'))}")
    if spec.get("codec") is not None:
        spec["codec"] = resolve_codec(spec["codec"])
    if "num_classes" in accepted:
        spec["num_classes"] = num_classes
    return get_head(name, in_channels=in_channels, **spec)


def resolve_codec(codec, where: str = "model.mask_head.codec"):
    """A codec from what a config may hold: a codec (as it is), a dict ``{"name", "params", "arrays"}``
    (what checkpoints store), a saved ``.npz`` path (``$MASKREP_DATASETS``-style variables expanded),
    or a spec ``name:key=value,...`` for a codec that needs no fitting."""
    from ..codecs import MaskCodec, get_codec, list_codecs, load

    if isinstance(codec, MaskCodec):
        return codec
    if isinstance(codec, dict):
        if codec["name"] not in list_codecs():
            plugin = f" from the plugin package {codec['plugin']!r}" if codec.get("plugin") else ""
            raise ValueError(f"{where}: the codec {codec['name']!r}{plugin} is not installed; install it to use "
                             "this checkpoint")
        built = get_codec(codec["name"], **codec["params"])
        built.load_state_dict({k: torch.as_tensor(v).numpy() for k, v in codec["arrays"].items()})
        return built
    text = str(codec)
    if not text.endswith(".npz") and text.partition(":")[0] in list_codecs():
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
    from ..codecs.base import REGISTRY as CODEC_PLUGINS
    from ..detection.heads import REGISTRY as HEAD_PLUGINS

    codec = getattr(getattr(model, "mask_head", None), "codec", None)
    if codec is not None:
        extra["codec"] = {"name": codec.name, "params": dict(codec.params),
                          "arrays": {k: torch.from_numpy(v) for k, v in codec.state_dict().items()}}
        if CODEC_PLUGINS.origin(codec.name):  # the package to install to use the checkpoint elsewhere
            extra["codec"]["plugin"] = CODEC_PLUGINS.origin(codec.name)
    head = (cfg["model"].get("mask_head") or {}).get("name")
    if head and HEAD_PLUGINS.origin(head):
        extra["head_plugin"] = HEAD_PLUGINS.origin(head)
    return extra


def load_model(checkpoint: str, cfg: dict | None = None, module=None, *, no_config_hint: str = "pass --config"):
    """(model, checkpoint extra) from a checkpoint written by ``maskrep train``; ``cfg`` (default: the
    one the checkpoint carries) says how to build the model. A ``cfg`` whose mask head is not the
    checkpoint's is refused, naming both."""
    state = read_checkpoint(checkpoint, advice="is it a checkpoint written by maskrep train?")
    extra = state.get("extra") or {}
    if cfg is None:
        if "config" not in extra:
            raise ValueError(f"{checkpoint}: the checkpoint carries no config; {no_config_hint}")
        cfg = extra["config"]
    cfg = copy.deepcopy(cfg)
    head = cfg["model"].get("mask_head")
    from ..detection.heads import list_heads

    if head and extra.get("head_plugin") and head.get("name") not in list_heads():
        raise ValueError(f"{checkpoint} holds a model with the {head['name']!r} mask head of the plugin package "
                         f"{extra['head_plugin']!r}, which is not installed; install it to use this checkpoint")
    trained = ((extra.get("config") or {}).get("model") or {}).get("mask_head") or {}
    if "config" in extra and (head or {}).get("name") != trained.get("name"):
        def kind(spec):
            return f"a model with the {spec['name']} mask head" if spec and spec.get("name") else "a model without a mask head"

        raise ValueError(f"{checkpoint} holds {kind(trained)}, but the config builds {kind(head)}: pass the config "
                         "it was trained with, or none (the checkpoint carries its own)")
    if head and "codec" in extra:
        head["codec"] = extra["codec"]  # the matrix the weights were trained with, not a file that may have moved
    if "class_names" in extra:
        num_classes = len(extra["class_names"])
    else:
        num_classes = _builder(module, "build_datasets")(cfg)[1].num_classes
    model = _builder(module, "build_model")(cfg, num_classes)
    load_checkpoint(checkpoint, model, restore_rng=False)
    return model, {**extra, "config": cfg}


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


def train(cfg: dict, module=None, *, resume: bool = True, progress: bool = True, evaluate_again: bool = False) -> dict:
    """Train (resuming from ``out_dir``'s last checkpoint when ``resume``), then evaluate on the val set.

    Returns {"iterations", "train_seconds", "metrics", "complete"}; ``metrics`` holds COCOeval's
    numbers and printed ``summary`` per task. Writes ``config.json``, ``metrics.jsonl``,
    checkpoints and ``coco_eval.json`` under ``cfg["out_dir"]``. A run already complete there
    (its last checkpoint at ``solver.max_iter`` and its ``coco_eval.json`` written) is not touched:
    its results are returned with ``complete=True``, unless ``evaluate_again``.

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
    if s["max_iter"] < s["warmup_iters"]:
        warnings.warn(f"solver.max_iter={s['max_iter']} is below solver.warmup_iters={s['warmup_iters']}: the "
                      "learning rate never reaches solver.lr (lower solver.warmup_iters too)", stacklevel=2)
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
        done = os.path.join(out_dir, "coco_eval.json")
        finished = int(read_checkpoint(last).get("iteration", 0))
        if finished >= s["max_iter"] and os.path.exists(done) and not evaluate_again:
            with open(done) as f:
                metrics = json.load(f)
            return {"iterations": finished, "train_seconds": 0.0, "metrics": metrics, "complete": True}
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
    if is_main():
        trainer._log({"iteration": trainer.iteration, "eval": _loggable(metrics)})
    return {"iterations": trainer.iteration, "train_seconds": seconds, "metrics": metrics, "complete": False}


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
