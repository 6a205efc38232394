"""A learned codec: a small convolutional autoencoder trained on box crops.

The encoder halves the crop with strided convolutions down to a small grid and maps it to D
numbers; the decoder mirrors it (a linear map to the grid, then upsampling convolutions) and ends
in S x S logits. Trained with binary cross-entropy plus a Dice term on the crops, with flips and
small random shifts and scalings (the box a detector predicts is never the ground truth's box).

After fitting, the codec is a fixed function like the others: its weights live in the codec file,
``module()`` decodes differentiably in the codes (a head learns codes against the frozen decoder;
set ``requires_grad_(True)`` on the module to fine-tune it too), and encoding is deterministic.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .._io import atomic_write, read_torch_file
from ..ops.masks import binarize
from .base import CodecModule, MaskCodec, check_int

__all__ = ["LearnedCodec", "LearnedModule"]


def _levels(size: int) -> int:
    """How many times the encoder halves the crop: while the side is even and above 4."""
    levels = 0
    while size > 4 and size % 2 == 0:
        size //= 2
        levels += 1
    return levels


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class _DeferredInterrupt:
    """Ctrl-C (SIGINT) during training sets ``requested`` instead of raising, so the training loop
    can finish its step and keep its state first; in the main thread only (elsewhere a no-op)."""

    requested = False

    def __enter__(self):
        import signal
        import threading

        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


#: the most weights the learned codec's network may have (a typo in ``width`` would otherwise ask
#: for hundreds of GB)
MAX_WEIGHTS = 50_000_000


class LearnedModule(CodecModule):
    """The autoencoder. ``encode``: (N, S, S) bool -> (N, D); ``decode_logits``: (N, D) -> (N, S, S)."""

    logit_space = True

    def __init__(self, *, mask_size: int, dim: int, width: int):
        super().__init__()
        self.mask_size, self.dim = mask_size, dim
        levels = _levels(mask_size)
        self.grid = mask_size >> levels
        chans = [width * 2**k for k in range(levels + 1)]  # width at full size, doubled per halving
        enc = [_block(1, chans[0], 1)]
        enc += [_block(chans[k], chans[k + 1], 2) for k in range(levels)]
        self.encoder = nn.Sequential(*enc)
        self.to_code = nn.Linear(chans[-1] * self.grid**2, dim)
        self.from_code = nn.Linear(dim, chans[-1] * self.grid**2)
        self.decoder = nn.ModuleList(_block(chans[k + 1], chans[k], 1) for k in reversed(range(levels)))
        self.to_logits = nn.Conv2d(chans[0], 1, 3, 1, 1)
        self.top_channels = chans[-1]

    def encode(self, masks: torch.Tensor) -> torch.Tensor:
        x = masks.to(self.to_code.weight.dtype)[:, None] * 2 - 1  # (N, 1, S, S) in {-1, 1}
        return self.to_code(self.encoder(x).flatten(1))  # (N, D)

    def decode_logits(self, codes: torch.Tensor) -> torch.Tensor:
        x = self.from_code(codes.to(self.to_code.weight.dtype))
        x = F.silu(x).reshape(-1, self.top_channels, self.grid, self.grid)
        for block in self.decoder:
            x = block(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
        return self.to_logits(x)[:, 0].to(codes.dtype)  # (N, S, S)

    def activate(self, values: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(values)


def _augment(masks: torch.Tensor, gen: torch.Generator, shift: float) -> torch.Tensor:
    """(B, S, S) bool -> (B, S, S) bool: a random horizontal flip, per-axis scale in
    [1 - shift, 1 + shift] and shift of up to ``shift`` of the side (nearest resampling)."""
    b = masks.shape[0]
    x = masks.float()[:, None]
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    scale = 1 + shift * (2 * torch.rand(b, 2, generator=gen) - 1)
    move = shift * (2 * torch.rand(b, 2, generator=gen) - 1) * 2
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 1, 1] = scale[:, 0], scale[:, 1]
    theta[:, :, 2] = move
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return binarize(F.grid_sample(x, grid, mode="nearest", align_corners=False)[:, 0])


def _loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    t = target.float()
    bce = F.binary_cross_entropy_with_logits(logits, t)
    p = torch.sigmoid(logits).flatten(1)
    t = t.flatten(1)
    dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
    return bce + dice.mean()


class LearnedCodec(MaskCodec):
    """A convolutional autoencoder fitted on box crops (``maskrep fit learned ...``).

    Parameters
    ----------
    mask_size : int
        S, the crop side.
    dim : int
        D, the code length.
    width : int
        Channels of the first convolution (doubled at each halving of the crop).
    epochs, batch_size, lr : training schedule (AdamW with weight decay 1e-4, a cosine decay of
        ``lr`` to 0 after a warm-up of one epoch).
    shift : float
        Augmentation strength: random scale and shift of up to this share of the side.
    seed : int
        Seeds the initial weights, the batch order and the augmentation: a fit is repeatable.

    Capabilities: "resume": ``fit(masks, checkpoint=path)`` writes the training state to ``path``
    after every epoch (atomically) and, when the file exists and belongs to the same settings and
    masks, resumes from it; removed after a completed fit. ``maskrep fit learned --out F`` uses
    ``F.training.pt``.

    Examples
    --------
    >>> import numpy as np
    >>> masks = np.zeros((64, 16, 16), bool); masks[:, 4:12, 3:13] = True
    >>> codec = LearnedCodec(mask_size=16, dim=8, width=4, epochs=2, batch_size=32).fit(masks)
    >>> codec.encode(masks[:2]).shape, codec.decode(codec.encode(masks[:2])).shape
    ((2, 8), (2, 16, 16))
    """

    name = "learned"
    needs_fit = True
    capabilities = frozenset({"resume"})

    def __init__(self, *, mask_size: int = 64, dim: int = 60, width: int = 16, epochs: int = 60,
                 batch_size: int = 64, lr: float = 2e-3, shift: float = 0.06, seed: int = 0):
        mask_size = check_int("mask_size", mask_size, 4)
        dim = check_int("dim", dim, 1)
        width = check_int("width", width, 1)
        epochs = check_int("epochs", epochs, 1)
        batch_size = check_int("batch_size", batch_size, 1)
        seed = check_int("seed", seed, 0)
        if not (isinstance(lr, (int, float)) and lr > 0 and math.isfinite(lr)):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        if not (isinstance(shift, (int, float)) and 0 <= shift < 0.5):
            raise ValueError(f"shift must be in [0, 0.5), got {shift!r}")
        with torch.device("meta"):  # the size of the network, counted without allocating it
            weights = sum(p.numel() for p in LearnedModule(mask_size=mask_size, dim=dim, width=width).parameters())
        if weights > MAX_WEIGHTS:
            raise ValueError(f"width={width} (mask_size={mask_size}, dim={dim}) makes a network of {weights:,} weights, "
                             f"over the {MAX_WEIGHTS:,} the learned codec allows; a width of 8 to 32 is usual")
        super().__init__(mask_size=mask_size, dim=dim, width=width, epochs=epochs, batch_size=batch_size,
                         lr=float(lr), shift=float(shift), seed=seed)
        self.dim, self.width, self.epochs, self.batch_size = dim, width, epochs, batch_size
        self.lr, self.shift, self.seed = float(lr), float(shift), seed
        self.history: list[float] = []  # mean training loss per epoch of the last fit

    @property
    def code_length(self) -> int:
        return self.dim

    def _new_module(self) -> LearnedModule:
        return LearnedModule(mask_size=self.mask_size, dim=self.dim, width=self.width)

    def _build_module(self) -> LearnedModule:
        module = self._new_module()
        state = {k[len("net/"):]: torch.from_numpy(np.asarray(v)) for k, v in self._state.items() if k.startswith("net/")}
        module.load_state_dict(state)
        module.eval().requires_grad_(False)
        return module

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        expected = {f"net/{k}": tuple(v.shape) for k, v in self._new_module().state_dict().items()}
        missing = sorted(set(expected) - set(state))
        if missing:
            raise ValueError(f"the learned codec's weights lack {missing[:3]}{' ...' if len(missing) > 3 else ''}")
        for key, shape in expected.items():
            if tuple(np.shape(state[key])) != shape:
                raise ValueError(f"{key} has shape {tuple(np.shape(state[key]))}, expected {shape}")
        super().load_state_dict({k: np.asarray(state[k], dtype=np.float32) for k in expected})

    # ---- fitting --------------------------------------------------------------------------------------

    def _fit(self, chunks: Iterable[np.ndarray], progress: Callable | None,
             checkpoint: str | None = None) -> dict[str, np.ndarray]:
        from tqdm import tqdm

        from ..distributed import get_world_size

        if get_world_size() > 1:
            raise RuntimeError("the learned codec trains in one process; run `maskrep fit learned` without torchrun")
        parts = []
        for chunk in chunks:
            parts.append(np.asarray(chunk, dtype=bool))
            if progress is not None:
                progress(len(chunk))
        masks = torch.from_numpy(np.concatenate(parts)) if parts else torch.zeros((0, self.mask_size, self.mask_size), dtype=torch.bool)
        n = len(masks)
        if n < 2:
            raise ValueError(f"the learned codec needs at least 2 masks to fit, got {n}")
        fingerprint = hashlib.sha1(np.packbits(masks.numpy()).tobytes()).hexdigest()

        torch.manual_seed(self.seed)
        net = self._new_module().train()
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=1e-4)
        gen = torch.Generator().manual_seed(self.seed)
        steps_per_epoch = math.ceil(n / self.batch_size)
        total, warmup = self.epochs * steps_per_epoch, steps_per_epoch
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: (k + 1) / warmup if k < warmup else 0.5 * (1 + math.cos(math.pi * (k - warmup) / max(total - warmup, 1))))
        start_epoch, start_step, history, order, running = 0, 0, [], None, 0.0
        resumed = self._resume(checkpoint, net, opt, sched, gen, fingerprint)
        if resumed is not None:
            start_epoch, history, start_step, order, running = resumed
        done = start_epoch * steps_per_epoch + start_step
        with _DeferredInterrupt() as interrupt, tqdm(
                total=total, initial=done, desc=f"train learned codec ({self.epochs} epochs; --epochs N for fewer)",
                unit="step", disable=progress is None) as bar:
            for epoch in range(start_epoch, self.epochs):
                if start_step == 0:
                    order = torch.randperm(n, generator=gen)
                    running = 0.0
                for k in range(start_step, steps_per_epoch):
                    batch = masks[order[k * self.batch_size : (k + 1) * self.batch_size]]
                    target = _augment(batch, gen, self.shift) if self.shift > 0 else batch
                    loss = _loss(net.decode_logits(net.encode(target)), target)
                    if not torch.isfinite(loss):
                        raise FloatingPointError(f"the learned codec's training loss is {loss.item()} at epoch {epoch}")
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sched.step()
                    running += loss.item()
                    bar.update(1)
                    if interrupt.requested:  # Ctrl-C: finish the step, keep the state, then stop
                        if checkpoint:
                            self._save_checkpoint(checkpoint, net, opt, sched, gen, fingerprint, epoch, history,
                                                  step=k + 1, order=order, running=running)
                        raise KeyboardInterrupt(f"the learned codec's training stopped at epoch {epoch + 1}, step "
                                                f"{k + 1}" + (f"; rerun to resume from {checkpoint}" if checkpoint else ""))
                start_step = 0
                history.append(running / steps_per_epoch)
                bar.set_postfix(epoch=epoch + 1, loss=f"{history[-1]:.4f}")
                if checkpoint:
                    self._save_checkpoint(checkpoint, net, opt, sched, gen, fingerprint, epoch + 1, history)
        if checkpoint and os.path.exists(checkpoint):
            os.remove(checkpoint)
        self.history = history
        return {f"net/{k}": v.detach().numpy().copy() for k, v in net.state_dict().items()}

    def _save_checkpoint(self, path: str, net, opt, sched, gen, fingerprint: str, epoch: int,
                         history: list[float], *, step: int = 0, order=None, running: float = 0.0) -> None:
        """The training state after ``epoch`` whole epochs and ``step`` steps of the next (its batch
        ``order`` and loss so far), written atomically."""
        state = {"params": self.params, "fingerprint": fingerprint, "epoch": epoch, "history": history,
                 "net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(),
                 "gen": gen.get_state(), "step": step, "running": running}
        if order is not None:
            state["order"] = order
        atomic_write(path, lambda f: torch.save(state, f))

    def _resume(self, path: str | None, net, opt, sched, gen, fingerprint: str):
        if not path or not os.path.exists(path):
            return None
        try:
            state = read_torch_file(path, what="training checkpoint")
        except ValueError as e:  # unreadable: start afresh
            warnings.warn(f"{e}; training from the start", stacklevel=3)
            return None
        keys = ("params", "fingerprint", "epoch", "history", "net", "opt", "sched", "gen")
        if not isinstance(state, dict) or not {"params", "fingerprint"} <= set(state):
            have = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"{path} is not the learned codec's training state (it should hold {', '.join(keys)}; it "
                             f"holds {have}): remove it, or give another --out")
        if state.get("params") != self.params or state.get("fingerprint") != fingerprint:
            raise ValueError(f"{path} is the training state of other settings or other masks; remove it to start "
                             f"afresh (its settings: {state.get('params')})")
        if not set(keys) <= set(state):
            raise ValueError(f"{path} is not a whole training state of the learned codec (it lacks "
                             f"{', '.join(k for k in keys if k not in state)}): remove it, or give another --out")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        gen.set_state(state["gen"])
        step = int(state.get("step", 0))
        return int(state["epoch"]), list(state["history"]), step, state.get("order"), float(state.get("running", 0.0))
