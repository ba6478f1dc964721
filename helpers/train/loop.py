"""The training loop: AdamW + cosine warm-up, BCE+Dice, validation mIoU, early stopping, resume.

`train(model, train_ds, val_ds, cfg, out_dir, collate_fn)` trains the parameters of `model`
that have `requires_grad` (prepare the model with `helpers.model.modes.apply_mode` first)
where the model is (move it with `helpers.core.runtime` first), at `cfg.precision`, and writes
into `out_dir`:

- `config.json`: the `TrainConfig`;
- `log.json` and `log.csv`: one row per epoch (written atomically after every epoch);
- `best/` and `last/`: checkpoint folders holding the mode's portable files
  (see `helpers.train.checkpoint`).

If `out_dir/last` exists, the run continues after the last finished epoch and ends with the
same weights and log as an uninterrupted run: the model, optimizer, scheduler, grad scaler and
RNG states are restored, `train_ds.set_epoch(epoch)` is called at the start of every epoch and
each epoch's shuffle is seeded with (seed, epoch). To start over, use an empty `out_dir`.

Under `torchrun` the same loop trains data-parallel (`helpers.core.distributed`): each rank
steps on its shard of the epoch's shuffle, gradients are averaged across ranks, validation
scores are merged so every rank takes the same early-stopping decision, and only rank 0
writes. In one process there is no process group and nothing of this happens.

Beside the loop: one optimisation step (optimizer, schedule, AMP) in `helpers.train.step`,
validation in `helpers.train.validate`, checkpoints, early stopping, resume and the log in
`helpers.train.state`, device and precision in `helpers.core.runtime`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from helpers.core import distributed
from helpers.core.io import write_json
from helpers.core.progress import bar
from helpers.core.runtime import (
    Runtime,
    get_runtime,
    memory_held_elsewhere_mb,
    model_device,
    peak_memory_mb,
    reset_peak_memory,
)
from helpers.train.config import TrainConfig
from helpers.train.losses import BCEDiceLoss
from helpers.train.seed import deterministic_cpu, make_generator, seed_everything, seed_worker
from helpers.train.state import (
    MONITOR,
    Resumable,
    RunState,
    log_frame,
    resume_or_start,
    save_state,
    write_log,
)
from helpers.train.step import TrainStep, cosine_with_warmup, lr_of_main_group, make_optimizer
from helpers.train.validate import ForwardFn, default_forward, device_batch, evaluate_segmentation

__all__ = [
    "TrainConfig", "TrainResult", "train", "default_forward", "evaluate_segmentation",
    "write_log",
]


@dataclass
class TrainResult:
    """What `train` returns. `seconds` sums the epochs of every call that built the log."""

    best_epoch: int | None
    best_metric: float | None
    log: pd.DataFrame
    out_dir: Path
    stopped_early: bool
    seconds: float


def train(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset | None,
    cfg: TrainConfig,
    out_dir: str | Path,
    collate_fn: Callable[[list[Any]], dict[str, Any]],
    forward_fn: ForwardFn | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train `model` in place on its own device and return a `TrainResult` (module docstring).

    forward_fn(model, batch) -> logits (B, H, W); default `default_forward`.
    """
    out_dir = _check(model, train_ds, cfg, out_dir)
    rt = get_runtime(model_device(model), cfg.precision, cfg.num_workers)
    held_elsewhere = memory_held_elsewhere_mb(model, rt.device)  # not this run's (CUDA only)
    forward_fn = forward_fn or default_forward
    if cfg.deterministic:
        deterministic_cpu()
    seed_everything(cfg.seed)
    train_loader = EpochLoader(train_ds, cfg, collate_fn, rt)
    step, parts = training_step(model, forward_fn, cfg, rt, len(train_loader) * cfg.epochs)
    state = resume_or_start(out_dir, cfg.to_dict(), parts)
    val_loader = validation_loader(val_ds, cfg, collate_fn, rt)
    if distributed.is_main():
        write_json(out_dir / "config.json", cfg.to_dict())
    announce(cfg, progress)
    model.train()
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if state.stopped_early:
            break
        started = time.perf_counter()
        reset_peak_memory(rt.device)
        row = run_epoch(step, train_loader, epoch, state, progress)
        value = validate(model, forward_fn, val_loader, cfg, epoch, step, row, progress)
        row["seconds"] = time.perf_counter() - started
        row["peak_mem_mb"] = peak_memory_mb(rt.device) - held_elsewhere
        state.record(row, value, cfg.min_delta, cfg.patience)
        save_state(out_dir, state, cfg.to_dict(), parts)
        if progress and distributed.is_main():
            print(_epoch_line(row, cfg.epochs), flush=True)
    return finish(out_dir, state, parts, cfg.restore_best)


# ---------------------------------------------------------------------------- set-up


def _check(model: nn.Module, train_ds: Dataset, cfg: TrainConfig, out_dir: str | Path) -> Path:
    """The output folder, once the inputs are known to be usable."""
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if len(train_ds) == 0:
        raise ValueError("the training set is empty")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("the model has no trainable parameters; prepare it with apply_mode")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir


def training_step(
    model: nn.Module, forward_fn: ForwardFn, cfg: TrainConfig, rt: Runtime, total_steps: int
) -> tuple[TrainStep, Resumable]:
    """The optimisation step and what a checkpoint restores (optimizer, schedule, scaler)."""
    optimizer = make_optimizer(model, cfg.mode, cfg.lr, cfg.tower_lr, cfg.weight_decay)
    scheduler = cosine_with_warmup(optimizer, total_steps, cfg.warmup_fraction)
    parts = Resumable(model, cfg.mode, optimizer, scheduler, rt.grad_scaler())
    criterion = BCEDiceLoss(cfg.bce_weight, cfg.dice_weight, pos_weight=cfg.bce_pos_weight)
    forward = distributed.forward_module(model, forward_fn, some_unused=cfg.mode == "full")
    step = TrainStep(forward, criterion, optimizer, scheduler, parts.scaler, rt, cfg.grad_clip)
    return step, parts


class EpochLoader:
    """This rank's batches of one epoch: a fresh shuffle per epoch, capped at `max_steps`."""

    def __init__(self, dataset: Dataset, cfg: TrainConfig, collate_fn: Callable, rt: Runtime):
        self.dataset, self.cfg, self.collate_fn, self.rt = dataset, cfg, collate_fn, rt
        self.sampler = distributed.train_sampler(dataset, cfg.seed)
        if rt.num_workers > 0 and hasattr(dataset, "preload"):
            dataset.preload()  # decoded once here; forked workers share it

    def __len__(self) -> int:
        steps = math.ceil(len(self.sampler) / self.cfg.batch_size)
        return min(steps, self.cfg.max_steps_per_epoch or steps)

    def epoch(self, epoch: int) -> Iterator[dict[str, Any]]:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        loader = DataLoader(
            self.dataset, batch_size=self.cfg.batch_size, sampler=self.sampler,
            collate_fn=self.collate_fn, worker_init_fn=seed_worker,
            generator=make_generator(self.cfg.seed, epoch),
            **self.rt.loader_kwargs(),  # fresh workers: they must see this epoch's set_epoch
        )
        for i, batch in enumerate(loader):  # stops the iterator early, workers included
            if i >= len(self):
                break
            yield batch


def validation_loader(
    val_ds: Dataset | None, cfg: TrainConfig, collate_fn: Callable, rt: Runtime
) -> DataLoader | None:
    """This rank's share of the validation set, in order (all of it in one process)."""
    if val_ds is None:
        return None
    if rt.num_workers > 0 and hasattr(val_ds, "preload"):
        val_ds.preload()
    return DataLoader(
        val_ds, batch_size=cfg.eval_batch_size or cfg.batch_size,
        sampler=distributed.shard(len(val_ds)), collate_fn=collate_fn,
        worker_init_fn=seed_worker, generator=make_generator(cfg.seed, 0, 1),
        **rt.loader_kwargs(persistent=True),  # the same items every epoch: keep the workers
    )


def announce(cfg: TrainConfig, progress: bool) -> None:
    """Under torchrun, rank 0 says how the global batch is made."""
    size = distributed.world()[1]
    if progress and size > 1 and distributed.is_main():
        print(f"data-parallel on {size} processes: global batch {size * cfg.batch_size} "
              f"({cfg.batch_size} per process)", flush=True)


# ---------------------------------------------------------------------------- one epoch


def run_epoch(
    step: TrainStep, loader: EpochLoader, epoch: int, state: RunState, progress: bool
) -> dict[str, Any]:
    """Train one epoch; its log row (losses averaged over every rank's items)."""
    started = time.perf_counter()
    device = step.runtime.device
    sums = torch.zeros(4, dtype=_sum_dtype(device), device=device)  # loss, bce, dice, items
    for batch in bar(loader.epoch(epoch), total=len(loader), desc=f"epoch {epoch}",
                     leave=False, enabled=progress and distributed.is_main()):
        batch = device_batch(batch, device)
        n = len(batch["labels"])
        sums[:3] += step(batch) * n
        sums[3] += n
        state.step += 1
    totals = [sum(v) for v in zip(*distributed.gather(sums.tolist()), strict=True)]  # waits
    loss, bce, dice = (v / totals[3] for v in totals[:3])
    if not math.isfinite(loss):
        raise FloatingPointError(
            f"training loss is {loss} in epoch {epoch}; lower lr or switch precision "
            "to 'bf16'/'fp32'"
        )
    return {
        "epoch": epoch, "step": state.step, "train_loss": loss, "train_bce": bce,
        "train_dice": dice, "lr": lr_of_main_group(step.optimizer), "items": int(totals[3]),
        "items_per_s": totals[3] / (time.perf_counter() - started),  # no validation
    }


def validate(
    model: nn.Module, forward_fn: ForwardFn, loader: DataLoader | None, cfg: TrainConfig,
    epoch: int, step: TrainStep, row: dict[str, Any], progress: bool,
) -> float | None:
    """Validate when due: add the scores to `row` and return the monitored one (else None)."""
    if loader is None or not (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
        return None
    if hasattr(loader.dataset, "set_epoch"):
        loader.dataset.set_epoch(0)
    metrics = evaluate_segmentation(
        model, loader, forward_fn, cfg.threshold, step.runtime, step.criterion,
        progress and distributed.is_main(),
    )
    row.update({f"val_{k}": float(v) for k, v in metrics.items()})
    return float(metrics[MONITOR])


def finish(out_dir: Path, state: RunState, parts: Resumable, restore_best: bool) -> TrainResult:
    """Load the best weights back if asked (and not already there); the result."""
    if restore_best and state.best_epoch is not None and state.best_epoch != state.epoch:
        parts.load_weights(out_dir / "best")
    return TrainResult(
        best_epoch=state.best_epoch,
        best_metric=state.best_metric,
        log=write_log(out_dir, state.rows) if distributed.is_main() else log_frame(state.rows),
        out_dir=out_dir,
        stopped_early=state.stopped_early,
        seconds=float(sum(r["seconds"] for r in state.rows)),
    )


def _sum_dtype(device: torch.device) -> torch.dtype:
    """float64 for running sums, float32 on mps (which has no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = f", val mIoU {row[f'val_{MONITOR}']:.4f}" if f"val_{MONITOR}" in row else ""
    return f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f}{val}"
