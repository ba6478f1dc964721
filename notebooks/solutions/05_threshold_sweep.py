"""Solutions to the exercises of notebook 05 (threshold sweep).

Each function takes the `course` the notebook opened (`open_course(...)`) and returns what its
answer reads; the model and its evaluation are the notebook's own, loaded from the cache.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.course.toolkit import (
    choose_thresholds,
    evaluate_model,
    image_id,
    summary_at,
    threshold_curve,
    threshold_stability,
    trained_model,
)


def _table(course, mode: str = "lora") -> pd.DataFrame:
    """The notebook's sweep table (val and test, every prompt of each class), from the cache."""
    cfg = course.cfg
    run = trained_model(cfg, mode, course.manifest, course.out_name)
    table, _ = evaluate_model(run.segmenter(), course.manifest,
                              course.out_dir / "predictions" / mode, key=run.evaluation_key,
                              batch_size=cfg.eval_batch_size or cfg.batch_size, progress=False)
    return table


def exercise_1(course) -> pd.DataFrame:
    """Thresholds chosen by mean IoU, mean Dice and pooled IoU, and the test IoU each gives."""
    table = _table(course)
    rows = []
    for metric in ("iou", "dice", "pooled_iou"):
        chosen = choose_thresholds(table, split="val", by=["dataset"], metric=metric)
        test = summary_at(table, chosen, "test").set_index("dataset")
        for cls, t in chosen.items():
            rows.append({"chosen_by": metric, "dataset": cls, "threshold": t,
                         "test_iou": test.loc[cls, "iou"],
                         "test_pooled_iou": test.loc[cls, "pooled_iou"]})
    return pd.DataFrame(rows)


def exercise_2(course) -> pd.DataFrame:
    """Test recall per threshold over labelled and over empty-label images, per class: the
    labelled curve never rises; the empty-label one (0 or 1 per image) only rises."""
    table = _table(course)
    labelled_ids = set(table.loc[(table.tp + table.fn) > 0, "image_id"])
    parts = {"labelled": table[table.image_id.isin(labelled_ids)],
             "empty label": table[~table.image_id.isin(labelled_ids)]}
    curves = []
    for name, rows in parts.items():
        if rows[rows.split == "test"].empty:
            continue
        curve = threshold_curve(rows, split="test", by=["dataset"])
        curve = curve[["dataset", "threshold", "recall"]]
        curves.append(curve.assign(images=name))
    out = pd.concat(curves).pivot_table(index="threshold", columns=["images", "dataset"],
                                        values="recall")
    labelled = out["labelled"].to_numpy()
    assert (np.diff(labelled, axis=0) <= 1e-12).all(), "recall on labelled images never rises"
    return out.round(4)


def exercise_3(course) -> pd.DataFrame:
    """Test IoU per class with one threshold per class and with one per prompt (both chosen on
    validation)."""
    table = _table(course)
    per_class = choose_thresholds(table, split="val", by=["dataset"])
    per_prompt = choose_thresholds(table, split="val", by=["dataset", "prompt"])
    peeked = choose_thresholds(table, split="test", by=["dataset"])  # section 2's peek
    one = summary_at(table, per_class, "test").set_index("dataset").iou
    own = summary_at(table, per_prompt, "test", by=["dataset", "prompt"], group_by=["dataset"])
    result = pd.DataFrame({"one threshold per class": one,
                           "one per prompt": own.set_index("dataset").iou,
                           "gain": own.set_index("dataset").iou - one,
                           "inflation of tuning on test": (
                               summary_at(table, peeked, "test").set_index("dataset").iou - one),
                           }).round(4)
    for cls, r in result.iterrows():
        print(f"{cls}: a threshold per prompt changes test IoU by {r['gain']:+.4f}, against "
              f"{r['inflation of tuning on test']:+.4f} for tuning one threshold on test.")
    return result


def exercise_4(course) -> pd.DataFrame:
    """The stability check on all validation photos and on a random half of each class's."""
    table = _table(course)
    manifest = course.manifest
    photo_of = {image_id(r): r.group_id for r in manifest.itertuples()}
    rng = np.random.default_rng(course.cfg.seed)
    val = table[table.split == "val"]
    kept = set()
    for _, rows in val.groupby("dataset"):
        photos = sorted({photo_of[i] for i in rows.image_id})
        kept |= set(rng.choice(photos, size=max(1, len(photos) // 2), replace=False))
    half = table[(table.split == "test") | table.image_id.map(photo_of).isin(kept)]
    columns = ["dataset", "val_photos", "chosen", "threshold_low", "threshold_high", "steps",
               "test_iou_low", "test_iou_high"]
    full = threshold_stability(table, photo_of, seed=course.cfg.seed)[0][columns]
    halved = threshold_stability(half, photo_of, seed=course.cfg.seed)[0][columns]
    return pd.concat({"all validation photos": full, "half of them": halved}).round(4)


if __name__ == "__main__":
    from helpers.course.session import run_exercises

    run_exercises(globals())
