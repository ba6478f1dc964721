"""Data-parallel training under `torchrun`, and nothing at all in a single process.

`torchrun --nproc_per_node N -m helpers.train ...` starts N processes with `RANK`,
`WORLD_SIZE`, `LOCAL_RANK` and a rendezvous in their environment; `start_from_env` joins
them into one process group (NCCL on CUDA, gloo on the CPU). The loop then asks this module:

- `forward_module`: the model's forward as a module, wrapped in `DistributedDataParallel`
  when there are several processes (gradients are averaged across ranks in `backward`);
- `train_sampler`: a `DistributedSampler` (each rank reads its shard of one shuffle per
  epoch; `set_epoch` reseeds it); in one process the same sampler with one replica;
- `shard`: the indices one rank validates or predicts (every item exactly once overall);
- `gather` / `barrier`: to merge validation scores and RNG states, and to wait for rank 0's
  checkpoint before anyone moves on.

Without a process group (one process, the notebooks), `world()` is (0, 1) and every helper
is the plain single-process version.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    """True on the rank that writes checkpoints, logs and metrics (rank 0)."""
    return world()[0] == 0


def launched_by_torchrun() -> bool:
    """True when the environment names more than one process (torchrun sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start_from_env(device: str) -> str:
    """Join torchrun's process group if there is one; return the device this rank uses.

    `device` is the requested one ("auto", "cpu", "cuda", ...). Under torchrun on CUDA each
    rank takes the GPU `LOCAL_RANK`; the backend is NCCL there and gloo on the CPU.
    """
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    dist.init_process_group(backend="nccl" if cuda else "gloo")
    return device


def stop() -> None:
    """Leave the process group, if this process joined one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


class Forward(nn.Module):
    """`forward_fn(model, batch)` as a module, so `DistributedDataParallel` can wrap it."""

    def __init__(self, model: nn.Module, forward_fn: Callable[[nn.Module, dict], Any]) -> None:
        super().__init__()
        self.model = model
        self.forward_fn = forward_fn

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.forward_fn(self.model, batch)


def forward_module(
    model: nn.Module, forward_fn: Callable[[nn.Module, dict], Any], some_unused: bool = False
) -> nn.Module:
    """The training forward: plain in one process, `DistributedDataParallel` in several.

    `some_unused`: some trainable weights never reach the output (full fine-tuning trains the
    whole CLIP model, whose image projection segmentation does not use), so DDP must look
    for them every step.
    """
    module = Forward(model, forward_fn)
    if world()[1] == 1:
        return module
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=some_unused)


def train_sampler(dataset: Dataset, seed: int) -> DistributedSampler:
    """This rank's shard of one shuffle per epoch (call `set_epoch` before each epoch)."""
    rank, size = world()
    return DistributedSampler(dataset, num_replicas=size, rank=rank, shuffle=True, seed=seed)


def shard(n: int) -> list[int]:
    """The items this rank handles: rank, rank + world, ... (every item once, none padded)."""
    rank, size = world()
    return list(range(rank, n, size))


def gather(value: Any) -> list[Any]:
    """Every rank's `value` (a picklable object), in rank order; `[value]` in one process."""
    size = world()[1]
    if size == 1:
        return [value]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, value)
    return out


def barrier() -> None:
    """Wait for every rank (nothing in one process)."""
    if world()[1] > 1:
        dist.barrier()
