"""torch.distributed helpers (the floor every stage may use); every function also works without a process group."""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["all_gather_object", "all_reduce_sum", "barrier", "get_rank", "get_world_size", "init_from_env", "is_main", "reduce_mean"]


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


def reduce_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` over processes (a copy; ``x`` itself is unchanged). No gradient."""
    x = x.detach().clone()
    if is_dist() and get_world_size() > 1:
        dist.all_reduce(x)
        x /= get_world_size()
    return x


def all_gather_object(obj) -> list:
    if not is_dist() or get_world_size() == 1:
        return [obj]
    out = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def init_from_env() -> torch.device:
    """Join the process group that ``torchrun`` describes in the environment, if any.

    Uses NCCL with one GPU per local rank when CUDA is available, else gloo on the CPU.
    Returns the device this process should use.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world > 1 and not is_dist():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return device


def all_reduce_sum(array: np.ndarray) -> np.ndarray:
    """The element-wise sum of ``array`` over the processes (a copy; itself without a group).
    Integers stay exact (int64 on the wire)."""
    if not is_dist() or get_world_size() == 1:
        return array
    t = torch.from_numpy(np.ascontiguousarray(array))
    if dist.get_backend() == "nccl":  # NCCL reduces CUDA tensors only
        t = t.cuda()
    dist.all_reduce(t)
    return t.cpu().numpy()
