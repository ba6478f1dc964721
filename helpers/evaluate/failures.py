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
| coarse mask on the object | precision and recall both < `LOW`, >= `HALO_SHARE` of the mask on |
|  | or within a patch of the object (`share_on_object`) |
| wrong place | precision and recall both < `LOW`, < `HALO_SHARE` of the mask on or near the |
|  | object: most of it lies elsewhere |
| unexplained | none of the above (precision and recall both >= `LOW`, IoU still low) |

"FP near" is the share of false-positive pixels within one model patch (16 px of the 352 px
input) of the labelled object (`fp_near_share`): a halo around the object is the coarse patch
grid at work; false positives farther away lie on plain wall or on other structures (only the
gallery tells which). A mask "lies
on the object" when most of its pixels are on the object or within a patch of it
(`share_on_object` = precision + (1 - precision) x FP near): such a mask is coarse, never in
the wrong place, however its false positives split.

Each category's cause is written from its own rows (`cause_sentence`): where its false
positives lie, the orientation and width of what it missed (`missed_shape`), and, where the
rows carry `label_kind` ("box" or "polygon"), which labels it failed on.

True seams are known on the demo data only, so the box-label category needs them. The
thresholds are module constants, so a reader can change them and see the counts move.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.io import read_mask
from helpers.core.numbers import signed
from helpers.data.split import SMALL_SPLIT
from helpers.evaluate.metrics import MODEL_SIZE, iou

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
    "coarse mask on the object",
    "wrong place",
    "unexplained",
)
UNEXPLAINED = "unexplained"
PASSED = "passed"

# The measured criterion of each category, in words (the module docstring's table).
CRITERIA: dict[str, str] = {
    "false alarm on an empty image": "no labelled pixel, some predicted",
    "missed object": f"labelled pixels, none predicted or recall < {MISS_RECALL}",
    "penalty from the box label": f"IoU against the true seam >= IoU against the box + {BOX_GAIN}",
    "boundary offset": f"boundary F1 (2 px) >= {BOUNDARY_BF1}",
    "over-segmentation: halo": f"precision < {LOW}, recall >= {LOW}, >= {HALO_SHARE:.0%} of FP "
    "within a patch of the object",
    "over-segmentation: elsewhere": f"precision < {LOW}, recall >= {LOW}, < {HALO_SHARE:.0%} of "
    "FP within a patch of the object",
    "under-segmentation": f"recall < {LOW}, precision >= {LOW}",
    "coarse mask on the object": f"precision and recall < {LOW}, >= {HALO_SHARE:.0%} of the mask "
    "on the object or within a patch of it",
    "wrong place": f"precision and recall < {LOW}, < {HALO_SHARE:.0%} of the mask on the object or "
    "within a patch of it",
    "unexplained": f"precision and recall >= {LOW}, IoU < {FAIL_IOU}",
}

# What would help, per category (the table shows it only for categories that occur).
FIXES: dict[str, str] = {
    "false alarm on an empty image": "hard negatives: more such images as negative pairs; a "
    "higher threshold for the class",
    "missed object": "tile large photos and predict per tile; a lower threshold; a "
    "thin-structure loss",
    "penalty from the box label": "refine boxes into seam masks (section 4) or annotate seams "
    "with polygons",
    "boundary offset": "predict at a higher resolution or on tiles; boundary-aware losses",
    "over-segmentation: halo": "predict at a higher resolution or on tiles; a loss that weighs "
    "false positives more (a Tversky loss)",
    "over-segmentation: elsewhere": "negative pairs of walls without the object, so that plain "
    "wall and other structures count as background; removing small components (05) only if the "
    "spurious parts are small (05's post-processing table measures whether it helps)",
    "under-segmentation": "a lower threshold; more weight on the Dice term, or a clDice term, in "
    "the loss; longer training",
    "coarse mask on the object": "predict at a higher resolution or on tiles; a thin-structure "
    "loss",
    "wrong place": "more varied training images and negatives; check the prompt is understood",
    "unexplained": "inspect the images",
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
        # a mask that lies on the object (mostly on it or within a patch) is coarse, not misplaced
        if share_on_object(row) >= HALO_SHARE:
            return "coarse mask on the object"
        return "wrong place"
    return UNEXPLAINED


def share_on_object(row) -> float:
    """Share of the predicted pixels on the labelled object or within one model patch of it:
    the true positives (precision) plus the false positives near it (`fp_near_share`).

    NaN `fp_near_share` (no false positive, or no object) counts as none near.
    """
    near = row.fp_near_share
    near = float(near) if near is not None and np.isfinite(near) else 0.0
    return float(row.precision + (1 - row.precision) * near)


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
    """Per class: images, those with an empty label (`empty`), failing images (IoU <
    `FAIL_IOU`, or a false alarm), count per category and the share that the categories explain
    (all but "unexplained")."""
    failing = tax[tax["category"] != PASSED]
    counts = (
        failing.groupby(["dataset", "category"]).size().unstack(fill_value=0)
        .reindex(columns=list(CATEGORIES), fill_value=0)
    )
    for cls in sorted(set(tax["dataset"]) - set(counts.index)):
        counts.loc[cls] = 0
    counts = counts.sort_index()
    counts.insert(0, "failing", counts.sum(axis=1))
    empty = (tax["truth_fraction"] == 0).groupby(tax["dataset"]).sum()
    counts.insert(0, "empty", empty.reindex(counts.index).fillna(0).astype(int))
    counts.insert(0, "images", tax.groupby("dataset").size().reindex(counts.index).fillna(0))
    explained = counts["failing"] - counts[UNEXPLAINED]
    counts["explained_share"] = np.where(
        counts["failing"] > 0, explained / counts["failing"].clip(lower=1), 1.0
    )
    return counts


def _share(mask: pd.Series) -> str:
    return f"{mask.mean():.0%}"


def cause_sentence(rows: pd.DataFrame) -> str:
    """What one category's failing rows measure, in a sentence: how many, where their false
    positives lie, the orientation and width of what they missed, and their label types."""
    parts = [f"{len(rows)} image{'s' if len(rows) != 1 else ''}"]
    near = rows["fp_near_share"].dropna() if "fp_near_share" in rows else pd.Series(dtype=float)
    if len(near):
        close = int((near >= HALO_SHARE).sum())
        parts.append(
            f"most false positives lie within a patch of the object in {close} of {len(near)} "
            f"and farther away in {len(near) - close} (median share within a patch "
            f"{near.median():.0%})"
        )
    elif (rows["truth_fraction"] == 0).all():
        cover = rows["pred_fraction"].median()
        parts.append(f"no labelled object; the mask covers a median {cover:.1%} of the image")
    if "missed_orientation" in rows:
        missed = rows[rows["missed_orientation"].fillna("").ne("")]
        if len(missed):
            counts = missed["missed_orientation"].value_counts()
            shapes = ", ".join(f"{n} {name}" for name, n in counts.items())
            found = f"{missed['recall'].median():.0%}" if "recall" in missed else "part"
            parts.append(
                f"the missed pixels (the model found a median {found} of the object) lie along: "
                f"{shapes} (median width {missed['missed_width'].median():.1f} px)"
            )
    if "label_kind" in rows and rows["label_kind"].notna().any():
        kinds = rows["label_kind"].value_counts()
        parts.append("labels: " + ", ".join(f"{n} {k}" for k, n in kinds.items()))
    return "; ".join(parts)


TILE_FIX = "tile"  # fixes that help only photos larger than the model's input...
HIGHER_RESOLUTION = "predict at a higher resolution"  # ...as does this one


def fix_for(
    category: str, photo_side: int | None = None, negative_rate: float | None = None
) -> str:
    """`FIXES[category]`, fitted to the run: without a higher resolution or tiles where the
    photos' longer side (`photo_side`, px) is no larger than the model's input (neither adds
    detail to such a photo), and naming the run's `negative_rate` where a fix asks for
    negatives."""
    text = FIXES[category]
    parts = text.split("; ")
    if photo_side is not None and photo_side <= MODEL_SIZE[0] and TILE_FIX in text:
        parts = [p for p in parts if not p.startswith(("tile ", HIGHER_RESOLUTION))]
        parts.append(
            f"not a higher resolution or tiles: these photos ({photo_side} px on the longer "
            f"side) are no larger than the model's {MODEL_SIZE[0]} px input"
        )
    if negative_rate and "negative" in text:
        parts.append(f"this run already draws {negative_rate:g} negative pair(s) per image and "
                     "epoch, so the lever is more of them or harder ones")
    return "; ".join(parts)


def root_cause_table(
    counts: pd.DataFrame, tax: pd.DataFrame | None = None, photo_side: int | None = None,
    negative_rate: float | None = None,
) -> pd.DataFrame:
    """Categories that occur, most frequent first, with counts per class, the criterion, the
    measured cause (`cause_sentence` of the category's rows of `tax`, when given) and a fix
    (`fix_for`, given the test photos' median longer side `photo_side` and the run's
    `negative_rate` when known)."""
    per_class = counts[[c for c in CATEGORIES if c in counts.columns]].T
    per_class = per_class[per_class.sum(axis=1) > 0]
    per_class = per_class.loc[per_class.sum(axis=1).sort_values(ascending=False).index]
    table = per_class.copy()
    table.columns = [f"{c} images" for c in table.columns]
    table["criterion"] = [CRITERIA[c] for c in table.index]
    if tax is not None:
        table["measured"] = [cause_sentence(tax[tax["category"] == c]) for c in table.index]
    table["fix"] = [fix_for(c, photo_side, negative_rate) for c in table.index]
    table.index.name = "failure"
    return table


# What the leading category says about the model (the conclusion names it).
MEANING: dict[str, str] = {
    "false alarm on an empty image": "the model marks objects on walls that have none",
    "missed object": "the model does not respond to the object at all",
    "penalty from the box label": "the rectangle labels, not only the model, hold the score down",
    "boundary offset": "the model finds the object and at least half of its outline lies within 2 "
    "px of the label's (on a thin crack a mask a few pixels too wide can do that too)",
    "over-segmentation: halo": "the model finds the object but draws it wider than it is",
    "over-segmentation: elsewhere": "the model finds the object but also marks areas more than "
    "a patch away from it (the gallery shows whether plain wall or other structures)",
    "under-segmentation": "the model finds only part of the object",
    "coarse mask on the object": "the model finds roughly where the object is, but its mask is too "
    "coarse to overlap it well",
    "wrong place": "most of what the model marks lies away from the object",
    "unexplained": "no single measured cause stands out",
}


def _passing(images: int, failing: int, empty: int, false_alarms: int) -> str:
    """"7 pass: 4 of 20 labelled images reach IoU >= 0.5, 3 of 3 empty walls stay empty"."""
    passing = images - failing
    if not empty:
        return f"{passing} pass"
    quiet = empty - false_alarms
    return (
        f"{passing} pass: {passing - quiet} of {images - empty} labelled images reach IoU >= "
        f"{FAIL_IOU}, {quiet} of {empty} empty walls stay empty under the class's prompt"
    )


def class_verdict(
    cls: str, images: int, failing: int, empty: int = 0, false_alarms: int = 0
) -> str:
    """What one class's failure count means, by the criterion IoU >= `FAIL_IOU` (a sentence);
    with `empty` (images with an empty label) and their `false_alarms`, what the passes are."""
    passing = _passing(images, failing, empty, false_alarms)
    if images == 0:
        return f"{cls} has no test image to judge"
    if failing == images:
        return (
            f"every {cls} test image fails ({failing} of {images}): on this data the model does "
            f"not segment {cls} to the IoU >= {FAIL_IOU} criterion, so its mean score describes "
            "how it fails, not how well it works"
        )
    if 2 * failing > images:
        return (
            f"most {cls} test images fail ({failing} of {images}; {passing}): by the IoU >= "
            f"{FAIL_IOU} criterion the model is not yet usable for {cls}"
        )
    if failing:
        return (
            f"{failing} of {images} {cls} test images fail ({passing}): failures are the "
            "minority, so the categories describe exceptions"
        )
    return f"no {cls} test image fails ({images} images)"


def class_counts(row: Mapping[str, Any]) -> dict[str, int]:
    """`class_verdict`'s counts from one class's row of `failure_counts` (or its record)."""
    return {
        "images": int(row["images"]), "failing": int(row["failing"]),
        "empty": int(row.get("empty", 0)),
        "false_alarms": int(row.get("false alarm on an empty image", 0)),
    }


def leading_categories(row: Mapping[str, Any]) -> list[str]:
    """The categories with the most failing images in one class's row of `failure_counts`
    (or its record), several when tied, in the order of `CATEGORIES`; none where nothing
    fails."""
    counts = {c: int(row[c]) for c in CATEGORIES if c in row}
    top = max(counts.values(), default=0)
    return [c for c, n in counts.items() if top and n == top]


def failure_conclusion(counts: pd.DataFrame) -> str:
    """A conclusion from `failure_counts`: how many fail, what each class's count means, and
    per class the leading category with its criterion and what it says about the model."""
    failing = int(counts["failing"].sum())
    images = int(counts["images"].sum())
    if failing == 0:
        return f"No image of {images} fails (IoU >= {FAIL_IOU} and no false alarm)."
    explained = failing - int(counts[UNEXPLAINED].sum()) if UNEXPLAINED in counts else failing
    verdicts = "; ".join(class_verdict(str(cls), **class_counts(counts.loc[cls]))
                         for cls in counts.index)
    leads = []
    for cls in counts.index:
        top = leading_categories(counts.loc[cls])
        if not top:
            continue
        n, of = int(counts.loc[cls, top[0]]), int(counts.loc[cls, "failing"])
        if len(top) == 1:
            c = top[0]
            leads.append(f"for {cls} {c!r} ({n} of {of} failing images): {MEANING[c]} "
                         f"(criterion: {CRITERIA[c]})")
        else:
            meaning = "; ".join(f"{c!r}, {MEANING[c]} (criterion: {CRITERIA[c]})" for c in top)
            leads.append(f"for {cls} {len(top)} categories tie ({n} each of {of} failing "
                         f"images): {meaning}")
    return (
        f"{failing} of {images} images fail (IoU < {FAIL_IOU}, or a false alarm on an empty "
        f"image); {explained} of the {failing} meet the criterion of a named category (the "
        "rest are 'unexplained'; a category names what was measured, not a proven cause). "
        "What the counts mean: "
        f"{verdicts}. The most common category, per class: " + "; ".join(leads) + "."
    )


LEAST_BAD = f"least bad (IoU < {FAIL_IOU}: fails)"


def best_and_worst(scores: pd.DataFrame, photo_of: dict[str, str], n: int = 3) -> pd.DataFrame:
    """Per class, the `n` best and `n` worst labelled images (IoU), at most one image per photo
    (`group_id`) and no photo in both lists; column `kind` is "best", "worst", or
    `LEAST_BAD` for a best image that still fails (IoU < `FAIL_IOU`).

    The worst photos are taken first (each by its worst image), so a photo whose copies score
    both well and badly shows its failure; the best come from the remaining photos."""
    labelled = scores[scores["truth_fraction"] > 0].copy()
    missing = sorted(set(labelled["image_id"]) - set(photo_of))
    if missing:
        raise KeyError(f"image {missing[0]!r} has no photo (group id)")
    labelled["group_id"] = labelled["image_id"].map(photo_of)
    out = []
    for _, part in labelled.groupby("dataset", sort=True):
        worst = part.sort_values(["iou", "image_id"]).drop_duplicates("group_id").head(n)
        rest = part[~part["group_id"].isin(worst["group_id"])]
        best = rest.sort_values(["iou", "image_id"], ascending=[False, True])
        best = best.drop_duplicates("group_id").head(n)
        best = best.assign(kind=np.where(best["iou"] >= FAIL_IOU, "best", LEAST_BAD))
        out += [best, worst.assign(kind="worst")]
    return pd.concat(out, ignore_index=True) if out else labelled.assign(kind=[])


def best_image_sentences(scores: pd.DataFrame) -> list[str]:
    """Per class, how the best labelled image scores against the failure cut-off `FAIL_IOU`."""
    out = []
    for cls, part in scores[scores["truth_fraction"] > 0].groupby("dataset", sort=True):
        best, passing = float(part["iou"].max()), int((part["iou"] >= FAIL_IOU).sum())
        if passing == 0:
            out.append(
                f"{cls}: even the best of the {len(part)} labelled test images scores IoU "
                f"{best:.3f}, below the failure cut-off {FAIL_IOU}; no {cls} image passes, so "
                "its 'best' row shows the least bad, not a success"
            )
        else:
            out.append(
                f"{cls}: {passing} of {len(part)} labelled test images reach IoU >= {FAIL_IOU}; "
                f"the best scores {best:.3f}"
            )
    return out


def hidden_passes(picks: pd.DataFrame, scores: pd.DataFrame, photo_of: dict[str, str]) -> list[str]:
    """Per class, the passing images (IoU >= `FAIL_IOU`) whose photo `best_and_worst` shows
    among the worst: a gallery row shows one image per photo, so they are not in it."""
    out = []
    labelled = scores[scores["truth_fraction"] > 0]
    for cls, part in labelled.groupby("dataset", sort=True):
        passing = part[part["iou"] >= FAIL_IOU]
        worst = picks[(picks["dataset"] == cls) & (picks["kind"] == "worst")]
        shown = dict(zip(worst["image_id"].map(photo_of), worst["iou"], strict=True))
        hidden = passing[passing["image_id"].map(photo_of).isin(shown)]
        if hidden.empty:
            continue
        photos = sorted(set(hidden["image_id"].map(photo_of)))
        out.append(
            f"{cls}: {len(hidden)} of the {len(passing)} passing images belong to "
            + ", ".join(f"photo {p} (shown among the worst by its worst copy, IoU "
                        f"{shown[p]:.3f})" for p in photos)
            + ": a photo whose copies both pass and fail is shown by its failure"
        )
    return out


def refinement_gain(
    rectangles: pd.DataFrame, refined: pd.DataFrame, photo_of: dict[str, str], seed: int = 0
) -> pd.DataFrame:
    """Taping test IoU against the true seams of the model trained on rectangles and of the one
    trained on refined masks, each with its interval over photos, and the refined model's gain
    (`diff`) with its paired interval (`photo_bootstrap`, reference "rectangles")."""
    from helpers.evaluate.bootstrap import photo_bootstrap

    scores = {"rectangles": rectangles, "refined": refined}
    return photo_bootstrap(scores, photo_of, reference="rectangles", seed=seed)


def refinement_verdict(
    gain: pd.DataFrame, training_seed: int, method: str, synthetic: bool,
    refined_iou: float | None = None,
) -> list[str]:
    """Sentences on the refinement's gain (`refinement_gain`): the gain with its interval, the
    verdict by the stated criterion (a fix only when the whole interval lies above 0), the one
    training seed, and, on synthetic seams, whose assumption they were drawn to (with
    `refined_iou`, the refined masks' mean IoU against the true seams, `refinement_quality`)."""
    before = gain[gain["mode"] == "rectangles"].iloc[0]
    after = gain[gain["mode"] == "refined"].iloc[0]
    level, photos = float(after["level"]), int(after["photos"])
    out = [
        f"Trained on {method}-refined masks instead of rectangles, the model's taping test IoU "
        f"against the true seams goes from {before['iou']:.3f} to {after['iou']:.3f} "
        f"({signed(after['diff'])}; {level:.0%} interval over {photos} photos, paired bootstrap: "
        f"{signed(after['diff_low'])} to {signed(after['diff_high'])})."
    ]
    if after["diff_low"] > 0:
        out.append(
            "By the criterion that this interval lies wholly above 0, the refinement counts as "
            "a fix on these test photos."
        )
    elif after["diff_high"] < 0:
        out.append("The interval lies wholly below 0: the refinement made the model worse here.")
    else:
        out.append(
            f"The interval includes 0, so by the criterion that it lie wholly above 0 the "
            f"refinement is not shown to be a fix: {photos} photos cannot tell its gain from none."
        )
    if photos < SMALL_SPLIT:
        out.append(f"Only {photos} photos: the interval itself is rough (a few photos allow only "
                   "a few distinct resamples).")
    out.append(
        f"Each model was trained once (seed {training_seed}): the interval covers which test "
        "photos were drawn, not another training seed, which can move the gain as well."
    )
    if synthetic:
        out.append(
            "The demo's seams are synthetic: each is a band of different tone with plain wall on "
            f"both sides, the very assumption the {method!r} refiner is built on, so this gain "
            "is measured where the refiner's picture of a seam holds by construction"
            + (f" (even so, its masks reach a mean IoU of {refined_iou:.3f} against the true "
               "seams, not 1)" if refined_iou is not None else "")
            + "; on real photos it is untested until refined masks are checked against seams "
            "traced by hand."
        )
    return out


def gallery_picks(
    tax: pd.DataFrame, photo_of: dict[str, str], n: int = 8, seed: int = 0
) -> pd.DataFrame:
    """Failing rows for a gallery: at most one image per photo (`group_id`), spread over the
    categories that occur (round robin, rarest category first, so that each category gets a slot
    while photos and slots last; within a category the worst IoU first), false alarms on empty
    images included. Deterministic for a seed."""
    failing = tax[tax["category"] != PASSED].copy()
    if failing.empty:
        return failing.assign(group_id=pd.Series(dtype=object))
    missing = sorted(set(failing["image_id"]) - set(photo_of))
    if missing:
        raise KeyError(f"image {missing[0]!r} has no photo (group id)")
    failing["group_id"] = failing["image_id"].map(photo_of)
    rng = np.random.default_rng(seed)
    failing["_order"] = rng.permutation(len(failing))
    failing = failing.sort_values(["iou", "_order"])
    queues = {
        cat: list(group.index)
        for cat, group in sorted(
            failing.groupby("category"), key=lambda kv: (len(kv[1]), CATEGORIES.index(kv[0]))
        )
    }
    picked: list = []
    shown: set[str] = set()
    while len(picked) < n and any(queues.values()):
        for queue in queues.values():
            while queue and failing.at[queue[0], "group_id"] in shown:
                queue.pop(0)  # that photo is in the gallery already
            if queue and len(picked) < n:
                picked.append(queue.pop(0))
                shown.add(failing.at[picked[-1], "group_id"])
    return failing.loc[picked].drop(columns="_order").reset_index(drop=True)


def gallery_gaps(picks: pd.DataFrame, tax: pd.DataFrame) -> list[str]:
    """Per class, the failure categories of `tax` that `gallery_picks` left out of `picks`
    (their images come only from photos the gallery already shows, or the slots ran out)."""
    out = []
    failing = tax[tax["category"] != PASSED]
    for cls, part in failing.groupby("dataset", sort=True):
        shown = set(picks.loc[picks["dataset"] == cls, "category"])
        counts = part["category"].value_counts()
        left = [c for c in CATEGORIES if c in counts.index and c not in shown]
        if left:
            out.append(f"{cls}: not in the gallery: " + ", ".join(
                f"'{c}' ({counts[c]} image{'s' if counts[c] != 1 else ''})" for c in left)
                + " (one image per photo: its photos are shown under another category, or the "
                "slots ran out)")
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
