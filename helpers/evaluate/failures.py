"""Why images fail: measured failure categories, a root-cause table built from their counts,
and how close refined box masks come to the true seams.

An image *fails* when its IoU is below `FAIL_IOU`. Each failing image gets the first category
whose measured criterion it meets (scores from `helpers.evaluate.stored.stored_scores`):

| category | criterion |
|---|---|
| false alarm on an empty image | no labelled pixel, some predicted |
| missed object | labelled pixels, none predicted or recall < `MISS_RECALL` |
| penalty from the box label | IoU against the true seam >= IoU against the box + `BOX_GAIN` |
| boundary offset | boundary F1 (2 px) >= `BOUNDARY_BF1`: outline right within 2 px |
| over-segmentation: halo | precision < `LOW`, recall >= `LOW`, >= `HALO_SHARE` of FP near |
| over-segmentation: elsewhere | precision < `LOW`, recall >= `LOW`, < `HALO_SHARE` of FP near |
| under-segmentation | recall < `LOW`, precision >= `LOW`: only part of the object found |
| wrong place | precision and recall both < `LOW`: predicted mostly where the object is not |
| unexplained | none of the above (precision and recall both >= `LOW`, IoU still low) |

"FP near" is the share of false-positive pixels within one model patch (16 px of the 352 px
input) of the labelled object (`fp_near_share`): a halo around the object is the coarse patch
grid at work, false positives elsewhere are other structures read as the object.

True seams are known on the demo data only, so the box-label category needs them. The
thresholds are module constants, so a reader can change them and see the counts move.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.core.io import read_mask
from helpers.evaluate.metrics import iou

FAIL_IOU = 0.5  # an image below this IoU counts as a failure
MISS_RECALL = 0.1  # recall below this: the object was missed
BOX_GAIN = 0.1  # IoU gain against the true seam that blames the box label
BOUNDARY_BF1 = 0.5  # boundary F1 (2 px) at or above this: an offset outline
LOW = 0.5  # precision / recall below this is "low"
HALO_SHARE = 0.5  # false positives within one model patch of the object at least this share: a halo

CATEGORIES = (
    "false alarm on an empty image",
    "missed object",
    "penalty from the box label",
    "boundary offset",
    "over-segmentation: halo",
    "over-segmentation: elsewhere",
    "under-segmentation",
    "wrong place",
    "unexplained",
)
UNEXPLAINED = "unexplained"
PASSED = "passed"

# Root cause and what would fix it, per category (the table the notebook shows is built from
# these and the measured counts, so a category that never occurs is not blamed).
CAUSES: dict[str, tuple[str, str]] = {
    "false alarm on an empty image": (
        "crack-like structures (scratches, stains, shadows, seams) read as the object",
        "hard negatives: more such images as negative pairs; a higher threshold for the class",
    ),
    "missed object": (
        "faint or very thin objects: a 1-2 px crack is a fraction of a 16 px patch at 352 px",
        "tile large photos and predict per tile; a lower threshold; a thin-structure loss",
    ),
    "penalty from the box label": (
        "the label is a rectangle, the prediction a thin seam: IoU punishes a correct answer",
        "refine boxes into seam masks (section 4) or annotate seams with polygons",
    ),
    "boundary offset": (
        "the outline is found but misplaced by a pixel or two: low-resolution (352 px) logits "
        "upsampled to the photo",
        "predict at a higher resolution or on tiles; boundary-aware losses",
    ),
    "over-segmentation: halo": (
        "a rim predicted around the object: the decoder predicts on a coarse grid of image "
        "patches, so its masks are about a patch wide, wider than a thin crack or seam and its "
        "label",
        "predict at a higher resolution or on tiles, so a patch covers fewer photo pixels; a "
        "loss that weighs false positives more (a higher bce_weight than the profile's, or a "
        "Tversky loss); where 05 finds the validation threshold far from the one test would "
        "pick, a larger validation split",
    ),
    "over-segmentation: elsewhere": (
        "other structures of the photo (edges, texture, the other class's marks) read as the "
        "object, more than a patch away from it",
        "hard negatives: images with such structures as negative pairs; a loss that weighs false "
        "positives more (a higher bce_weight); removing small components (05) where the "
        "spurious parts are small",
    ),
    "under-segmentation": (
        "only part of the object found: branches and faint segments are lost",
        "a lower threshold; Dice or clDice in the loss; longer training",
    ),
    "wrong place": (
        "the model highlights something else in the image",
        "more varied training images and negatives; check the prompt is understood",
    ),
    "unexplained": ("both precision and recall moderate; no single cause", "inspect the images"),
}


def categorise(row, true_iou: float | None = None) -> str:
    """The failure category of one score row (first match), or "passed" above `FAIL_IOU`.

    `true_iou` is the same prediction's IoU against the true seam mask, where known.
    """
    has_truth = row.truth_fraction > 0
    has_pred = row.pred_fraction > 0
    if not has_truth:
        return "false alarm on an empty image" if has_pred else PASSED
    if row.iou >= FAIL_IOU:
        return PASSED
    if not has_pred or row.recall < MISS_RECALL:
        return "missed object"
    if true_iou is not None and np.isfinite(true_iou) and true_iou - row.iou >= BOX_GAIN:
        return "penalty from the box label"
    if row.bf1 >= BOUNDARY_BF1:
        return "boundary offset"
    low_p, low_r = row.precision < LOW, row.recall < LOW
    if low_p and not low_r:
        # Low precision means false positives, and recall >= LOW a labelled object: measurable.
        if row.fp_near_share >= HALO_SHARE:
            return "over-segmentation: halo"
        return "over-segmentation: elsewhere"
    if low_r and not low_p:
        return "under-segmentation"
    if low_p and low_r:
        return "wrong place"
    return UNEXPLAINED


def taxonomy(scores: pd.DataFrame, true_scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """`scores` with `category` (see `CATEGORIES`, or "passed") and, if given, `true_iou`.

    `true_scores` are the same predictions scored against true masks (`stored_scores(...,
    truth="true_mask_path")`); rows are matched on image and prompt.
    """
    out = scores.copy()
    out["true_iou"] = np.nan
    if true_scores is not None and len(true_scores):
        lookup = true_scores.set_index(["image_id", "prompt"])["iou"]
        keys = list(zip(out["image_id"], out["prompt"], strict=True))
        out["true_iou"] = [float(lookup.get(k, np.nan)) for k in keys]
    out["category"] = [categorise(r, r.true_iou) for r in out.itertuples()]
    return out


def failure_counts(tax: pd.DataFrame) -> pd.DataFrame:
    """Per class: failing images (IoU < `FAIL_IOU`, or a false alarm), count per category and
    the share that the categories explain (all but "unexplained")."""
    failing = tax[tax["category"] != PASSED]
    counts = (
        failing.groupby(["dataset", "category"]).size().unstack(fill_value=0)
        .reindex(columns=list(CATEGORIES), fill_value=0)
    )
    for cls in sorted(set(tax["dataset"]) - set(counts.index)):
        counts.loc[cls] = 0
    counts = counts.sort_index()
    counts.insert(0, "failing", counts.sum(axis=1))
    counts.insert(0, "images", tax.groupby("dataset").size().reindex(counts.index).fillna(0))
    explained = counts["failing"] - counts[UNEXPLAINED]
    counts["explained_share"] = np.where(
        counts["failing"] > 0, explained / counts["failing"].clip(lower=1), 1.0
    )
    return counts


def root_cause_table(counts: pd.DataFrame) -> pd.DataFrame:
    """Categories that occur, most frequent first, with counts per class, root cause and fix."""
    per_class = counts[[c for c in CATEGORIES if c in counts.columns]].T
    per_class = per_class[per_class.sum(axis=1) > 0]
    per_class = per_class.loc[per_class.sum(axis=1).sort_values(ascending=False).index]
    table = per_class.copy()
    table.columns = [f"{c} images" for c in table.columns]
    table["root cause"] = [CAUSES[c][0] for c in table.index]
    table["fix"] = [CAUSES[c][1] for c in table.index]
    table.index.name = "failure"
    return table


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
