"""The training loop: SGD with warm-up and steps, clipping, bf16 autocast on GPU, atomic checkpoints
with exact resume, a progress bar and a JSON-lines metrics log, DDP under ``torchrun``.

Exact resume: a checkpoint holds the model, optimiser, scheduler, iteration and the RNG states,
and the data stream (:class:`maskrep.data.detection.TrainingBatches`) is a function of the
iteration, so a run resumed from iteration k repeats an uninterrupted run's losses from k on.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from ..distributed import get_world_size, is_main, reduce_mean

__all__ = ["Trainer", "load_checkpoint", "save_checkpoint", "warmup_step_lr"]


def warmup_step_lr(optimizer, *, warmup_iters: int = 1000, warmup_factor: float = 1e-3, steps=(),
                   gamma: float = 0.1, warmup_method: str = "linear"):
    """LambdaLR: warm-up from ``warmup_factor`` then x ``gamma`` at each step (detectron2 WarmupMultiStepLR).

    ``warmup_method``: "linear" ramps the factor to 1; "constant" holds ``warmup_factor`` for the
    warm-up iterations (MEInst's configs: 500 at 1/3).
    """
    if warmup_method not in ("linear", "constant"):
        raise ValueError(f"warmup_method must be 'linear' or 'constant', got {warmup_method!r}")
    steps = sorted(steps)

    def factor(it: int) -> float:
        f = gamma ** sum(it >= s for s in steps)
        if it < warmup_iters:
            alpha = it / warmup_iters if warmup_method == "linear" else 0.0
            f *= warmup_factor * (1 - alpha) + alpha
        return f

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _rng_state() -> dict:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "python": list(random.getstate()[1]),
        "python_version": int(random.getstate()[0]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate((state["python_version"], tuple(state["python"]), None))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


def save_checkpoint(path: str, model, optimizer=None, scheduler=None, iteration: int = 0, extra=None) -> None:
    """Write atomically: a temporary file in the same folder, then rename over ``path``."""
    state = {"model": _unwrap(model).state_dict(), "iteration": iteration, "rng": _rng_state()}
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if scheduler is not None:
        state["scheduler"] = scheduler.state_dict()
    if extra:
        state["extra"] = extra
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, path)


def read_checkpoint(path: str) -> dict:
    """A checkpoint's contents, read with ``weights_only=True`` (no code runs)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f"checkpoint not found: {path}") from None


def load_checkpoint(path: str, model, optimizer=None, scheduler=None, *, restore_rng: bool = True) -> int:
    """Load with ``weights_only=True``; returns the iteration to continue from."""
    state = read_checkpoint(path)
    _unwrap(model).load_state_dict(state["model"])
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng and "rng" in state:
        _set_rng_state(state["rng"])
    return int(state.get("iteration", 0))


class Trainer:
    """Iteration-based training of a model that returns a dict of losses.

    Parameters
    ----------
    model : ``model(images, targets) -> {name: scalar loss}``; wrapped in DDP when a process group
        with more than one process exists.
    optimizer, scheduler : the scheduler steps once per iteration.
    make_loader : ``start_iter -> iterable of (images, targets)``, endless (see TrainingBatches).
    max_iter : total iterations.
    out_dir : checkpoints (``last_checkpoint.pth``, ``model_final.pth``) and ``metrics.jsonl``.
    checkpoint_period : iterations between checkpoints (0: only the final one).
    checkpoint_extra : saved with every checkpoint (the recipe stores the config, class names and
        a mask head's codec, so a checkpoint alone rebuilds the model).
    clip_grad : max total gradient norm, or None.
    amp : "bf16" autocast on CUDA; ignored on the CPU.
    hooks : callables ``hook(trainer, iteration)`` run after every iteration (e.g. periodic eval).
    """

    def __init__(self, model, optimizer, scheduler, make_loader: Callable, *, max_iter: int, out_dir: str,
                 device="cpu", checkpoint_period: int = 1000, clip_grad: float | None = None, amp: str | None = None,
                 log_period: int = 20, hooks=(), progress: bool = True, checkpoint_extra: dict | None = None):
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.make_loader = make_loader
        self.max_iter, self.out_dir = max_iter, out_dir
        self.checkpoint_period, self.clip_grad = checkpoint_period, clip_grad
        self.amp = amp if (amp and self.device.type == "cuda") else None
        if amp not in (None, "bf16", "none"):
            raise ValueError(f"amp must be 'bf16' or None, got {amp!r}")
        self.log_period, self.hooks, self.progress = log_period, list(hooks), progress
        self.checkpoint_extra = checkpoint_extra
        self.iteration = 0
        self.history: list[dict] = []
        self.ddp = None
        if get_world_size() > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)

    @property
    def last_checkpoint(self) -> str:
        return os.path.join(self.out_dir, "last_checkpoint.pth")

    def resume(self, path: str | None = None) -> int:
        """Continue from ``path`` (default: the last checkpoint in ``out_dir``, if any)."""
        path = path or self.last_checkpoint
        if os.path.exists(path):
            self.iteration = load_checkpoint(path, self.model, self.optimizer, self.scheduler)
        return self.iteration

    def save(self, path: str | None = None) -> None:
        if is_main():
            save_checkpoint(path or self.last_checkpoint, self.model, self.optimizer, self.scheduler, self.iteration,
                            extra=self.checkpoint_extra)

    def _log(self, record: dict) -> None:
        self.history.append(record)
        if is_main():
            with open(os.path.join(self.out_dir, "metrics.jsonl"), "a") as f:
                f.write(json.dumps(record) + "\n")

    def train(self) -> list[dict]:
        """Run from ``self.iteration`` to ``max_iter``; returns the per-iteration records of this call."""
        os.makedirs(self.out_dir, exist_ok=True)
        net = self.ddp or self.model
        net.train()
        start = self.iteration
        bar = tqdm(total=self.max_iter, initial=start, desc="train", disable=not (self.progress and is_main()),
                   dynamic_ncols=True)
        data = iter(self.make_loader(start))
        t_last, it_last = time.perf_counter(), start
        records = []
        while self.iteration < self.max_iter:
            images, targets = next(data)
            images = images.to(self.device, non_blocking=True)
            targets = [{k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp == "bf16"):
                losses = net(images, targets)
            total = sum(losses.values())
            if not torch.isfinite(total):
                vals = {k: float(v.detach()) for k, v in losses.items()}
                raise FloatingPointError(
                    f"non-finite loss at iteration {self.iteration}: {vals}. Stopping; the last checkpoint is "
                    f"{self.last_checkpoint if os.path.exists(self.last_checkpoint) else 'not written yet'}. "
                    "Try a lower learning rate or longer warm-up.")
            self.optimizer.zero_grad(set_to_none=True)
            total.backward()
            if self.clip_grad:
                torch.nn.utils.clip_grad_norm_([p for p in self.model.parameters() if p.requires_grad], self.clip_grad)
            lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.scheduler.step()
            self.iteration += 1
            rec = {"iteration": self.iteration, "lr": lr, "loss": float(reduce_mean(total))}
            rec.update({k: float(reduce_mean(v)) for k, v in losses.items()})
            records.append(rec)
            if self.iteration % self.log_period == 0 or self.iteration == self.max_iter:
                now = time.perf_counter()
                rec["time_per_iter"] = (now - t_last) / (self.iteration - it_last)
                t_last, it_last = now, self.iteration
                self._log(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.3f}", lr=f"{lr:.2g}")
            if self.checkpoint_period and self.iteration % self.checkpoint_period == 0:
                self.save()
            for hook in self.hooks:
                hook(self, self.iteration)
        bar.close()
        self.save()
        if is_main():
            save_checkpoint(os.path.join(self.out_dir, "model_final.pth"), self.model, iteration=self.iteration,
                            extra=self.checkpoint_extra)
        return records

