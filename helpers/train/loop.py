"""The training loop: AdamW + cosine warm-up, BCE+Dice, validation mIoU, early stopping, resume.

`train(model, train_ds, val_ds, cfg, out_dir, collate_fn)` trains the parameters of `model`
that have `requires_grad` (prepare the model with `helpers.model.modes.apply_mode` first)
and writes into `out_dir`:

- `config.json`: the `TrainConfig`;
- `log.json` and `log.csv`: one row per epoch (written atomically after every epoch);
- `best/` and `last/`: checkpoint folders (see `helpers.train.checkpoint`).

If `out_dir/last` exists and `resume=True`, the run continues after the last finished
epoch and ends with the same weights and log as an uninterrupted run: the model, optimizer,
scheduler, grad scaler and RNG states are restored, `train_ds.set_epoch(epoch)` is called at
the start of every epoch and each epoch's shuffle comes from a generator seeded with
(seed, epoch).
"""

from __future__ import annotations

import math
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from helpers.io import write_json, write_text
from helpers.train.checkpoint import (
    find_checkpoint,
    load_meta,
    load_trainable_state,
    load_training_state,
    save_checkpoint,
)
from helpers.train.losses import BCEDiceLoss
from helpers.train.seed import (
    capture_rng_state,
    deterministic_cpu,
    make_generator,
    restore_rng_state,
    seed_everything,
    seed_worker,
)

MODES = ("decoder", "lora", "full")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
MONITOR = "miou"
# Config fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = frozenset({"num_workers", "restore_best"})

ForwardFn = Callable[[nn.Module, dict[str, Any]], torch.Tensor]
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
    num_workers: int = 0
    amp: str = "auto"  # "auto" | "bf16" | "fp16" | "off"; autocast is used on CUDA only
    eval_every: int = 1  # validate every n epochs (and always after the last one)
    threshold: float = 0.5  # probability threshold for validation IoU / Dice
    max_steps_per_epoch: int | None = None  # cap on batches per epoch (quick demos)
    eval_batch_size: int | None = None  # None: same as batch_size
    restore_best: bool = True  # load the best weights into the model when training ends
    deterministic: bool = False  # call seed.deterministic_cpu() before training

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; choose one of {MODES}")
        if self.amp not in AMP_CHOICES:
            raise ValueError(f"unknown amp {self.amp!r}; choose one of {AMP_CHOICES}")
        for name in ("epochs", "batch_size", "eval_every"):
            _check_int(name, getattr(self, name), minimum=1)
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


def default_forward(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """`helpers.model.forward.segment` on a collated batch (gradients reach the towers)."""
    from helpers.model.forward import segment

    return segment(model, batch["pixel_values"], batch["input_ids"], batch["attention_mask"])


def default_save_fn(mode: str) -> SaveFn | None:
    """`helpers.model.modes.save_trainable` bound to `mode`, or None if it cannot be imported."""
    try:
        from helpers.model.modes import save_trainable
    except ImportError as err:
        warnings.warn(
            f"helpers.model.modes.save_trainable is unavailable ({err}); checkpoints hold "
            "only trainable.safetensors",
            stacklevel=3,
        )
        return None

    def save(model: nn.Module, folder: Path) -> None:
        save_trainable(model, mode, folder)

    return save


def default_param_groups(model: nn.Module, weight_decay: float, lr: float) -> list[dict]:
    """Trainable parameters in two AdamW groups: matrices with weight decay, the rest without."""
    decay, no_decay = [], []
    for _, param in model.named_parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay, "lr": lr},
        {"params": no_decay, "weight_decay": 0.0, "lr": lr},
    ]
    return [g for g in groups if g["params"]]


def build_param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """`helpers.model.modes.parameter_groups` if available, else `default_param_groups`."""
    try:
        from helpers.model.modes import parameter_groups
    except ImportError:
        return default_param_groups(model, cfg.weight_decay, cfg.lr)
    return list(parameter_groups(model, cfg.mode, cfg.lr, cfg.tower_lr, cfg.weight_decay))


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` on `device`: None (no autocast) off CUDA or for "off"."""
    if amp not in AMP_CHOICES:
        raise ValueError(f"unknown amp {amp!r}; choose one of {AMP_CHOICES}")
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if amp == "bf16" else torch.float16


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


def _match_size(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logits as (B, H, W) at the labels' size (bilinear resize when they differ)."""
    if logits.ndim == 2:  # old transformers squeeze batch-size-1 logits
        logits = logits.unsqueeze(0)
    if logits.ndim == 4 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(
            logits.unsqueeze(1).float(), size=labels.shape[-2:], mode="bilinear",
            align_corners=False,
        )[:, 0]
    return logits


# ---------------------------------------------------------------------------- evaluation


def _binary_scores(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image IoU and Dice of boolean (B, H, W) masks; both empty counts as 1.0."""
    dims = (1, 2)
    inter = (pred & truth).sum(dims).double()
    p, t = pred.sum(dims).double(), truth.sum(dims).double()
    union = p + t - inter
    empty = union == 0
    iou = torch.where(empty, torch.ones_like(inter), inter / union.clamp_min(1))
    dice = torch.where(empty, torch.ones_like(inter), 2 * inter / (p + t).clamp_min(1))
    return iou, dice


@torch.no_grad()  # not inference_mode: cached text embeddings may be reused in training
def evaluate_segmentation(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    forward_fn: ForwardFn,
    threshold: float = 0.5,
    amp_dtype: torch.dtype | None = None,
    criterion: nn.Module | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Validation scores at the training resolution.

    Prediction: `sigmoid(logits) >= threshold`; truth: soft label `>= 0.5`. Per image IoU
    and Dice (an image whose prediction and truth are both empty scores 1.0), averaged per
    class (`batch["datasets"]`, e.g. "cracks", "taping"). `miou` / `mdice` are the mean
    over classes of those per-class means (no background class). Negative pairs
    (`is_negative`) are skipped. `loss` is the mean criterion value over the scored images.
    Returns keys `iou_<class>`, `dice_<class>`, `miou`, `mdice` and (with a criterion) `loss`.
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    ious: dict[str, list[float]] = {}
    dices: dict[str, list[float]] = {}
    loss_sum, n_scored = 0.0, 0
    try:
        for batch in tqdm(loader, desc="validate", leave=False, disable=not progress):
            keep = ~torch.as_tensor(batch["is_negative"]).bool() if "is_negative" in batch else None
            if keep is not None and not bool(keep.any()):
                continue
            batch = _to_device(batch, device)
            with _autocast(device, amp_dtype):
                logits = forward_fn(model, batch)
            labels = batch["labels"].float()
            logits = _match_size(logits, labels).float()
            names = list(batch["datasets"])
            if keep is not None:
                keep_dev = keep.to(device)
                logits, labels = logits[keep_dev], labels[keep_dev]
                names = [n for n, k in zip(names, keep.tolist(), strict=True) if k]
            if criterion is not None:
                loss_sum += float(criterion(logits, labels)) * len(names)
            iou, dice = _binary_scores(torch.sigmoid(logits) >= threshold, labels >= 0.5)
            for name, i, d in zip(names, iou.tolist(), dice.tolist(), strict=True):
                ious.setdefault(name, []).append(i)
                dices.setdefault(name, []).append(d)
            n_scored += len(names)
    finally:
        model.train(was_training)
    if n_scored == 0:
        raise ValueError("the validation set has no positive (non-negative) images to score")
    out: dict[str, float] = {}
    if criterion is not None:
        out["loss"] = loss_sum / n_scored
    for name in sorted(ious):
        out[f"iou_{name}"] = sum(ious[name]) / len(ious[name])
        out[f"dice_{name}"] = sum(dices[name]) / len(dices[name])
    out["miou"] = sum(out[f"iou_{n}"] for n in ious) / len(ious)
    out["mdice"] = sum(out[f"dice_{n}"] for n in dices) / len(dices)
    return out


# ---------------------------------------------------------------------------- logging


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: max allocated since the last reset; CPU: the process's peak RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _json_safe(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()
    }


def write_log(out_dir: Path, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Write `log.json` and `log.csv` atomically; return the log as a DataFrame."""
    df = log_frame(rows)
    write_json(out_dir / "log.json", [_json_safe(r) for r in rows])
    write_text(out_dir / "log.csv", df.to_csv(index=False))
    return df


def log_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """The per-epoch log as a DataFrame (missing values as NaN)."""
    df = pd.DataFrame([_json_safe(r) for r in rows])
    if "improved" in df:
        df["improved"] = df["improved"].astype(bool)
    tail = [c for c in ("improved", "seconds", "peak_mem_mb") if c in df]
    val = [c for c in df if c.startswith("val_")]
    head = [c for c in df if c not in tail and c not in val]
    return df[head + val + tail]


# ---------------------------------------------------------------------------- training


def _lr_of_main_group(optimizer: torch.optim.Optimizer) -> float:
    group = max(optimizer.param_groups, key=lambda g: g.get("initial_lr", g["lr"]))
    return float(group["lr"])


def _optimizer_step(
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


def _check_resume_config(saved: dict[str, Any], cfg: TrainConfig, last: Path) -> None:
    current = cfg.to_dict()
    diffs = [
        f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
        for k in sorted(set(saved) | set(current))
        if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k)
    ]
    if diffs:
        raise ValueError(
            f"{last} was written with another TrainConfig ({'; '.join(diffs)}); "
            "pass resume=False to start over or use another out_dir"
        )


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
) -> TrainResult:
    """Train `model` in place and return a `TrainResult` (see the module docstring).

    forward_fn(model, batch) -> logits (B, H, W); default `default_forward`.
    save_fn(model, folder): writes the portable weights of a checkpoint; default
        `helpers.model.modes.save_trainable(model, cfg.mode, folder)`.
    load_fn(model, folder): loads a checkpoint's weights into `model` in place (resume and
        `restore_best`); default `checkpoint.load_trainable_state` (exact float copies).
    evaluate_fn(model, val_loader, forward_fn) -> dict with at least "miou"; default
        `evaluate_segmentation` at `cfg.threshold`.
    stop_after_epochs / on_epoch_end(row) returning True: stop after that epoch as if the
        process had been interrupted (the run can be resumed later).
    param_groups_fn(model, cfg): AdamW parameter groups; default `build_param_groups`.
    """
    if not isinstance(cfg, TrainConfig):
        raise TypeError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    if stop_after_epochs is not None:
        _check_int("stop_after_epochs", stop_after_epochs, minimum=1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    last_dir, best_dir = out_dir / "last", out_dir / "best"

    forward_fn = forward_fn or default_forward
    save_fn = save_fn if save_fn is not None else default_save_fn(cfg.mode)
    load_fn = load_fn or load_trainable_state
    if cfg.deterministic:
        deterministic_cpu()
    seed_everything(cfg.seed)

    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters; prepare it with apply_mode")
    device = params[0].device
    amp_dtype = resolve_amp(cfg.amp, device)
    criterion = BCEDiceLoss(cfg.bce_weight, cfg.dice_weight, pos_weight=cfg.bce_pos_weight)
    if evaluate_fn is None:
        evaluate_fn = partial(
            evaluate_segmentation, threshold=cfg.threshold, amp_dtype=amp_dtype,
            criterion=criterion, progress=progress,
        )

    if len(train_ds) == 0:
        raise ValueError("the training set is empty")
    steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size)
    if cfg.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, cfg.max_steps_per_epoch)
    total_steps = steps_per_epoch * cfg.epochs
    groups = (param_groups_fn or build_param_groups)(model, cfg)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    from transformers import get_cosine_schedule_with_warmup

    scheduler = get_cosine_schedule_with_warmup(
        optimizer, round(cfg.warmup_fraction * total_steps), total_steps
    )
    scaler = torch.amp.GradScaler(device.type) if amp_dtype == torch.float16 else None

    start_epoch, step, bad_epochs = 1, 0, 0
    best_metric: float | None = None
    best_epoch: int | None = None
    stopped_early = False
    rows: list[dict[str, Any]] = []
    last = find_checkpoint(last_dir) if resume else None
    if last is not None:
        state = load_training_state(last)
        _check_resume_config(state["config"], cfg, last)
        load_fn(model, last)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        start_epoch = int(state["epoch"]) + 1
        step = int(state["step"])
        bad_epochs = int(state["bad_epochs"])
        best_metric = state["best_metric"]
        best_epoch = state["best_epoch"]
        stopped_early = bool(state["stopped_early"])
        rows = list(state["log"])
        restore_rng_state(state["rng"])
    else:
        for stale in (last_dir, best_dir):
            if stale.exists():
                shutil.rmtree(stale)
        for name in ("log.json", "log.csv"):
            (out_dir / name).unlink(missing_ok=True)
    write_json(out_dir / "config.json", cfg.to_dict())

    val_loader = None
    if val_ds is not None:
        val_loader = DataLoader(
            val_ds, batch_size=cfg.eval_batch_size or cfg.batch_size, shuffle=False,
            collate_fn=collate_fn, num_workers=cfg.num_workers, worker_init_fn=seed_worker,
            generator=make_generator(cfg.seed, 0, 1), pin_memory=device.type == "cuda",
        )

    epochs_this_call = 0
    interrupted = False
    model.train()
    epoch_bar = tqdm(
        total=cfg.epochs, initial=start_epoch - 1, desc="epochs", disable=not progress
    )
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            if stopped_early:
                break
            started = time.perf_counter()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            if hasattr(train_ds, "set_epoch"):
                train_ds.set_epoch(epoch)
            loader = DataLoader(
                train_ds, batch_size=cfg.batch_size, shuffle=True, collate_fn=collate_fn,
                num_workers=cfg.num_workers, worker_init_fn=seed_worker,
                generator=make_generator(cfg.seed, epoch), pin_memory=device.type == "cuda",
            )
            sums = {"loss": 0.0, "bce": 0.0, "dice": 0.0}
            n_seen = 0
            bar = tqdm(
                total=steps_per_epoch, desc=f"epoch {epoch}", leave=False, disable=not progress
            )
            for i, batch in enumerate(loader):
                if i >= steps_per_epoch:
                    break
                batch = _to_device(batch, device)
                labels = batch["labels"].float()
                with _autocast(device, amp_dtype):
                    logits = forward_fn(model, batch)
                logits = _match_size(logits, labels)
                parts = criterion.components(logits, labels)
                loss = cfg.bce_weight * parts["bce"] + cfg.dice_weight * parts["dice"]
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"loss is {loss.item()} at epoch {epoch}, step {step + 1}; "
                        "lower lr or switch amp to 'bf16'/'off'"
                    )
                _optimizer_step(loss, optimizer, params, cfg.grad_clip, scaler)
                scheduler.step()
                step += 1
                bs = labels.shape[0]
                n_seen += bs
                for key, value in (("loss", loss), ("bce", parts["bce"]), ("dice", parts["dice"])):
                    sums[key] += float(value.detach()) * bs
                bar.update(1)
                bar.set_postfix(loss=f"{sums['loss'] / n_seen:.4f}")
            bar.close()

            row: dict[str, Any] = {
                "epoch": epoch,
                "step": step,
                "train_loss": sums["loss"] / n_seen,
                "train_bce": sums["bce"] / n_seen,
                "train_dice": sums["dice"] / n_seen,
                "lr": _lr_of_main_group(optimizer),
            }
            improved = False
            validate = val_loader is not None and (
                epoch % cfg.eval_every == 0 or epoch == cfg.epochs
            )
            if validate:
                if hasattr(val_ds, "set_epoch"):
                    val_ds.set_epoch(0)
                metrics = evaluate_fn(model, val_loader, forward_fn)
                if MONITOR not in metrics:
                    raise KeyError(f"evaluate_fn must return {MONITOR!r}, got {sorted(metrics)}")
                row.update({f"val_{k}": float(v) for k, v in metrics.items()})
                value = float(metrics[MONITOR])
                improved = best_metric is None or value > best_metric + cfg.min_delta
                if improved:
                    best_metric, best_epoch, bad_epochs = value, epoch, 0
                else:
                    bad_epochs += 1
                    if cfg.patience is not None and bad_epochs >= cfg.patience:
                        stopped_early = True
            row["improved"] = improved
            row["seconds"] = time.perf_counter() - started
            row["peak_mem_mb"] = peak_memory_mb(device)
            rows.append(row)

            if improved:
                save_checkpoint(
                    best_dir, model, {"epoch": epoch, "metric": MONITOR, "value": best_metric},
                    save_fn,
                )
            training_state = {
                "config": cfg.to_dict(),
                "epoch": epoch,
                "step": step,
                "best_metric": best_metric,
                "best_epoch": best_epoch,
                "bad_epochs": bad_epochs,
                "stopped_early": stopped_early,
                "log": rows,
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict() if scaler is not None else None,
                "rng": capture_rng_state(),
            }
            save_checkpoint(
                last_dir, model,
                {"epoch": epoch, "metric": MONITOR, "value": row.get(f"val_{MONITOR}")},
                save_fn, training_state,
            )
            write_log(out_dir, rows)
            epoch_bar.update(1)
            epoch_bar.set_postfix(
                loss=f"{row['train_loss']:.4f}",
                **({MONITOR: f"{row[f'val_{MONITOR}']:.4f}"} if validate else {}),
            )
            epochs_this_call += 1
            stop_requested = bool(on_epoch_end(dict(row))) if on_epoch_end else False
            if stop_requested or (
                stop_after_epochs is not None and epochs_this_call >= stop_after_epochs
            ):
                interrupted = epoch < cfg.epochs and not stopped_early
                break
    finally:
        epoch_bar.close()

    if rows:
        df = write_log(out_dir, rows)
    else:
        df = log_frame(rows)
    if not interrupted and cfg.restore_best and best_epoch is not None:
        if best_epoch != int(rows[-1]["epoch"]) and find_checkpoint(best_dir) is not None:
            load_fn(model, best_dir)
    return TrainResult(
        best_epoch=best_epoch,
        best_metric=best_metric,
        log=df,
        out_dir=out_dir,
        stopped_early=stopped_early,
        seconds=float(sum(r["seconds"] for r in rows)),
        completed=not interrupted,
    )


def best_checkpoint_epoch(out_dir: str | Path) -> int | None:
    """The epoch stored in `out_dir/best`, or None if there is no best checkpoint."""
    best = find_checkpoint(Path(out_dir) / "best")
    return None if best is None else int(load_meta(best)["epoch"])
