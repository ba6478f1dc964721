"""Error taxonomy of per-image predictions, and how close refined box masks come to seams."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.evaluate.metrics import iou
from helpers.io import read_mask

CATEGORIES = (
    "correct",
    "empty prediction",
    "missed thin crack",
    "false positive on a clean image",
    "thin taping prediction penalised by the rectangle",
    "other",
)


def categorise(row) -> str:
    """One category per image score row (columns of `stored_scores`); first match wins."""
    has_truth = row.truth_fraction > 0
    has_pred = row.pred_fraction > 0
    if not has_truth:
        return "false positive on a clean image" if has_pred else "correct"
    if not has_pred:
        return "empty prediction"
    if row.dataset == "cracks" and row.recall < 0.5:
        return "missed thin crack"
    if row.dataset == "taping" and row.precision >= 0.7 and row.recall < 0.5:
        return "thin taping prediction penalised by the rectangle"
    if row.iou < 0.5:
        return "other"
    return "correct"


def taxonomy(scores: pd.DataFrame) -> pd.DataFrame:
    """`scores` with a `category` column (see `CATEGORIES`)."""
    out = scores.copy()
    out["category"] = [categorise(r) for r in scores.itertuples()]
    return out


def refinement_quality(manifest: pd.DataFrame, refined: pd.DataFrame) -> pd.DataFrame:
    """Per taping image with a true seam mask: IoU of the rectangle and of the refined mask
    against the true seam (the two manifests list the same images)."""
    rows = []
    refined_by_image = refined.set_index("image_path")["mask_path"]
    taping = manifest[
        (manifest["dataset"] == "taping") & manifest["true_mask_path"].fillna("").ne("")
    ]
    for r in taping.itertuples():
        truth = read_mask(r.true_mask_path) > 0
        rows.append(
            {
                "rectangle_iou": iou(read_mask(r.mask_path) > 0, truth),
                "refined_iou": iou(read_mask(refined_by_image[r.image_path]) > 0, truth),
            }
        )
    return pd.DataFrame(rows, columns=["rectangle_iou", "refined_iou"]).astype(np.float64)
