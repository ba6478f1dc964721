"""One optimisation step of the training loop, and the optimizer and schedule it steps.

- `make_optimizer`: AdamW over the mode's parameter groups (`helpers.model.modes`);
- `cosine_with_warmup`: linear warm-up, then cosine decay to 0;
- `TrainStep`: forward at the runtime's precision, BCE + Dice, backward, gradient clipping and
  the optimizer step, with the fp16 `GradScaler` bookkeeping in `optimizer_step`.

Everything here takes plain values, not the loop's `TrainConfig`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from helpers.model.modes import parameter_groups
from helpers.train.losses import BCEDiceLoss
from helpers.train.validate import match_size


def make_optimizer(
    model: nn.Module, mode: str, lr: float, tower_lr: float | None, weight_decay: float
) -> torch.optim.AdamW:
    """AdamW over the mode's parameter groups (towers at `tower_lr` in "full" mode)."""
    groups = parameter_groups(model, mode, lr, tower_lr, weight_decay)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer, total: int, warmup_fraction: float
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over `warmup_fraction` of `total` steps, then cosine decay to 0."""
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, round(warmup_fraction * total), total)


def lr_of_main_group(optimizer: torch.optim.Optimizer) -> float:
    group = max(optimizer.param_groups, key=lambda g: g.get("initial_lr", g["lr"]))
    return float(group["lr"])


def optimizer_step(
    loss: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    grad_clip: float | None,
    scaler: torch.amp.GradScaler | None,
) -> None:
    """Backward, gradient clipping (on unscaled gradients) and one optimizer step."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
    else:
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    if scaler is None:
        optimizer.step()
    else:
        scaler.step(optimizer)  # skipped when the fp16 gradients overflowed
        scaler.update()


@dataclass
class TrainStep:
    """One optimisation step on a batch that is on the model's device.

    `forward(batch) -> logits` (the model's forward; `DistributedDataParallel` under torchrun),
    at the runtime's precision; BCE + Dice against the soft labels, backward, gradient
    clipping, optimizer and scheduler step. Returns (loss, bce, dice) as a detached tensor on
    the device, so the loop never waits for the GPU.
    """

    forward: Callable[[dict[str, Any]], torch.Tensor]
    criterion: BCEDiceLoss
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    runtime: Any
    grad_clip: float | None

    def __post_init__(self) -> None:
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]

    def __call__(self, batch: dict[str, Any]) -> torch.Tensor:
        labels = batch["labels"]
        with self.runtime.autocast():
            logits = match_size(self.forward(batch), labels)
        parts = self.criterion.components(logits, labels)
        optimizer_step(parts["loss"], self.optimizer, self.params, self.grad_clip, self.scaler)
        self.scheduler.step()
        return torch.stack([parts["loss"], parts["bce"], parts["dice"]]).detach()
