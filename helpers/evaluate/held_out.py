"""Prompts training never saw: do the learned classes follow other words for them?

The held-out phrasings are scored on the test split beside the training prompts, at the
thresholds chosen per class on validation from the training prompts only (the threshold a
deployed model would use), so a held-out prompt gets no tuning of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pandas as pd

from helpers.data.prompts import PROMPTS
from helpers.evaluate.predictions import evaluate_model
from helpers.evaluate.sweep import apply_thresholds, choose_thresholds
from helpers.inference.segmenter import Segmenter

HELD_OUT_PROMPTS: dict[str, list[str]] = {
    "cracks": ["wall crack", "hairline fracture"],
    "taping": ["drywall tape joint", "joint compound"],
}

COLUMNS = ["dataset", "prompt", "held_out", "threshold", "images", "iou"]


def check_held_out(
    held_out: Mapping[str, Sequence[str]], trained: Mapping[str, Sequence[str]] = PROMPTS
) -> None:
    """Fail when a held-out prompt is one training used, or names a class training lacks."""
    seen = {" ".join(p.split()).lower() for options in trained.values() for p in options}
    for cls, options in held_out.items():
        if cls not in trained:
            raise ValueError(f"held-out class {cls!r} is not one of {sorted(trained)}")
        used = [p for p in options if " ".join(p.split()).lower() in seen]
        if used:
            raise ValueError(f"held-out prompts {used} are training prompts")


def held_out_scores(
    segmenter: Segmenter,
    manifest: pd.DataFrame,
    store: str | Path,
    key: str,
    held_out: Mapping[str, Sequence[str]] = HELD_OUT_PROMPTS,
    trained: Mapping[str, Sequence[str]] = PROMPTS,
    batch_size: int = 8,
    progress: bool = True,
) -> pd.DataFrame:
    """Test mean IoU per class and prompt, training and held-out prompts side by side.

    One evaluation (`evaluate_model`, stored under `store` for `key`) covers val and test
    with both sets of prompts; thresholds are chosen per class on val from the training
    prompts' rows (`choose_thresholds`) and applied to every prompt of that class on test.
    Columns: dataset, prompt, held_out, threshold, images, iou.
    """
    check_held_out(held_out, trained)
    prompts = {cls: [*trained[cls], *held_out.get(cls, [])] for cls in trained}
    table, _ = evaluate_model(
        segmenter, manifest, store, key, ("val", "test"), prompts, batch_size, progress
    )
    unseen = {p for options in held_out.values() for p in options}
    chosen = choose_thresholds(table[~table["prompt"].isin(unseen)], split="val")
    scored = apply_thresholds(table, chosen, split="test")
    out = (
        scored.groupby(["dataset", "prompt"], sort=False)
        .agg(threshold=("threshold", "first"), images=("image_id", "nunique"), iou=("iou", "mean"))
        .reset_index()
    )
    out.insert(2, "held_out", out["prompt"].isin(unseen))
    order = {p: i for i, p in enumerate(p for cls in prompts.values() for p in cls)}
    out = out.iloc[out["prompt"].map(order).argsort(kind="stable")]
    return out[COLUMNS].reset_index(drop=True)
