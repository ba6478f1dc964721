"""Threshold sweeps in one pass per image, and choosing thresholds on validation only.

A pixel is foreground at threshold t when `probs >= t`, compared in the dtype of `probs`
(float16 maps compare against t rounded to float16). `sweep_counts` gives exactly the counts
of thresholding at every t, for all prompts of an image at once, on the probabilities' device.

How: each pixel gets the number k of thresholds it reaches (`torch.bucketize`), one
`torch.bincount` splits k by truth, and reversed cumulative sums turn those histograms into
TP and FP at every threshold; FN = |truth| - TP. No thresholding per t.

Scores in the tables follow the empty-case rule of `helpers.evaluate.metrics`: both empty
-> 1.0, exactly one empty -> 0.0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from helpers.evaluate.metrics import mean_scores, rates_from_counts

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)
KEY_COLUMNS = ("image_id", "dataset", "prompt", "split")
METRICS = ("iou", "dice", "precision", "recall", "pooled_iou")


def sweep_counts(
    probs: torch.Tensor, truth: torch.Tensor, thresholds: Sequence[float] = THRESHOLDS
) -> torch.Tensor:
    """(P, T, 3) int64 (tp, fp, fn) of P maps (P, H, W) against one truth (H, W) at every
    threshold, on the maps' device (thresholds compared in the maps' dtype)."""
    if not probs.is_floating_point():
        raise ValueError(f"probs must be a float tensor, got dtype {probs.dtype}")
    maps = probs[None] if probs.ndim == 2 else probs
    if maps.ndim != 3 or tuple(maps.shape[-2:]) != tuple(truth.shape):
        raise ValueError(
            f"probs shape {tuple(probs.shape)} does not match truth shape {tuple(truth.shape)}"
        )
    if torch.isnan(maps).any():
        raise ValueError("probs contain NaN")
    thr = torch.tensor(np.asarray(thresholds, dtype=np.float64)).to(maps.dtype)
    if thr.ndim != 1 or thr.numel() == 0 or bool((thr.diff() <= 0).any()):
        raise ValueError(f"thresholds must be strictly increasing in {maps.dtype}: {thresholds}")
    n, count = thr.numel(), maps.shape[0]
    thr = thr.to(maps.device)
    # k = how many thresholds each pixel reaches (thr[i] <= p for i < k)
    k = torch.bucketize(maps.reshape(count, -1), thr, right=True)
    t = truth.to(maps.device).reshape(1, -1).long()
    offset = 2 * (n + 1) * torch.arange(count, device=maps.device)[:, None]
    index = (k + (n + 1) * t + offset).reshape(-1)
    hist = torch.bincount(index, minlength=count * 2 * (n + 1)).reshape(count, 2, n + 1)
    reach = hist.flip(-1).cumsum(-1).flip(-1)[..., 1:]
    fp, tp = reach[:, 0], reach[:, 1]
    fn = hist[:, 1].sum(-1, keepdim=True) - tp
    return torch.stack([tp, fp, fn], dim=-1).long()


TABLE_COLUMNS = [*KEY_COLUMNS, "threshold", "tp", "fp", "fn", "iou", "dice", "precision", "recall"]


def counts_table(
    keys: Sequence[Sequence[Any]], counts: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
) -> pd.DataFrame:
    """The long sweep table from per-record `KEY_COLUMNS` values and (N, T, 3) counts."""
    thr = np.asarray(thresholds, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.int64).reshape(-1, len(thr), 3)
    if len(keys) != len(counts):
        raise ValueError(f"{len(keys)} key rows for {len(counts)} count rows")
    if not len(keys):
        return pd.DataFrame(columns=TABLE_COLUMNS)
    df = pd.DataFrame(
        {
            name: np.repeat(np.asarray([k[i] for k in keys], dtype=object), len(thr))
            for i, name in enumerate(KEY_COLUMNS)
        }
    )
    df["threshold"] = np.tile(thr, len(keys))
    flat = counts.reshape(-1, 3)
    df["tp"], df["fp"], df["fn"] = flat[:, 0], flat[:, 1], flat[:, 2]
    for name, values in rates_from_counts(df["tp"], df["fp"], df["fn"]).items():
        df[name] = values
    return df[TABLE_COLUMNS]


def threshold_curve(
    df: pd.DataFrame, split: str = "val", by: Sequence[str] | None = ("dataset",)
) -> pd.DataFrame:
    """`mean_scores` of `split` per group and threshold: the scores every threshold gives."""
    rows = df[df["split"] == split]
    if rows.empty:
        present = sorted(map(str, df["split"].unique()))
        raise ValueError(f"no rows for split {split!r} (splits present: {present})")
    return mean_scores(rows, [*(by or []), "threshold"])


def choose_thresholds(
    df: pd.DataFrame,
    split: str = "val",
    by: Sequence[str] | None = ("dataset",),
    metric: str = "iou",
) -> dict[Any, float]:
    """Best threshold per group on `split` (validation) only, by mean per-image `metric`.

    `metric` is one of iou, dice, precision, recall (means of per-image values) or
    pooled_iou. Ties go to the threshold closest to 0.5, then the lower one. Keys are the
    group value (a tuple when grouping by several columns; "all" when `by` is empty).
    """
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
    by = list(by or [])
    curve = threshold_curve(df, split=split, by=by)
    curve["_tie"] = (curve["threshold"] - 0.5).abs()
    curve = curve.sort_values(
        [*by, metric, "_tie", "threshold"], ascending=[True] * len(by) + [False, True, True]
    )
    best = curve.groupby(by, sort=True).head(1) if by else curve.head(1)
    chosen: dict[Any, float] = {}
    for _, row in best.iterrows():
        key = "all" if not by else (row[by[0]] if len(by) == 1 else tuple(row[b] for b in by))
        chosen[key] = float(row["threshold"])
    return chosen


def apply_thresholds(
    df: pd.DataFrame,
    chosen: Mapping[Any, float],
    split: str = "test",
    by: Sequence[str] | None = ("dataset",),
) -> pd.DataFrame:
    """Per-image rows of `split` at each group's chosen threshold (from `choose_thresholds`)."""
    by = list(by or [])
    rows = df[df["split"] == split]
    if rows.empty:
        raise ValueError(f"no rows for split {split!r}")
    if by:
        keys = list(rows[by[0]]) if len(by) == 1 else list(zip(*(rows[b] for b in by), strict=True))
        unknown = set(keys) - set(chosen)
        if unknown:
            raise KeyError(f"no chosen threshold for groups {sorted(map(str, unknown))}")
        wanted = np.array([chosen[k] for k in keys], dtype=float)
    else:
        wanted = np.full(len(rows), float(chosen["all"]))
    picked = rows[np.isclose(rows["threshold"].astype(float), wanted)]
    return picked.reset_index(drop=True)


def summary_at(
    df: pd.DataFrame,
    chosen: Mapping[Any, float],
    split: str,
    by: Sequence[str] | None = ("dataset",),
    group_by: Sequence[str] | None = None,
) -> pd.DataFrame:
    """`mean_scores` of `split` at the thresholds in `chosen` (picked per `by` groups, e.g. on
    val), a row per `group_by` group (default: the `by` groups), with the split in front."""
    rows = apply_thresholds(df, chosen, split=split, by=by)
    out = mean_scores(rows, group_by if group_by is not None else by)
    out.insert(0, "split", split)
    return out


def edge_choices(
    chosen: Mapping[str, Mapping[str, float]], grid: Sequence[float] = THRESHOLDS
) -> str:
    """One sentence naming the choices (per model, per class) that lie on the lowest or highest
    threshold of the sweep grid, where validation might prefer a value the grid lacks."""
    low, high = float(min(grid)), float(max(grid))
    edge = [f"{name} {cls} {t:.2f}" for name, per_class in chosen.items()
            for cls, t in per_class.items() if abs(t - low) < 1e-9 or abs(t - high) < 1e-9]
    if not edge:
        return f"No threshold was chosen at the edge of the sweep grid ({low:.2f} to {high:.2f})."
    return (f"At the edge of the sweep grid ({low:.2f} to {high:.2f}): " + ", ".join(edge)
            + ". Validation might prefer a threshold beyond it, which the grid cannot offer; "
            "the score at the edge is the best the grid allows, not necessarily the best there is.")
