"""torch.distributed set-up from torchrun's environment (NCCL on GPUs, gloo on the CPU)."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist


def init_distributed() -> tuple[int, int, torch.device]:
    """Join the process group torchrun describes (if any); returns (rank, world size, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, device


def is_main() -> bool:
    """Whether this is rank 0 (or a single process)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def world_size() -> int:
    """Number of processes (1 without torch.distributed)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of ``t`` over all processes (``t`` itself when single-process)."""
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenation along dim 0 of every process's ``t`` (same shape on every rank)."""
    if not dist.is_initialized():
        return t
    out = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(out, t.contiguous())
    return torch.cat(out)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every process (``obj`` itself when single-process)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every process's ``obj``, indexed by rank (``[obj]`` when single-process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy rank ``src``'s buffers (BatchNorm running statistics) into every process's ``module``.

    DDP broadcasts the buffers at the start of each training forward, but that forward then
    updates them with each rank's own batch: between steps every rank holds different running
    statistics. Whatever reads them outside DDP's forward (the eval-mode saliency pass, the
    evaluation, the checkpoint, which stores rank 0's) must see one set, or a resumed run,
    restored from rank 0's, diverges from the uninterrupted one on every other rank.
    """
    if not dist.is_initialized():
        return
    for buf in module.buffers():
        dist.broadcast(buf, src=src)


def barrier() -> None:
    """Wait for every process (no-op when single-process)."""
    if dist.is_initialized():
        dist.barrier()
