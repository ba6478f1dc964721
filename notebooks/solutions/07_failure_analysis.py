"""Solutions to the exercises of notebook 07 (failure analysis).

Each `exercise_N(course)` computes its answer with the course's helpers, prints a sentence
written from the numbers, and returns the table it read. They reuse the run's trained model
and stored predictions (trained and evaluated on first use). Run them all on the demo profile:

    python notebooks/solutions/07_failure_analysis.py
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from helpers.core.io import read_mask
from helpers.course.runs import trained_model
from helpers.data.images import load_rgb
from helpers.data.prompts import DEFAULT_PROMPT
from helpers.data.refine import METHODS, refine_boxes
from helpers.data.roboflow import read_export
from helpers.evaluate import failures
from helpers.evaluate.metrics import iou
from helpers.evaluate.predictions import evaluate_model, image_id
from helpers.evaluate.stored import stored_scores
from helpers.evaluate.sweep import choose_thresholds

MODE = "lora"
LOWER_CUT = 0.3  # exercise 1
HIGHER_HALO = 0.8  # exercise 2
N_REFINED = 12  # exercise 3: taping images refined with each method
_SCORES: dict[str, pd.DataFrame] = {}


def _scores(course) -> pd.DataFrame:
    """Test scores of the run's model, default prompt per class, at the thresholds chosen on
    validation (as in the notebook; computed once per run)."""
    if course.out_name not in _SCORES:
        cfg, manifest = course.cfg, course.manifest
        run = trained_model(cfg, MODE, manifest, course.out_name)
        store = course.out_dir / "predictions" / MODE
        table, _ = evaluate_model(run.segmenter(), manifest, store, key=run.evaluation_key,
                                  batch_size=cfg.eval_batch_size or cfg.batch_size)
        chosen = choose_thresholds(table, split="val", by=["dataset"])
        prompts = {d: [p] for d, p in DEFAULT_PROMPT.items()}
        _SCORES[course.out_name] = stored_scores(store, manifest, chosen, ["test"], prompts)
    return _SCORES[course.out_name]


@contextmanager
def _setting(name: str, value: float):
    """Set a constant of helpers.evaluate.failures for the duration of a block."""
    old = getattr(failures, name)
    setattr(failures, name, value)
    try:
        yield
    finally:
        setattr(failures, name, old)


def exercise_1(course) -> pd.DataFrame:
    """Failing images per class at the course's cut-off and at `LOWER_CUT`."""
    scores = _scores(course)
    counts = {}
    for cut in (failures.FAIL_IOU, LOWER_CUT):
        with _setting("FAIL_IOU", cut):
            counts[f"failing at IoU < {cut:g}"] = failures.failure_counts(
                failures.taxonomy(scores))["failing"]
    table = pd.DataFrame(counts).assign(images=scores.groupby("dataset").size())
    low = table[f"failing at IoU < {LOWER_CUT:g}"]
    everywhere = [cls for cls in table.index if low[cls] == table.loc[cls, "images"]]
    print(f"At IoU < {LOWER_CUT:g}: " + ", ".join(
        f"{cls} {low[cls]} of {table.loc[cls, 'images']} fail" for cls in table.index)
        + (f"; {', '.join(everywhere)} still fails on every image." if everywhere else "."))
    return table


def exercise_2(course) -> pd.DataFrame:
    """Over-segmented images as halo or elsewhere at `HALO_SHARE` and at `HIGHER_HALO`."""
    scores = _scores(course)
    over = ["over-segmentation: halo", "over-segmentation: elsewhere"]
    rows = {}
    for share in (failures.HALO_SHARE, HIGHER_HALO):
        with _setting("HALO_SHARE", share):
            rows[f"HALO_SHARE {share:g}"] = failures.failure_counts(
                failures.taxonomy(scores))[over].sum()
    table = pd.DataFrame(rows).T
    tax = failures.taxonomy(scores)
    near = tax[tax["category"].isin(over)]["fp_near_share"]
    between = int(near.between(failures.HALO_SHARE, HIGHER_HALO, inclusive="left").sum())
    moved = int(table.iloc[1, 0] - table.iloc[0, 0])
    print(f"Raising HALO_SHARE to {HIGHER_HALO:g} moves {-moved} image(s) from halo to elsewhere; "
          f"{between} of the {len(near)} over-segmented images have a share of false positives "
          f"near the object between {failures.HALO_SHARE:g} and {HIGHER_HALO:g}.")
    return table


def exercise_3(course) -> pd.DataFrame:
    """IoU with the true seam of the rectangles and of each refinement method."""
    manifest = course.prepared_manifest
    taping = manifest[(manifest.dataset == "taping") & manifest.true_mask_path.fillna("").ne("")]
    if taping.empty:
        print("No true seam masks in this data: the refinements cannot be scored.")
        return pd.DataFrame()
    records = {Path(r.image_path).name: r for r in read_export(course.sources.taping).records}
    rows = []
    for r in taping.head(N_REFINED).itertuples():
        image, truth = load_rgb(r.image_path), read_mask(r.true_mask_path) > 0
        boxes = [a.bbox for a in records[Path(r.image_path).name].annotations]
        row = {"image": image_id(r), "rectangle": iou(read_mask(r.mask_path) > 0, truth)}
        row.update({m: iou(refine_boxes(image, boxes, m) > 0, truth) for m in METHODS})
        rows.append(row)
    table = pd.DataFrame(rows).set_index("image")
    means = table.mean()
    print(f"Over {len(table)} taping images, mean IoU with the true seam: "
          + ", ".join(f"{k} {v:.3f}" for k, v in means.items())
          + f"; {means.drop('rectangle').idxmax()} comes closest on this (synthetic) data.")
    return table


def exercise_4(course) -> pd.DataFrame:
    """Test photos with at least one passing image, per class, beside the image counts."""
    scores = _scores(course).query("truth_fraction > 0")
    manifest = course.manifest
    photo_of = dict(zip((image_id(r) for r in manifest.itertuples()), manifest.group_id,
                        strict=True))
    passing = scores.assign(photo=scores.image_id.map(photo_of),
                            passes=scores.iou >= failures.FAIL_IOU)
    photos = passing.groupby(["dataset", "photo"])["passes"].any().groupby("dataset")
    table = passing.groupby("dataset").agg(
        images=("image_id", "nunique"), passing_images=("passes", "sum"),
    ).assign(photos=photos.size(), passing_photos=photos.sum())
    for cls, row in table.iterrows():
        print(f"{cls}: {row.passing_photos} of {row.photos} labelled test photos have a passing "
              f"image (IoU >= {failures.FAIL_IOU:g}); by images, {row.passing_images} of "
              f"{row.images}.")
    return table


if __name__ == "__main__":
    from helpers.course.session import run_exercises

    run_exercises(globals())
