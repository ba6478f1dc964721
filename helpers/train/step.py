"""One optimisation step of the training loop, and the optimizer and schedule it steps.

- `build_param_groups`: AdamW parameter groups (the mode's, from `helpers.model.modes`);
- `cosine_with_warmup`: linear warm-up, then cosine decay to 0;
- `TrainStep`: forward at the runtime's precision, BCE + Dice, backward, gradient clipping and
  the optimizer step, with the fp16 `GradScaler` bookkeeping in `optimizer_step`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from helpers.train.losses import BCEDiceLoss
from helpers.train.validate import ForwardFn, match_size

if TYPE_CHECKING:
    from helpers.train.loop import TrainConfig


def build_param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """The mode's AdamW parameter groups (`helpers.model.modes.parameter_groups`)."""
    from helpers.model.modes import parameter_groups

    return list(parameter_groups(model, cfg.mode, cfg.lr, cfg.tower_lr, cfg.weight_decay))


def cosine_with_warmup(optimizer: torch.optim.Optimizer, total: int, cfg: TrainConfig) -> Any:
    """Linear warm-up over `cfg.warmup_fraction` of `total` steps, then cosine decay to 0."""
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, round(cfg.warmup_fraction * total), total)


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

    Forward at the runtime's precision, BCE + Dice against the soft labels, backward, gradient
    clipping, optimizer and scheduler step. Returns (loss, bce, dice) as a detached tensor on
    the device, so the loop never waits for the GPU.
    """

    model: nn.Module
    forward_fn: ForwardFn
    criterion: BCEDiceLoss
    cfg: TrainConfig
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None
    runtime: Any

    def __post_init__(self) -> None:
        self.params = [p for p in self.model.parameters() if p.requires_grad]

    def __call__(self, batch: dict[str, Any]) -> torch.Tensor:
        labels = batch["labels"]
        with self.runtime.autocast():
            logits = match_size(self.forward_fn(self.model, batch), labels)
        parts = self.criterion.components(logits, labels)
        loss = self.cfg.bce_weight * parts["bce"] + self.cfg.dice_weight * parts["dice"]
        optimizer_step(loss, self.optimizer, self.params, self.cfg.grad_clip, self.scaler)
        self.scheduler.step()
        return torch.stack([loss, parts["bce"], parts["dice"]]).detach()
