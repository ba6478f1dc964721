"""Figures of notebooks 05 and 06: how the chosen threshold moves with the validation photos,
and the modes compared with their intervals over photos."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

from helpers.course.viz import CLASS_PALETTE, bootstrap_bars, integer_ticks


def stability_figure(draws: pd.DataFrame, summary: pd.DataFrame, test_curve: pd.DataFrame):
    """Left: how many validation resamples chose each threshold, per class. Right: the test
    IoU curve per class with the single validation choice (circle) and the rule's median
    choice (square). `draws` and `summary` come from `threshold_stability`; `test_curve` is
    `threshold_curve(table, split="test")`. Returns the figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.6))
    classes = sorted(draws["dataset"].unique())
    grid = np.sort(test_curve["threshold"].unique())
    step = float(np.min(np.diff(grid))) if len(grid) > 1 else 0.05
    width = 0.8 * step / len(classes)
    for k, cls in enumerate(classes):
        colour = CLASS_PALETTE.get(cls)
        chosen = draws.loc[draws["dataset"] == cls, "threshold"].round(4)
        counts = chosen.value_counts().reindex(np.round(grid, 4), fill_value=0)
        left.bar(grid + (k - (len(classes) - 1) / 2) * width, counts.to_numpy(), width,
                 color=colour, label=cls)
        curve = test_curve[test_curve["dataset"] == cls]
        right.plot(curve["threshold"], curve["iou"], "-", color=colour, label=f"{cls} test IoU")
        row = summary[summary["dataset"] == cls].iloc[0]
        right.plot(row["chosen"], row["test_iou"], "o", color=colour, markersize=8,
                   label=f"{cls}: single choice")
        right.plot(row["median_threshold"], row["median_test_iou"], "s", mfc="none",
                   color=colour, markersize=10, label=f"{cls}: median of resamples")
    resamples = int(summary["resamples"].iloc[0])
    left.set(xlabel="threshold chosen on the resampled validation photos",
             ylabel="resamples (count)",
             title=f"threshold chosen on {resamples} resamples of the validation photos")
    integer_ticks(left, "y")
    left.legend(fontsize=8)
    right.set(xlabel="threshold", ylabel="test mean per-image IoU",
              title="test split, every prompt of the class: IoU at each threshold")
    right.set_ylim(0, float(test_curve["iou"].max()) * 1.5 + 1e-3)  # room for the legend
    right.legend(fontsize=7, ncol=2, loc="upper right")
    fig.tight_layout()
    return fig


def _log_axis(ax, values: np.ndarray) -> None:
    """A log x axis over whole decades around `values`, labelled 10k, 100k, 1M, ..., with at
    least a factor of 3 to spare on each side (room for the points' labels)."""
    low = 10 ** np.floor(np.log10(values.min() / 3))
    high = 10 ** np.ceil(np.log10(values.max() * 3))
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    ax.xaxis.set_major_locator(LogLocator(base=10))
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.xaxis.set_minor_formatter(NullFormatter())


def modes_figure(spread: pd.DataFrame, comparison: pd.DataFrame, reference: str = "none",
                 resamples: int | None = None):
    """Left: test IoU per mode and class with the bootstrap interval over photos (y from 0).
    Right: test mIoU (mean over classes) against trainable parameters on a log axis; the
    `reference` mode, which trains nothing, is a dashed line. `spread` is `photo_bootstrap`'s
    table; `comparison` the modes' table (indexed by mode). Returns the figure."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 3.9))
    bootstrap_bars(spread, ax=left, label="test IoU")
    how = f"{resamples} photo resamples" if resamples else "resampled photos"
    left.set_title(f"test split, thresholds chosen on validation per mode and class\n"
                   f"bars: mean per-image IoU; error bars: each mode's own interval over {how}\n"
                   "(a gain over zero-shot is judged by its paired interval, in the readings)",
                   fontsize=10)
    left.set_xlabel("mode")
    miou = spread.groupby("mode", sort=False)["iou"].mean()
    trained = [m for m in miou.index if m != reference]
    params = comparison.loc[trained, "trainable_parameters"].astype(float)
    right.scatter(params, miou[trained], color="black")
    for m in trained:
        right.annotate(m, (params[m], miou[m]), textcoords="offset points", xytext=(6, 4))
    if reference in miou.index:
        right.axhline(miou[reference], linestyle="--", color="grey",
                      label=f"{reference} (zero-shot, 0 trainable): {miou[reference]:.3f}")
        right.legend(fontsize=8, loc="lower right")
    _log_axis(right, params.to_numpy())
    right.set_ylim(0, max(1e-3, float(miou.max())) * 1.2)
    right.set(xlabel="trainable parameters (log scale)", ylabel="test mIoU (mean over classes)")
    right.set_title("test split, thresholds chosen on validation per mode and class\n"
                    "mean over classes against what each mode trains", fontsize=10)
    fig.tight_layout()
    return fig
