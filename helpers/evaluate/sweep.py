"""Threshold sweeps in one pass per image, and choosing thresholds on validation only.

A pixel is foreground at threshold t when `probs >= t`, compared in the dtype of `probs`
(what `probs >= t` does for a Python float t under NumPy 2: float16 maps compare against
t rounded to float16). `sweep_counts` gives exactly the counts of thresholding at every t.

How: each pixel gets the number k of thresholds it reaches (`np.searchsorted`), one
`np.bincount` splits k by truth, and reversed cumulative sums turn those histograms into
TP and FP at every threshold; FN = |truth| - TP. No thresholding per t. `sweep_counts_torch`
does the same on the probabilities' device (`torch.bucketize` + `torch.bincount`) for all
prompts of an image at once and gives exactly the same counts.

Scores in the tables follow the empty-case rule of `helpers.evaluate.metrics`: both empty
-> 1.0, exactly one empty -> 0.0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from helpers.evaluate.metrics import as_binary, rates_from_counts

THRESHOLDS = np.round(np.arange(0.05, 0.951, 0.05), 2)
KEY_COLUMNS = ("image_id", "dataset", "prompt", "split")
METRICS = ("iou", "dice", "precision", "recall", "pooled_iou")


def sweep_counts(
    probs: np.ndarray, truth: np.ndarray, thresholds: Sequence[float] = THRESHOLDS
) -> np.ndarray:
    """(T, 3) int64 array of (tp, fp, fn) for `probs >= t` at every threshold t."""
    p = np.asarray(probs)
    if not np.issubdtype(p.dtype, np.floating):
        raise ValueError(f"probs must be a float array, got dtype {p.dtype}")
    t = as_binary(truth, "truth")
    if p.shape != t.shape:
        raise ValueError(f"probs shape {p.shape} does not match truth shape {t.shape}")
    if np.isnan(p).any():
        raise ValueError("probs contain NaN")
    thr = np.asarray(thresholds, dtype=np.float64).astype(p.dtype)
    if thr.ndim != 1 or thr.size == 0 or np.any(np.diff(thr) <= 0):
        raise ValueError(f"thresholds must be strictly increasing in {p.dtype}: {thresholds}")
    n = thr.size
    # k = how many thresholds each pixel reaches (thr[i] <= p for i < k)
    k = np.searchsorted(thr, p.ravel(), side="right")
    hist = np.bincount(k + (n + 1) * t.ravel(), minlength=2 * (n + 1)).reshape(2, n + 1)
    # pixels reaching threshold i: those with k >= i + 1
    reach = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]
    fp, tp = reach[0], reach[1]
    fn = hist[1].sum() - tp
    return np.stack([tp, fp, fn], axis=1).astype(np.int64)


def sweep_counts_torch(
    probs: torch.Tensor, truth: torch.Tensor, thresholds: Sequence[float] = THRESHOLDS
) -> torch.Tensor:
    """(P, T, 3) int64 (tp, fp, fn) of P maps (P, H, W) against one truth (H, W), on the
    maps' device: exactly `sweep_counts` of each map (thresholds compared in the maps' dtype)."""
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


def sweep_table(
    records: Iterable[Mapping[str, Any]], thresholds: Sequence[float] = THRESHOLDS
) -> pd.DataFrame:
    """Long table: one row per image x threshold.

    Each record holds image_id, dataset, prompt, split, probs (full-resolution probability
    map) and truth. Columns: image_id, dataset, prompt, split, threshold, tp, fp, fn, iou,
    dice, precision, recall.
    """
    thr = np.asarray(thresholds, dtype=np.float64)
    keys, counts = [], []
    for i, rec in enumerate(records):
        missing = [key for key in (*KEY_COLUMNS, "probs", "truth") if key not in rec]
        if missing:
            raise ValueError(f"record {i} lacks keys {missing}")
        try:
            counts.append(sweep_counts(rec["probs"], rec["truth"], thr))
        except ValueError as err:
            raise ValueError(f"image {rec['image_id']!r}: {err}") from err
        keys.append([rec[key] for key in KEY_COLUMNS])
    return counts_table(keys, np.asarray(counts).reshape(len(keys), len(thr), 3), thr)


def threshold_curve(
    df: pd.DataFrame, split: str = "val", by: Sequence[str] | None = ("dataset",)
) -> pd.DataFrame:
    """Mean per-image iou, dice, precision, recall and pooled IoU per group and threshold."""
    rows = df[df["split"] == split]
    if rows.empty:
        present = sorted(map(str, df["split"].unique()))
        raise ValueError(f"no rows for split {split!r} (splits present: {present})")
    keys = [*(by or []), "threshold"]
    curve = rows.groupby(keys, sort=True)[["iou", "dice", "precision", "recall"]].mean()
    sums = rows.groupby(keys, sort=True)[["tp", "fp", "fn"]].sum()
    curve["pooled_iou"] = rates_from_counts(sums["tp"], sums["fp"], sums["fn"])["iou"]
    curve["n_images"] = rows.groupby(keys, sort=True).size()
    return curve.reset_index()


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
    """Scores of `split` at the thresholds in `chosen` (picked per `by` groups, e.g. on val).

    Rows are the `group_by` groups (default: the `by` groups): distinct images, scored
    image-prompt pairs, the threshold, mean per-image IoU / Dice / precision / recall and
    pooled IoU.
    """
    rows = apply_thresholds(df, chosen, split=split, by=by)
    keys = list(group_by if group_by is not None else (by or []))
    grouped = rows.groupby(keys, sort=True) if keys else rows.assign(_all="all").groupby("_all")
    out = grouped.agg(
        images=("image_id", "nunique"),
        pairs=("image_id", "size"),
        threshold=("threshold", "mean"),
        iou=("iou", "mean"),
        dice=("dice", "mean"),
        precision=("precision", "mean"),
        recall=("recall", "mean"),
    )
    sums = grouped[["tp", "fp", "fn"]].sum()
    out["pooled_iou"] = rates_from_counts(sums["tp"], sums["fp"], sums["fn"])["iou"]
    out.insert(0, "split", split)
    return out.reset_index()
