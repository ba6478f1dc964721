"""Galleries of stored test predictions: one row per chosen image with the photo, its label,
the probability map with its colour bar (threshold marked), the thresholded mask and an
overlay, titled with why the image was chosen (best, worst, or its failure category).

The rows come from `helpers.evaluate.failures` (`best_and_worst`, `gallery_picks`), which take
one image per photo, so a gallery never shows one wall several times.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.core.io import read_mask
from helpers.core.numbers import percent
from helpers.course.viz import CLASS_COLOURS, overlay
from helpers.data.images import load_rgb
from helpers.evaluate.predictions import probability_path, read_probability

LABEL_COLOUR = (60, 220, 60)  # the label in overlays: green
COLOUR_NAMES = {"cracks": "red", "taping": "blue"}


def caption(row) -> str:
    """Why a gallery row was chosen and how it scored: its failure category (or best/worst)
    and IoU; on an image without a label, how much was predicted instead."""
    head = getattr(row, "category", None) or getattr(row, "kind", "")
    if row.truth_fraction == 0:
        return f"{head}\npredicted {percent(row.pred_fraction)} of an unlabelled image"
    return f"{head}\nIoU {row.iou:.3f} (P {row.precision:.2f}, R {row.recall:.2f})"


def _probability_panel(ax, probs: np.ndarray, threshold: float) -> None:
    shown = ax.imshow(probs, cmap="viridis", vmin=0.0, vmax=1.0)
    # an inset colour bar: no layout engine to re-solve at every draw of a tall figure
    bar = plt.colorbar(shown, cax=ax.inset_axes([1.03, 0.0, 0.05, 1.0]))
    bar.ax.axhline(threshold, color="white", linewidth=1.5)
    bar.set_ticks(sorted({0.0, 0.5, 1.0, round(float(threshold), 2)}))
    bar.ax.tick_params(labelsize=6)
    ax.set_title(f"probability (line: t={threshold:.2f})", fontsize=8)


def prediction_gallery(
    picks: pd.DataFrame,
    manifest_by_id: pd.DataFrame,
    store: str | Path,
    prompts: Mapping[str, str],
    thresholds: Mapping[str, float],
    suptitle: str,
):
    """One row per pick (columns image_id, dataset, split, iou, precision, recall,
    truth_fraction, pred_fraction, and category or kind): photo, label, probability map with a
    colour bar, mask at the class threshold, overlay. `manifest_by_id` is the manifest indexed
    by image id; `prompts` and `thresholds` map a class to its prompt and threshold."""
    if picks.empty:
        raise ValueError("prediction_gallery needs at least one row")
    height = 2.5 * len(picks) + 0.7  # inches: the rows and a band for the title
    fig, axes = plt.subplots(len(picks), 5, figsize=(12.5, height), squeeze=False)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.95 / height,
                        wspace=0.25, hspace=0.35)
    for ax in axes.flat:
        ax.axis("off")
    for row_axes, pick in zip(axes, picks.itertuples(), strict=True):
        r = manifest_by_id.loc[pick.image_id]
        cls, t = pick.dataset, float(thresholds[pick.dataset])
        image, truth = load_rgb(r.image_path), read_mask(r.mask_path) > 0
        probs = read_probability(probability_path(store, pick.split, pick.image_id, prompts[cls]))
        pred = probs >= t
        row_axes[0].imshow(image)
        row_axes[0].set_title(caption(pick), fontsize=8)
        row_axes[1].imshow(truth, cmap="gray", vmin=0, vmax=1)
        row_axes[1].set_title(
            "label (white)" if truth.any() else "label: nothing to find", fontsize=8
        )
        _probability_panel(row_axes[2], probs, t)
        row_axes[3].imshow(pred, cmap="gray", vmin=0, vmax=1)
        row_axes[3].set_title(f"mask at t={t:.2f} ({percent(pred.mean())} of the image)",
                              fontsize=8)
        both = overlay(overlay(image, truth, LABEL_COLOUR), pred, CLASS_COLOURS[cls])
        row_axes[4].imshow(both)
        row_axes[4].set_title(
            f"label green, prediction {COLOUR_NAMES.get(cls, 'tinted')}", fontsize=8
        )
    fig.suptitle(suptitle, y=1 - 0.2 / height)
    return fig
