"""Figures shared by the notebooks: overlays, sample grids, probability maps with a colour
bar, count axes with integer ticks, and bootstrap error bars."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import MaxNLocator

CLASS_COLOURS = {"cracks": (255, 60, 60), "taping": (40, 160, 255)}  # RGB, one per class
# The same colours for matplotlib / seaborn (`palette=CLASS_PALETTE`), so a class looks the same
# in every figure of the course.
CLASS_PALETTE = {cls: tuple(v / 255 for v in rgb) for cls, rgb in CLASS_COLOURS.items()}


def overlay(image: np.ndarray, mask: np.ndarray, colour=(255, 60, 60), alpha: float = 0.45):
    """RGB image with the mask's foreground tinted; `mask` may be bool, {0,1} or {0,255}."""
    img = np.asarray(image, dtype=np.float32).copy()
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    fg = np.asarray(mask) > 0
    if fg.shape != img.shape[:2]:
        raise ValueError(f"mask shape {fg.shape} does not match image shape {img.shape[:2]}")
    img[fg] = (1 - alpha) * img[fg] + alpha * np.asarray(colour, dtype=np.float32)
    return img.clip(0, 255).astype(np.uint8)


def draw_annotations(image: np.ndarray, record, colour=(255, 60, 60)) -> np.ndarray:
    """Polygons and boxes of one image record drawn as outlines (what the export says)."""
    import cv2

    out = np.ascontiguousarray(np.asarray(image, dtype=np.uint8).copy())
    thickness = max(1, round(max(out.shape[:2]) / 320))
    for ann in record.annotations:
        if ann.kind == "polygon" and ann.polygons:
            for part in ann.polygons:
                pts = np.asarray(part, dtype=np.float32).reshape(-1, 2).round().astype(np.int32)
                cv2.polylines(out, [pts], True, colour, thickness)
        else:
            x, y, w, h = (round(v) for v in ann.bbox)
            cv2.rectangle(out, (x, y), (x + w, y + h), colour, thickness)
    return out


def image_grid(
    images: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    size: float = 3.0,
    suptitle: str | None = None,
    cmap: str = "gray",
):
    """A grid of images with optional titles; returns the figure."""
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, img in enumerate(images):
        ax = axes.flat[i]
        if np.asarray(img).ndim == 2:
            ax.imshow(img, cmap=cmap, vmin=0)
        else:
            ax.imshow(img)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


def save_figure(fig, path: str | Path) -> Path:
    """Save a figure (PNG, 110 dpi) atomically and return its path."""
    from helpers.core.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format=path.suffix.lstrip(".") or "png")
    return path


def evenly_spaced(items: Sequence, n: int) -> list:
    """`n` items spread evenly over a sequence (deterministic sample for figures)."""
    if n <= 0 or not items:
        return []
    idx = np.unique(np.linspace(0, len(items) - 1, min(n, len(items))).round().astype(int))
    return [items[i] for i in idx]


def denormalise(pixel_values, image_processor) -> np.ndarray:
    """Undo the processor's normalisation: (3,H,W) tensor -> (H,W,3) uint8 for display."""
    arr = np.asarray(
        pixel_values.detach().cpu() if hasattr(pixel_values, "detach") else pixel_values
    )
    mean = np.asarray(image_processor.image_mean, dtype=np.float32)[:, None, None]
    std = np.asarray(image_processor.image_std, dtype=np.float32)[:, None, None]
    img = (arr * std + mean) * 255.0
    return img.transpose(1, 2, 0).clip(0, 255).astype(np.uint8)


def probability_grid(
    maps: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    ncols: int = 4,
    size: float = 3.0,
    suptitle: str | None = None,
    cmap: str = "viridis",
    threshold: float | None = None,
):
    """Probability maps on one fixed 0-1 scale with a shared colour bar; returns the figure.

    Every panel uses vmin=0, vmax=1, so equal colours mean equal probabilities across panels;
    with `threshold`, the colour bar marks it (the line between foreground and background).
    """
    n = len(maps)
    if n == 0:
        raise ValueError("probability_grid needs at least one map")
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols + 0.8, size * nrows), squeeze=False,
        layout="constrained",
    )
    for ax in axes.flat:
        ax.axis("off")
    shown = None
    for i, probs in enumerate(maps):
        ax = axes.flat[i]
        shown = ax.imshow(np.asarray(probs, dtype=np.float32), cmap=cmap, vmin=0.0, vmax=1.0)
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    bar = fig.colorbar(shown, ax=axes, shrink=0.8, label="probability")
    if threshold is not None:
        bar.ax.axhline(threshold, color="white", linewidth=1.5)
        bar.ax.set_yticks(sorted({0.0, 0.5, 1.0, round(float(threshold), 2)}))
    if suptitle:
        fig.suptitle(suptitle)
    return fig


def integer_ticks(ax, axis: str = "y"):
    """Whole-number ticks on a count axis ("x", "y" or "both"): no "2.5 images"."""
    if axis not in ("x", "y", "both"):
        raise ValueError(f"axis must be 'x', 'y' or 'both', got {axis!r}")
    if axis in ("x", "both"):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if axis in ("y", "both"):
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return ax


def bootstrap_bars(boot: pd.DataFrame, ax=None, value: str = "iou", label: str = "test mIoU"):
    """Bars of `value` per mode (groups) and class (colours) with the bootstrap interval as
    error bars, y axis from 0; `boot` is `helpers.evaluate.bootstrap.photo_bootstrap`'s table
    (columns mode, dataset, `value`, `value`_low, `value`_high, level). Returns the axes."""
    needed = {"mode", "dataset", value, f"{value}_low", f"{value}_high"}
    missing = sorted(needed - set(boot.columns))
    if missing:
        raise ValueError(f"bootstrap table lacks columns {missing}")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * boot["mode"].nunique() + 2, 3.5))
    modes = list(dict.fromkeys(boot["mode"]))
    classes = sorted(boot["dataset"].unique())
    width = 0.8 / len(classes)
    x = np.arange(len(modes))
    for k, cls in enumerate(classes):
        part = boot[boot["dataset"] == cls].set_index("mode").reindex(modes)
        mid = part[value].to_numpy(dtype=float)
        err = np.vstack([mid - part[f"{value}_low"], part[f"{value}_high"] - mid])
        ax.bar(x + (k - (len(classes) - 1) / 2) * width, mid, width, yerr=err, capsize=3,
               label=cls, color=CLASS_PALETTE.get(cls))
    ax.set_xticks(x, modes)
    top = float(np.nanmax(boot[f"{value}_high"]))
    ax.set_ylim(0, min(1.0, top * 1.15) if top > 0 else 1.0)  # scores lie in [0, 1]
    level = f"{round(100 * float(boot['level'].iloc[0]))} % " if "level" in boot else ""
    ax.set_ylabel(f"{label} ({level}interval over photos)" if level else label)
    ax.legend(fontsize=8)
    return ax


def split_sizes_figure(sizes: pd.DataFrame, small: int | None = None, note: str = ""):
    """Images and photos per split, one panel per class, every bar labelled with its count.

    `sizes` is `helpers.data.split.split_sizes`' table (rows: splits; columns ("images" |
    "photos", class)). Photos (near-duplicate groups) are the independent cases a score rests
    on; with `small`, a dashed line marks the photo count below which a split is too small to
    trust. `note` is added to the figure's title (e.g. the seed). Returns the figure.
    """
    classes = list(sizes["images"].columns)
    fig, axes = plt.subplots(1, len(classes), figsize=(4.6 * len(classes), 3.6), squeeze=False)
    x = np.arange(len(sizes.index))
    for ax, cls in zip(axes.flat, classes, strict=True):
        colour = CLASS_PALETTE.get(cls)
        for k, (kind, style) in enumerate(
            (("images", {"color": colour}),
             ("photos", {"color": "white", "edgecolor": colour, "hatch": "//"}))
        ):
            bars = ax.bar(x + (k - 0.5) * 0.4, sizes[(kind, cls)], 0.4, label=kind, **style)
            ax.bar_label(bars, fontsize=8)
        if small is not None:  # drawn over the photo bars only: it is a count of photos
            photo_x = x + 0.5 * 0.4
            ax.hlines([small] * len(x), photo_x - 0.3, photo_x + 0.3, color="black", linestyle="--",
                      linewidth=1, label=f"{small} photos: fewer is too small to trust")
        ax.set_xticks(x, list(sizes.index))
        ax.set_ylim(0, 1.3 * max(sizes[("images", cls)].max(), small or 0))  # room for the legend
        ax.set_xlabel("split")
        ax.set_ylabel("count")
        ax.set_title(f"{cls}: images and the photos behind them")
        integer_ticks(ax)
        ax.legend(fontsize=7)
    fig.suptitle("Split sizes by split and class" + (f" ({note})" if note else ""))
    fig.tight_layout()
    return fig


PATH_COLUMNS = ("image_path", "mask_path", "true_mask_path")


def with_shown_paths(frame: pd.DataFrame, columns: Sequence[str] = PATH_COLUMNS) -> pd.DataFrame:
    """A copy of a table whose path columns name files as outputs do (`shown`: relative to the
    repository), so a displayed manifest names no machine path; empty cells stay empty."""
    from helpers.core.paths import shown

    out = frame.copy()
    for column in columns:
        if column in out.columns:
            out[column] = [shown(p) if isinstance(p, str) and p else p for p in out[column]]
    return out
