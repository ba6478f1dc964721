"""Bookkeeping beside the training loop: progress, early stopping, resume, the epoch log.

`RunState` is what a run knows between epochs (epoch, step, best score, epochs without
improvement, log rows); `Resumable` is what else a checkpoint restores (weights, optimizer,
schedule, grad scaler). `save_state` / `resume_or_start` write and read both, with every
rank's RNG states, inside the `last` checkpoint, so a resumed run ends with the same weights
and log as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from helpers.core.distributed import barrier, gather, is_main, world
from helpers.core.io import write_json, write_text
from helpers.model.modes import restore_trainable, save_trainable
from helpers.train.checkpoint import (
    META_FILE,
    RESTART_HINT,
    CheckpointError,
    find_checkpoint,
    load_training_state,
    save_checkpoint,
)
from helpers.train.seed import capture_rng_state, restore_rng_state

MONITOR = "miou"
# Config fields that may change between an interrupted run and its resumption.
RESUMABLE_CHANGES = frozenset({"num_workers", "restore_best"})


@dataclass
class RunState:
    """Progress of a run: the last finished epoch, steps, best score and the log so far."""

    epoch: int = 0
    step: int = 0
    bad_epochs: int = 0
    best_metric: float | None = None
    best_epoch: int | None = None
    stopped_early: bool = False
    rows: list[dict[str, Any]] = field(default_factory=list)

    def record(
        self, row: dict[str, Any], value: float | None, min_delta: float, patience: int | None
    ) -> bool:
        """Add an epoch's row; with a validation `value`, update best/patience. True if better."""
        improved = False
        if value is not None:
            improved = self.best_metric is None or value > self.best_metric + min_delta
            if improved:
                self.best_metric, self.best_epoch, self.bad_epochs = value, row["epoch"], 0
            else:
                self.bad_epochs += 1
                self.stopped_early = patience is not None and self.bad_epochs >= patience
        row["improved"] = improved
        self.epoch = int(row["epoch"])
        self.rows.append(row)
        return improved


def check_resume_config(saved: dict[str, Any], current: dict[str, Any], last: Path) -> None:
    """Refuse to resume `last` under a config that differs in more than resumable fields."""
    diffs = [
        f"{k}: {saved.get(k)!r} -> {current.get(k)!r}"
        for k in sorted(set(saved) | set(current))
        if k not in RESUMABLE_CHANGES and saved.get(k) != current.get(k)
    ]
    if diffs:
        raise ValueError(
            f"{last} was written with another TrainConfig ({'; '.join(diffs)}); "
            "remove the folder to start over or use another out_dir"
        )


def earlier_run(out_dir: Path) -> Path | None:
    """Something an earlier run left in `out_dir` (a checkpoint folder or a log), or None."""
    for name in ("last", "best", "log.json", "log.csv"):
        if (out_dir / name).exists():
            return out_dir / name
    return None


@dataclass
class Resumable:
    """What a `last` checkpoint restores besides the progress: the weights (as the mode's
    portable files), the optimizer, the schedule and the fp16 grad scaler."""

    model: nn.Module
    mode: str
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: torch.amp.GradScaler | None

    def save_weights(self, folder: Path) -> None:
        save_trainable(self.model, self.mode, folder)

    def load_weights(self, folder: Path) -> None:
        """Copy the weights stored in `folder` into the model, in place and exactly."""
        try:
            restore_trainable(self.model, self.mode, folder)
        except (OSError, ValueError, RuntimeError) as err:  # RuntimeError: shapes differ
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{folder}: {first}; {RESTART_HINT}") from err

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }

    def load_state_dict(self, saved: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.scaler is not None and saved.get("scaler"):
            self.scaler.load_state_dict(saved["scaler"])


def resume_or_start(out_dir: Path, config: dict[str, Any], parts: Resumable) -> RunState:
    """The run's state: restored from `out_dir/last` (weights, optimizer, schedule, scaler and
    this rank's RNGs), or a fresh one when `out_dir` holds no earlier run."""
    last = find_checkpoint(out_dir / "last")
    if last is None:
        left = earlier_run(out_dir)
        if left is not None:  # never wipe an earlier run that was not asked to start over
            raise CheckpointError(
                f"{out_dir / 'last' / META_FILE} is missing but {left} is there from an earlier "
                f"run, so it can neither resume nor silently start over; {RESTART_HINT}"
            )
        return RunState()
    saved = load_training_state(last)
    check_resume_config(saved["config"], config, last)
    parts.load_weights(last)
    parts.load_state_dict(saved)
    rng = saved["rng"]
    restore_rng_state(rng[min(world()[0], len(rng) - 1)] if isinstance(rng, list) else rng)
    return RunState(
        epoch=int(saved["epoch"]),
        step=int(saved["step"]),
        bad_epochs=int(saved["bad_epochs"]),
        best_metric=saved["best_metric"],
        best_epoch=saved["best_epoch"],
        stopped_early=bool(saved["stopped_early"]),
        rows=list(saved["log"]),
    )


def save_state(out_dir: Path, state: RunState, config: dict[str, Any], parts: Resumable) -> None:
    """After an epoch: `best/` if it improved, `last/` with the full training state, the log.

    Every rank's RNG state goes into `last`; only rank 0 writes, and every rank waits until
    it has, so a rank killed later finds a complete checkpoint of this epoch.
    """
    rng = gather(capture_rng_state())
    if is_main():
        row = state.rows[-1]
        if row["improved"]:
            meta = {"epoch": state.epoch, "metric": MONITOR, "value": state.best_metric}
            save_checkpoint(out_dir / "best", parts.save_weights, meta)
        training_state = {
            "config": config,
            "epoch": state.epoch,
            "step": state.step,
            "best_metric": state.best_metric,
            "best_epoch": state.best_epoch,
            "bad_epochs": state.bad_epochs,
            "stopped_early": state.stopped_early,
            "log": state.rows,
            **parts.state_dict(),
            "rng": rng,
        }
        meta = {"epoch": state.epoch, "metric": MONITOR, "value": row.get(f"val_{MONITOR}")}
        save_checkpoint(out_dir / "last", parts.save_weights, meta, training_state)
        write_log(out_dir, state.rows)
    barrier()


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
    tail = [c for c in ("improved", "items", "items_per_s", "seconds", "peak_mem_mb") if c in df]
    val = [c for c in df if c.startswith("val_")]
    head = [c for c in df if c not in tail and c not in val]
    return df[head + val + tail]
