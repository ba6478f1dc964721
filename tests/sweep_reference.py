"""The NumPy reference the device sweep is checked against: one map at a time, no torch.

A pixel is foreground at threshold t when `probs >= t`, compared in the dtype of `probs`.
Each pixel gets the number k of thresholds it reaches (`np.searchsorted`), one `np.bincount`
splits k by truth, and reversed cumulative sums give TP and FP at every threshold.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.data.images import load_rgb
from helpers.evaluate.metrics import as_binary
from helpers.evaluate.predictions import image_id, probability_path, write_probability
from helpers.evaluate.sweep import KEY_COLUMNS, THRESHOLDS, counts_table
from helpers.inference.segmenter import as_stored


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
    n = thr.size
    k = np.searchsorted(thr, p.ravel(), side="right")  # thresholds each pixel reaches
    hist = np.bincount(k + (n + 1) * t.ravel(), minlength=2 * (n + 1)).reshape(2, n + 1)
    reach = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]
    fp, tp = reach[0], reach[1]
    fn = hist[1].sum() - tp
    return np.stack([tp, fp, fn], axis=1).astype(np.int64)


def sweep_table(
    records: Iterable[Mapping[str, Any]], thresholds: Sequence[float] = THRESHOLDS
) -> pd.DataFrame:
    """The long sweep table from records holding `KEY_COLUMNS`, probs and truth."""
    thr = np.asarray(thresholds, dtype=np.float64)
    keys, counts = [], []
    for rec in records:
        counts.append(sweep_counts(rec["probs"], rec["truth"], thr))
        keys.append([rec[key] for key in KEY_COLUMNS])
    return counts_table(keys, np.asarray(counts).reshape(len(keys), len(thr), 3), thr)


def prediction_records(
    segmenter,
    manifest: pd.DataFrame,
    prompts: Mapping[str, Sequence[str]],
    splits: Sequence[str] = ("val", "test"),
    store: str | Path | None = None,
) -> Iterator[dict[str, Any]]:
    """Per image (one at a time) and prompt of its class: ids, 8-bit probs, truth, true mask."""
    from helpers.core.io import read_mask

    rows = manifest[manifest["split"].isin(splits)].reset_index(drop=True)
    for dataset, group in rows.groupby("dataset", sort=True):
        names = list(prompts[dataset])
        for r in group.itertuples():
            maps = segmenter.probability_maps([load_rgb(r.image_path)], names)[0]
            truth = read_mask(r.mask_path) > 0
            true_path = str(getattr(r, "true_mask_path", "") or "")
            true_mask = read_mask(true_path) > 0 if true_path and true_path != "nan" else None
            for prompt, p in zip(names, as_stored(maps).cpu().numpy(), strict=True):
                if store is not None:
                    write_probability(probability_path(store, r.split, image_id(r), prompt), p)
                yield {
                    "image_id": image_id(r), "dataset": dataset, "prompt": prompt,
                    "split": r.split, "probs": p, "truth": truth, "true_mask": true_mask,
                }
