"""Scores computed from stored probability maps (written by `evaluate_model`), no model needed.

Used for what needs more than TP/FP/FN counts: post-processing, thin-structure metrics
(clDice, boundary F1), scoring at the model's 352x352 instead of full resolution, scoring
against the true seam masks of the demo data, and galleries.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from helpers.core.io import read_mask
from helpers.data.prompts import PROMPTS
from helpers.evaluate.metrics import (
    MODEL_SIZE,
    false_positives_near,
    missed_shape,
    resize_truth,
    score_image,
)
from helpers.evaluate.predictions import image_id, probability_path, read_probability
from helpers.inference.postprocess import postprocess

RESOLUTIONS = ("full", "model")


def _image_row(pred: np.ndarray, reference: np.ndarray) -> dict[str, float | str]:
    """One prediction's scores against its reference mask (the columns of `stored_scores`)."""
    s = score_image(pred, reference)
    orientation, width = missed_shape(pred, reference)
    return {
        "iou": s.iou, "dice": s.dice, "cldice": s.cldice, "bf1": s.bf1,
        "precision": s.precision, "recall": s.recall,
        "pred_fraction": float(pred.mean()),
        "truth_fraction": float(reference.mean()),
        "fp_near_share": false_positives_near(pred, reference),
        "missed_orientation": orientation,
        "missed_width": width,
    }


def label_kind(row: Any, truth: str = "mask_path") -> str | None:
    """How a manifest row's reference mask was drawn: "polygon", "box" (every object rendered
    from its box), "polygon and box", "true mask" for another reference column (the demo's true
    seams), or None when the image has no labelled object (or the manifest does not say)."""
    if truth != "mask_path":
        return "true mask"
    objects, boxes = getattr(row, "n_objects", None), getattr(row, "n_box_fallbacks", None)
    if objects is None or boxes is None or pd.isna(objects) or int(objects) == 0:
        return None
    if int(boxes) >= int(objects):
        return "box"
    return "polygon" if int(boxes) == 0 else "polygon and box"


def stored_scores(
    store: str | Path,
    manifest: pd.DataFrame,
    thresholds: Mapping[str, float],
    splits: Sequence[str] = ("test",),
    prompts: Mapping[str, Sequence[str]] = PROMPTS,
    method: str = "none",
    resolution: str = "full",
    truth: str = "mask_path",
) -> pd.DataFrame:
    """Per image and prompt: IoU, Dice, clDice, boundary F1 (2 px), precision, recall,
    `fp_near_share`, the share of false positives within one model patch of the object, the
    orientation and width of what was missed (`missed_shape`), and `label_kind`, how the
    reference was drawn (polygon, box, ...; `label_kind`).

    `thresholds` maps a class to its threshold (chosen on validation). `resolution` "full"
    scores at the image's own size; "model" resizes probabilities to 352x352 (bilinear) and
    the truth with area averaging, as scoring at the model's output size would. `truth` is
    the manifest column holding the reference masks (e.g. "true_mask_path" on the demo data).
    """
    if resolution not in RESOLUTIONS:
        raise ValueError(f"unknown resolution {resolution!r}; choose one of {RESOLUTIONS}")
    rows = []
    subset = manifest[manifest["split"].isin(splits)]
    for r in subset.itertuples():
        if r.dataset not in prompts:  # only the classes asked for
            continue
        ref_path = str(getattr(r, truth) or "")
        if not ref_path or ref_path == "nan":
            continue
        reference = read_mask(ref_path) > 0
        if resolution == "model":
            reference = resize_truth(reference, MODEL_SIZE, method="area")
        for prompt in prompts[r.dataset]:
            probs = read_probability(probability_path(store, r.split, image_id(r), prompt))
            if resolution == "model":
                probs = cv2.resize(probs, MODEL_SIZE[::-1], interpolation=cv2.INTER_LINEAR)
            t = float(thresholds[r.dataset])
            pred = postprocess(probs >= t, method) > 0
            rows.append({
                "image_id": image_id(r), "dataset": r.dataset, "split": r.split,
                "prompt": prompt, "threshold": t, "method": method, "resolution": resolution,
                "truth": truth, "label_kind": label_kind(r, truth),
                **_image_row(pred, reference),
            })
    return pd.DataFrame(rows)
