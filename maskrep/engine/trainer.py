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
import signal
import time
from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from .._io import atomic_write, read_torch_file
from ..distributed import get_world_size, is_main, reduce_mean

__all__ = ["Trainer", "TrainingInterrupted", "load_checkpoint", "read_checkpoint", "save_checkpoint", "warmup_step_lr"]


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
    atomic_write(path, lambda f: torch.save(state, f))


def read_checkpoint(path: str, *, advice: str = "start afresh with --no-resume or remove the file") -> dict:
    """A checkpoint's contents, read with ``weights_only=True`` (no code runs); a file that is not
    one is an error naming it and ending with ``advice``."""
    state = read_torch_file(path, advice=advice)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ValueError(f"{path}: not a maskrep checkpoint (no 'model' weights in it); {advice}")  # noqa: TRY004
    return state


def load_checkpoint(path: str, model, optimizer=None, scheduler=None, *, restore_rng: bool = True) -> int:
    """Load with ``weights_only=True``; returns the iteration to continue from."""
    state = read_checkpoint(path)
    try:
        _unwrap(model).load_state_dict(state["model"])
    except RuntimeError as e:  # missing, unexpected or differently shaped weights
        lines = [line.strip() for line in str(e).splitlines()[1:] if line.strip()]
        raise ValueError(f"{path}: the weights do not fit this model ({'; '.join(lines)[:400]}); was it trained "
                         "with another config?") from None
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng and "rng" in state:
        _set_rng_state(state["rng"])
    return int(state.get("iteration", 0))


class TrainingInterrupted(Exception):
    """Training stopped by SIGINT / SIGTERM after saving a checkpoint at ``iteration``."""

    def __init__(self, signal_name: str, iteration: int, checkpoint: str):
        super().__init__(f"{signal_name}: stopped at iteration {iteration}; checkpoint saved to {checkpoint}. "
                         "Run the same command again to resume.")
        self.signal_name, self.iteration, self.checkpoint = signal_name, iteration, checkpoint


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
        self._events = None  # the TensorBoard event file, opened at the first record
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

    @property
    def metrics_path(self) -> str:
        return os.path.join(self.out_dir, "metrics.jsonl")

    def resume(self, path: str | None = None) -> int:
        """Continue from ``path`` (default: the last checkpoint in ``out_dir``, if any); the metrics
        log keeps only what that checkpoint covers, so a resumed run never repeats records."""
        path = path or self.last_checkpoint
        if os.path.exists(path):
            self.iteration = load_checkpoint(path, self.model, self.optimizer, self.scheduler)
            if is_main() and os.path.exists(self.metrics_path):
                with open(self.metrics_path) as f:
                    kept = [line for line in f if line.strip() and json.loads(line).get("iteration", 0) <= self.iteration]
                atomic_write(self.metrics_path, lambda f: f.write("".join(kept)), binary=False)
        return self.iteration

    def start_fresh(self) -> None:
        """A new run in ``out_dir``: an earlier run's metrics log is kept aside as
        ``metrics.previous-<k>.jsonl``, and the new run writes a fresh ``metrics.jsonl``."""
        if is_main() and os.path.exists(self.metrics_path):
            k = 1
            while os.path.exists(os.path.join(self.out_dir, f"metrics.previous-{k}.jsonl")):
                k += 1
            os.replace(self.metrics_path, os.path.join(self.out_dir, f"metrics.previous-{k}.jsonl"))
            events = [f for f in os.listdir(self.out_dir) if f.startswith("events.out.tfevents.")]
            if events:  # TensorBoard shows the earlier run as a run of its own, "previous-<k>"
                os.makedirs(os.path.join(self.out_dir, f"previous-{k}"), exist_ok=True)
                for f in events:
                    os.replace(os.path.join(self.out_dir, f), os.path.join(self.out_dir, f"previous-{k}", f))

    def save(self, path: str | None = None) -> bool:
        """Write the checkpoint; refused (False, nothing written) when a weight is not finite, so the
        last checkpoint always holds finite weights."""
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            return False
        if is_main():
            save_checkpoint(path or self.last_checkpoint, self.model, self.optimizer, self.scheduler, self.iteration,
                            extra=self.checkpoint_extra)
        return True

    def _log(self, record: dict) -> None:
        """Append ``record`` to ``metrics.jsonl`` and its numbers to the run's TensorBoard event
        file (``train/<key>`` per iteration, ``eval/<task>/<stat>`` for evaluations)."""
        self.history.append(record)
        if is_main():
            with open(self.metrics_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            if self._events is None:
                from .events import EventWriter

                self._events = EventWriter(self.out_dir)
            step = int(record.get("iteration", self.iteration))
            values = {f"train/{k}": v for k, v in record.items() if k not in ("iteration", "eval")}
            for task, stats in (record.get("eval") or {}).items():
                values.update({f"eval/{task}/{k}": v for k, v in stats.items()})
            self._events.scalars(step, values)

    def _checkpoint_note(self) -> str:
        if not os.path.exists(self.last_checkpoint):
            return "no checkpoint was written yet"
        it = int(read_checkpoint(self.last_checkpoint).get("iteration", 0))
        return f"the last checkpoint with finite weights and losses is {self.last_checkpoint} (iteration {it})"

    def train(self) -> list[dict]:
        """Run from ``self.iteration`` to ``max_iter``; returns the per-iteration records of this call."""
        os.makedirs(self.out_dir, exist_ok=True)
        net = self.ddp or self.model
        net.train()
        start = self.iteration
        bar = tqdm(total=self.max_iter, initial=start, desc="train", disable=not (self.progress and is_main()),
                   dynamic_ncols=True)
        stop: list[str] = []

        def on_signal(number, frame):  # the first signal: finish the iteration, save, stop; a second: stop now
            if stop:
                raise KeyboardInterrupt
            stop.append(signal.Signals(number).name)

        handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                handlers[sig] = signal.signal(sig, on_signal)
            except ValueError:  # not the main thread: leave the signals alone
                pass
        try:
            return self._loop(net, bar, stop)
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            bar.close()

    def _loop(self, net, bar, stop: list[str]) -> list[dict]:
        start = self.iteration
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
                vals = {k: round(float(v.detach()), 6) for k, v in losses.items()}
                raise FloatingPointError(
                    f"non-finite loss at iteration {self.iteration}: {vals}. Stopped; {self._checkpoint_note()}. "
                    "Rerun with a lower solver.lr or a longer solver.warmup_iters (both apply when resuming), "
                    "or start afresh with --no-resume.")
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
            if stop:
                if not self.save():
                    raise FloatingPointError(f"{stop[0]} at iteration {self.iteration}, with non-finite weights: nothing "
                                             f"saved; {self._checkpoint_note()}")
                raise TrainingInterrupted(stop[0], self.iteration, self.last_checkpoint)
            for hook in self.hooks:
                hook(self, self.iteration)
        if not self.save():
            raise FloatingPointError(f"the weights are not finite at iteration {self.iteration}; {self._checkpoint_note()}")
        if is_main():
            save_checkpoint(os.path.join(self.out_dir, "model_final.pth"), self.model, iteration=self.iteration,
                            extra=self.checkpoint_extra)
        return records

