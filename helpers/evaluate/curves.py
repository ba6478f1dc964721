"""What the threshold curves of a sweep table show, in sentences read off the curves.

The curves are means over image-prompt pairs of per-image scores (`threshold_curve`), and
per-image scores follow the empty-case rule of `helpers.evaluate.metrics`: on an image whose
label is empty, precision, recall and IoU are 1 when nothing is predicted and 0 otherwise.
So recall, which can only fall with the threshold on an image with something labelled
(tp / |label|, and tp shrinks), rises on empty-label images as their predictions empty out,
and the mean of both can rise. These sentences say what each curve does on this run and,
where recall rises, show that the rise comes from the empty-label images.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.evaluate.sweep import threshold_curve

RISE = 0.005  # a mean that climbs by less than this between thresholds counts as flat


def largest_rise(thresholds: np.ndarray, values: np.ndarray) -> tuple[float, float, float, float]:
    """(t_from, v_from, t_to, v_to) of the largest increase from a lower to a higher
    threshold (the rise of a curve read left to right); v_to - v_from is 0 for a curve that
    never rises."""
    best = (float(thresholds[0]), float(values[0]), float(thresholds[0]), float(values[0]))
    low = 0
    for j in range(1, len(values)):
        if values[j] - values[low] > best[3] - best[1]:
            best = (float(thresholds[low]), float(values[low]),
                    float(thresholds[j]), float(values[j]))
        if values[j] < values[low]:
            low = j
    return best


def _recall_sentence(rows: pd.DataFrame, curve: pd.DataFrame, where: str) -> str:
    t, r = curve["threshold"].to_numpy(), curve["recall"].to_numpy()
    t0, r0, t1, r1 = largest_rise(t, r)
    if r1 - r0 < RISE:
        return (f"{where}: recall falls (or stays level) as the threshold rises, from "
                f"{r[0]:.3f} at {t[0]:.2f} to {r[-1]:.3f} at {t[-1]:.2f}.")
    labelled = rows[(rows["tp"] + rows["fn"]) > 0]
    empty_images = rows.loc[(rows["tp"] + rows["fn"]) == 0, "image_id"].nunique()
    out = (f"{where}: recall rises from {r0:.3f} at {t0:.2f} to {r1:.3f} at {t1:.2f} "
           f"(by {RISE} or more counts as a rise)")
    if labelled.empty:
        return out + "."
    mine = threshold_curve(labelled, split=str(rows["split"].iloc[0]), by=[])["recall"]
    rises = float(np.max(np.diff(mine.to_numpy()), initial=0.0))
    on_labelled = (
        f"on the {labelled['image_id'].nunique()} images with something labelled it only "
        f"falls ({mine.iloc[0]:.3f} to {mine.iloc[-1]:.3f})"
        if rises <= 1e-12
        else f"it rises on the labelled images too (by up to {rises:.3f})"
    )
    return (f"{out}; {on_labelled}, so the rise comes from the {empty_images} images whose "
            "label is empty, where recall is 1 once nothing is predicted and 0 before.")


def curve_readings(table: pd.DataFrame, splits=("val", "test")) -> list[str]:
    """Per class and split: where mean IoU and precision peak, and what recall does (with the
    empty-label explanation when it rises). `table` is a per-image sweep table."""
    names = {"val": "validation", "test": "test"}
    out = []
    for cls in sorted(table["dataset"].unique()):
        for split in splits:
            rows = table[(table["dataset"] == cls) & (table["split"] == split)]
            if rows.empty:
                continue
            curve = threshold_curve(rows, split=split, by=[])
            where = f"{cls}, {names.get(split, split)}"
            iou = curve.loc[curve["iou"].idxmax()]
            prec = curve.loc[curve["precision"].idxmax()]
            out.append(
                f"{where}: mean IoU peaks at {iou['threshold']:.2f} ({iou['iou']:.3f}), "
                f"precision at {prec['threshold']:.2f} ({prec['precision']:.3f}), ending at "
                f"{curve['precision'].iloc[-1]:.3f} at {curve['threshold'].iloc[-1]:.2f}."
            )
            out.append(_recall_sentence(rows, curve, where))
    return out
