"""Configs: a Python file defining ``cfg`` (nested dicts of plain values, :func:`base_config`),
``key.sub=value`` overrides, the checks every setting goes through, and what a resumed run may change.

Building models, data and optimisers from a config, and the train / evaluate jobs, are in
:mod:`maskrep.engine.recipe`.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
import os
import types

from ..detection.detector import PIXEL_MEAN, PIXEL_STD

__all__ = ["DATASETS_VAR", "RESUMABLE_CHANGES", "apply_overrides", "base_config", "coco_split", "config_changes",
           "data_paths", "load_config", "resolve_path", "validate_config"]


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
    "model.backbone_weights": ("a file path, torchvision://resnet<depth>, or None", lambda v: v is None or isinstance(v, str)),
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


def data_paths(cfg: dict, split: str) -> tuple[str, str]:
    """The config's (annotations, image folder) of ``split`` ("train" or "val"), variables expanded."""
    pair = cfg["data"][split]
    if not pair or len(pair) != 2:
        raise ValueError(f"data.{split} must be (annotations JSON, image folder), got {pair!r}")
    return tuple(resolve_path(p, f"data.{split}") for p in pair)


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
