"""The training loop: AdamW + cosine warm-up, BCE+Dice, validation mIoU, early stopping, resume.

`train(model, train_ds, val_ds, cfg, out_dir, collate_fn)` trains the parameters of `model`
that have `requires_grad` (prepare the model with `helpers.model.modes.apply_mode` first)
where the model is (move it with `helpers.core.runtime` first), at `cfg.precision`, and writes
into `out_dir`:

- `config.json`: the `TrainConfig`;
- `log.json` and `log.csv`: one row per epoch (written atomically after every epoch);
- `best/` and `last/`: checkpoint folders (see `helpers.train.checkpoint`).

If `out_dir/last` exists and `resume=True`, the run continues after the last finished
epoch and ends with the same weights and log as an uninterrupted run: the model, optimizer,
scheduler, grad scaler and RNG states are restored, `train_ds.set_epoch(epoch)` is called at
the start of every epoch and each epoch's shuffle comes from a generator seeded with
(seed, epoch).

Beside the loop: one optimisation step (optimizer, schedule, AMP) in `helpers.train.step`,
validation in `helpers.train.validate`, checkpoints, early stopping, resume and the log in
`helpers.train.state`, device and precision in `helpers.core.runtime`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from helpers.core.io import write_json
from helpers.core.progress import bar
from helpers.core.runtime import (
    PRECISIONS,
    get_runtime,
    memory_held_elsewhere_mb,
    model_device,
    peak_memory_mb,
    reset_peak_memory,
)
from helpers.train.checkpoint import (
    RESTART_HINT,
    CheckpointError,
    find_checkpoint,
    load_meta,
    load_trainable_state,
)
from helpers.train.losses import BCEDiceLoss
from helpers.train.seed import deterministic_cpu, make_generator, seed_everything, seed_worker
from helpers.train.state import (
    MONITOR,
    RunState,
    clear_run,
    log_frame,
    resume_state,
    save_state,
    write_log,
)
from helpers.train.step import (
    TrainStep,
    build_param_groups,
    cosine_with_warmup,
    lr_of_main_group,
)
from helpers.train.validate import (
    ForwardFn,
    default_forward,
    device_batch,
    evaluate_segmentation,
)

__all__ = [
    "TrainConfig", "TrainResult", "train", "default_forward", "evaluate_segmentation",
    "best_checkpoint_epoch", "write_log",
]

MODES = ("decoder", "lora", "full")

SaveFn = Callable[[nn.Module, Path], Any]
LoadFn = Callable[[nn.Module, Path], Any]
EvaluateFn = Callable[[nn.Module, DataLoader, ForwardFn], dict[str, float]]


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (checked on creation)."""

    mode: str = "lora"  # "decoder" | "lora" | "full": which parameters the model trains
    epochs: int = 10
    batch_size: int = 4
    lr: float = 5e-4  # learning rate of the decoder and adapters
    tower_lr: float | None = None  # lr of CLIP tower weights in "full" mode; None: lr / 10
    weight_decay: float = 0.01  # AdamW, on weight matrices (not biases or norms)
    warmup_fraction: float = 0.1  # share of all steps with a linear warm-up
    grad_clip: float | None = 1.0  # max global gradient norm; None: no clipping
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    bce_pos_weight: float = 1.0  # weight of foreground pixels in the BCE term (> 0)
    patience: int | None = 5  # validations without a better mIoU before stopping; None: never
    min_delta: float = 0.0  # improvement needed to count as better
    seed: int = 42
    num_workers: int | None = None  # DataLoader workers; None: the runtime's choice
    precision: str = "auto"  # "auto" | "bf16" | "fp16" | "fp32"; autocast is used on CUDA only
    eval_every: int = 1  # validate every n epochs (and always after the last one)
    threshold: float = 0.5  # probability threshold for validation IoU / Dice
    max_steps_per_epoch: int | None = None  # cap on batches per epoch (quick demos)
    eval_batch_size: int | None = None  # None: same as batch_size
    restore_best: bool = True  # load the best weights into the model when training ends
    deterministic: bool = False  # call seed.deterministic_cpu() before training

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if self.precision not in PRECISIONS:
            raise ValueError(
                f"unknown precision {self.precision!r}; choose one of {PRECISIONS}"
            )
        for name in ("epochs", "batch_size", "eval_every"):
            _check_int(name, getattr(self, name), minimum=1)
        if self.num_workers is not None:
            _check_int("num_workers", self.num_workers, minimum=0)
        _check_int("seed", self.seed, minimum=0)
        for name in ("patience", "max_steps_per_epoch", "eval_batch_size"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.tower_lr is not None and not self.tower_lr >= 0:
            raise ValueError(f"tower_lr must be >= 0 or None, got {self.tower_lr}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip}")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.min_delta < 0:
            raise ValueError(f"min_delta must be >= 0, got {self.min_delta}")
        if not self.bce_pos_weight > 0:
            raise ValueError(f"bce_pos_weight must be > 0, got {self.bce_pos_weight}")
        BCEDiceLoss(self.bce_weight, self.dice_weight)  # validates the weights

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {unknown}")
        return cls(**data)


@dataclass
class TrainResult:
    """What `train` returns. `seconds` sums the epochs of every call that built the log."""

    best_epoch: int | None
    best_metric: float | None
    log: pd.DataFrame
    out_dir: Path
    stopped_early: bool
    seconds: float
    completed: bool = True  # False when interrupted (stop_after_epochs or a callback)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")



# ---------------------------------------------------------------------------- defaults


def course_checkpoint(mode: str) -> tuple[SaveFn, LoadFn]:
    """How the course stores a mode's weights: once, as `save_trainable`'s portable files
    (adapter, decoder or whole model), read back exactly by `restore_trainable`."""
    from helpers.model.modes import restore_trainable, save_trainable

    def save(model: nn.Module, folder: Path) -> None:
        save_trainable(model, mode, folder)

    def load(model: nn.Module, folder: Path) -> None:
        try:
            restore_trainable(model, mode, folder)
        except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: shapes differ
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{folder}: {first}; {RESTART_HINT}") from err

    return save, load


def steps_per_epoch(n_items: int, cfg: TrainConfig) -> int:
    """Optimizer steps in one epoch of `n_items` (capped by `max_steps_per_epoch`)."""
    steps = math.ceil(n_items / cfg.batch_size)
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


# ---------------------------------------------------------------------------- training


def train(
    model: nn.Module,
    train_ds: Dataset,
    val_ds: Dataset | None,
    cfg: TrainConfig,
    out_dir: str | Path,
    collate_fn: Callable[[list[Any]], dict[str, Any]],
    forward_fn: ForwardFn | None = None,
    save_fn: SaveFn | None = None,
    load_fn: LoadFn | None = None,
    evaluate_fn: EvaluateFn | None = None,
    resume: bool = True,
    progress: bool = True,
    stop_after_epochs: int | None = None,
    on_epoch_end: Callable[[dict[str, Any]], bool | None] | None = None,
    param_groups_fn: Callable[[nn.Module, TrainConfig], list[dict]] | None = None,
    scheduler_fn: Callable[[torch.optim.Optimizer, int], Any] | None = None,
) -> TrainResult:
    """Train `model` in place on its own device and return a `TrainResult` (module docstring).

    forward_fn(model, batch) -> logits (B, H, W); default `default_forward`.
    save_fn(model, folder): writes extra portable files into each checkpoint, beside
        `trainable.safetensors`. Default (None): `course_checkpoint(cfg.mode)`, where the
        mode's portable files are the only copy of the weights.
    load_fn(model, folder): loads a checkpoint's weights into `model` in place (resume and
        `restore_best`); default: the loader paired with the save (exact float copies).
    evaluate_fn(model, val_loader, forward_fn) -> dict with at least "miou"; default
        `evaluate_segmentation` at `cfg.threshold`.
    stop_after_epochs / on_epoch_end(row) returning True: stop after that epoch as if the
        process had been interrupted (the run can be resumed later).
    param_groups_fn(model, cfg): AdamW parameter groups; default `build_param_groups`.
    scheduler_fn(optimizer, total_steps): the learning-rate schedule, stepped once per batch;
        default: linear warm-up over `cfg.warmup_fraction` of the steps, then cosine decay.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if stop_after_epochs is not None:
        _check_int("stop_after_epochs", stop_after_epochs, minimum=1)
    if len(train_ds) == 0:
        raise ValueError("the training set is empty")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; prepare it with apply_mode")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rt = get_runtime(model_device(model), cfg.precision, cfg.num_workers)
    held_elsewhere = memory_held_elsewhere_mb(model, rt.device)  # not this run's (CUDA only)
    forward_fn = forward_fn or default_forward
    trainable_file = save_fn is not None  # a custom save_fn adds files; the weights go once
    if save_fn is None:
        save_fn, course_load = course_checkpoint(cfg.mode)
        load_fn = load_fn or course_load
    load_fn = load_fn or load_trainable_state
    criterion = BCEDiceLoss(cfg.bce_weight, cfg.dice_weight, pos_weight=cfg.bce_pos_weight)
    evaluate_fn = evaluate_fn or partial(
        evaluate_segmentation, threshold=cfg.threshold, runtime=rt, criterion=criterion,
        progress=progress,
    )
    if cfg.deterministic:
        deterministic_cpu()
    seed_everything(cfg.seed)

    n_steps = steps_per_epoch(len(train_ds), cfg)
    optimizer = torch.optim.AdamW(
        (param_groups_fn or build_param_groups)(model, cfg), lr=cfg.lr,
        weight_decay=cfg.weight_decay,
    )
    scheduler = (scheduler_fn or partial(cosine_with_warmup, cfg=cfg))(
        optimizer, n_steps * cfg.epochs
    )
    scaler = rt.grad_scaler()
    step = TrainStep(model, forward_fn, criterion, cfg, optimizer, scheduler, scaler, rt)
    state = None
    if resume:
        state = resume_state(out_dir, cfg.to_dict(), model, optimizer, scheduler, scaler, load_fn)
    if state is None:
        clear_run(out_dir)
        state = RunState()
    write_json(out_dir / "config.json", cfg.to_dict())
    for ds in (train_ds, val_ds):
        if rt.num_workers > 0 and hasattr(ds, "preload"):
            ds.preload()  # decoded once here; forked workers share it
    val_loader = None if val_ds is None else DataLoader(
        val_ds, batch_size=cfg.eval_batch_size or cfg.batch_size, shuffle=False,
        collate_fn=collate_fn, worker_init_fn=seed_worker,
        generator=make_generator(cfg.seed, 0, 1),
        **rt.loader_kwargs(persistent=True),  # the same items every epoch: keep the workers
    )

    epochs_this_call, interrupted = 0, False
    model.train()
    for epoch in range(state.epoch + 1, cfg.epochs + 1):
        if state.stopped_early:
            break
        started = time.perf_counter()
        reset_peak_memory(rt.device)
        if hasattr(train_ds, "set_epoch"):
            train_ds.set_epoch(epoch)
        loader = DataLoader(
            train_ds, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate_fn,
            worker_init_fn=seed_worker, generator=make_generator(cfg.seed, epoch),
            **rt.loader_kwargs(),  # fresh workers: they must see this epoch's set_epoch
        )
        sums = torch.zeros(3, dtype=_sum_dtype(rt.device), device=rt.device)  # loss, bce, dice
        n_seen = 0
        for batch in bar(_take(loader, n_steps), total=n_steps, desc=f"epoch {epoch}",
                         leave=False, enabled=progress):
            batch = device_batch(batch, rt.device)
            sums += step(batch) * len(batch["labels"])
            n_seen += len(batch["labels"])
            state.step += 1
        loss_sum, bce_sum, dice_sum = (float(v) / n_seen for v in sums)  # waits for the device
        loop_seconds = time.perf_counter() - started
        if not math.isfinite(loss_sum):
            raise FloatingPointError(
                f"training loss is {loss_sum} in epoch {epoch}; lower lr or switch precision "
                "to 'bf16'/'fp32'"
            )
        row: dict[str, Any] = {
            "epoch": epoch, "step": state.step, "train_loss": loss_sum, "train_bce": bce_sum,
            "train_dice": dice_sum, "lr": lr_of_main_group(optimizer),
            "items": n_seen, "items_per_s": n_seen / loop_seconds,  # data + steps, no validation
        }
        value = None
        if val_loader is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            if hasattr(val_ds, "set_epoch"):
                val_ds.set_epoch(0)
            metrics = evaluate_fn(model, val_loader, forward_fn)
            if MONITOR not in metrics:
                raise KeyError(f"evaluate_fn must return {MONITOR!r}, got {sorted(metrics)}")
            row.update({f"val_{k}": float(v) for k, v in metrics.items()})
            value = float(metrics[MONITOR])
        row["seconds"] = time.perf_counter() - started
        row["peak_mem_mb"] = peak_memory_mb(rt.device) - held_elsewhere
        state.record(row, value, cfg.min_delta, cfg.patience)
        save_state(
            out_dir, state, cfg.to_dict(), model, optimizer, scheduler, scaler, save_fn,
            trainable_file,
        )
        if progress:
            print(_epoch_line(row, cfg.epochs), flush=True)
        epochs_this_call += 1
        stop_requested = bool(on_epoch_end(dict(row))) if on_epoch_end else False
        if stop_requested or epochs_this_call == stop_after_epochs:
            interrupted = epoch < cfg.epochs and not state.stopped_early
            break

    df = write_log(out_dir, state.rows) if state.rows else log_frame(state.rows)
    if not interrupted and cfg.restore_best and state.best_epoch is not None:
        if state.best_epoch != state.epoch and find_checkpoint(out_dir / "best") is not None:
            load_fn(model, out_dir / "best")
    return TrainResult(
        best_epoch=state.best_epoch,
        best_metric=state.best_metric,
        log=df,
        out_dir=out_dir,
        stopped_early=state.stopped_early,
        seconds=float(sum(r["seconds"] for r in state.rows)),
        completed=not interrupted,
    )


def _sum_dtype(device: torch.device) -> torch.dtype:
    """float64 for running sums, float32 on mps (which has no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _take(loader: DataLoader, n: int):
    """The first `n` batches of `loader` (stops the iterator early, workers included)."""
    for i, batch in enumerate(loader):
        if i >= n:
            break
        yield batch


def _epoch_line(row: dict[str, Any], epochs: int) -> str:
    val = f", val mIoU {row[f'val_{MONITOR}']:.4f}" if f"val_{MONITOR}" in row else ""
    return f"epoch {row['epoch']}/{epochs}: loss {row['train_loss']:.4f}{val}"


def best_checkpoint_epoch(out_dir: str | Path) -> int | None:
    """The epoch stored in `out_dir/best`, or None if there is no best checkpoint."""
    best = find_checkpoint(Path(out_dir) / "best")
    return None if best is None else int(load_meta(best)["epoch"])
