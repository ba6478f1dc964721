"""The failure taxonomy: each category from its measured criterion, counts and causes."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from helpers.evaluate.failures import (
    CATEGORIES,
    PASSED,
    UNEXPLAINED,
    categorise,
    failure_conclusion,
    failure_counts,
    gallery_picks,
    root_cause_table,
    taxonomy,
)


def row(
    iou=0.3, precision=0.5, recall=0.5, bf1=0.2, pred=0.1, truth=0.1, near=0.9, dataset="cracks"
):
    return SimpleNamespace(
        iou=iou, precision=precision, recall=recall, bf1=bf1, pred_fraction=pred,
        truth_fraction=truth, fp_near_share=near, dataset=dataset,
    )


@pytest.mark.parametrize(
    ("scores", "true_iou", "expected"),
    [
        (row(iou=0.0, truth=0.0), None, "false alarm on an empty image"),
        (row(iou=1.0, truth=0.0, pred=0.0), None, PASSED),
        (row(iou=0.8), None, PASSED),
        (row(iou=0.0, pred=0.0, recall=0.0), None, "missed object"),
        (row(iou=0.05, recall=0.05, precision=0.9), None, "missed object"),
        (row(iou=0.3, precision=0.3, recall=0.9, dataset="taping"), 0.5,
         "penalty from the box label"),
        (row(iou=0.3, precision=0.3, recall=0.9, dataset="taping"), 0.35,
         "over-segmentation: halo"),
        (row(iou=0.3, precision=0.4, recall=0.6, bf1=0.7), None, "boundary offset"),
        (row(iou=0.3, precision=0.3, recall=0.9), None, "over-segmentation: halo"),
        (row(iou=0.3, precision=0.3, recall=0.9, near=0.5), None, "over-segmentation: halo"),
        (row(iou=0.3, precision=0.3, recall=0.9, near=0.3), None, "over-segmentation: elsewhere"),
        (row(iou=0.3, precision=0.9, recall=0.3), None, "under-segmentation"),
        (row(iou=0.2, precision=0.3, recall=0.3, near=0.2), None, "wrong place"),
        # a mask whose false positives hug the object lies on it: not the wrong place
        (row(iou=0.2, precision=0.3, recall=0.3, near=0.9), None, "coarse mask on the object"),
        (row(iou=0.45, precision=0.6, recall=0.6), None, UNEXPLAINED),
    ],
)
def test_each_category_follows_its_measured_criterion(scores, true_iou, expected):
    assert categorise(scores, true_iou) == expected


def frame(rows):
    return pd.DataFrame(
        [{**vars(r), "image_id": f"img{i}", "prompt": "p"} for i, r in enumerate(rows)]
    )


def test_counts_explained_share_and_root_causes_come_from_the_rows():
    scores = frame(
        [
            row(iou=0.3, precision=0.3, recall=0.9),  # over, halo
            row(iou=0.3, precision=0.3, recall=0.9),  # over, halo
            row(iou=0.45, precision=0.6, recall=0.6),  # unexplained
            row(iou=0.9, precision=0.9, recall=0.9),  # passed
            row(iou=0.3, precision=0.3, recall=0.9, dataset="taping"),  # box penalty
        ]
    )
    true = pd.DataFrame({"image_id": ["img4"], "prompt": ["p"], "iou": [0.6]})
    tax = taxonomy(scores, true)
    assert tax["category"].tolist()[-1] == "penalty from the box label"
    assert np.isnan(tax["true_iou"].iloc[0]) and tax["true_iou"].iloc[-1] == 0.6
    counts = failure_counts(tax)
    assert counts.loc["cracks", "images"] == 4 and counts.loc["cracks", "failing"] == 3
    assert counts.loc["cracks", "over-segmentation: halo"] == 2
    assert counts.loc["cracks", "over-segmentation: elsewhere"] == 0
    assert counts.loc["cracks", "explained_share"] == pytest.approx(2 / 3)
    assert counts.loc["taping", "explained_share"] == 1.0
    causes = root_cause_table(counts)
    assert causes.index[0] == "over-segmentation: halo"  # most frequent first
    assert set(causes.index) == {  # a category that never occurs is not blamed
        "over-segmentation: halo", UNEXPLAINED, "penalty from the box label"
    }
    assert causes.loc["over-segmentation: halo", "cracks images"] == 2
    assert set(CATEGORIES) >= set(causes.index)
    assert causes.loc["over-segmentation: halo", "criterion"].startswith("precision < 0.5")


def shaped(i, category_row, orientation="", width=np.nan, kind="polygon", dataset="cracks"):
    return {**vars(category_row), "dataset": dataset, "image_id": f"img{i}", "prompt": "p",
            "missed_orientation": orientation, "missed_width": width, "label_kind": kind}


def test_each_category_s_cause_is_written_from_its_own_rows():
    tax = taxonomy(pd.DataFrame([
        # halo: false positives near the object, two vertical seams of ~3 px missed in part
        shaped(0, row(precision=0.3, recall=0.9, near=0.8), "vertical", 3.0),
        shaped(1, row(precision=0.3, recall=0.9, near=0.7), "vertical", 5.0),
        # under-segmentation on a box label: a horizontal seam missed
        shaped(2, row(precision=0.9, recall=0.3, near=np.nan), "horizontal", 12.0, "box",
               "taping"),
        # false alarm on an empty wall covering 4 % of it
        shaped(3, row(iou=0.0, truth=0.0, pred=0.04, near=np.nan)),
    ]))
    table = root_cause_table(failure_counts(tax), tax)
    halo = table.loc["over-segmentation: halo", "measured"]
    assert halo.startswith("2 images") and "within a patch of the object in 100%" in halo
    assert "2 vertical (median width 4.0 px)" in halo and "labels: 2 polygon" in halo
    under = table.loc["under-segmentation", "measured"]
    assert "1 horizontal (median width 12.0 px)" in under and "labels: 1 box" in under
    alarm = table.loc["false alarm on an empty image", "measured"]
    assert "no labelled object" in alarm and "4.0% of the image" in alarm
    assert "median 4.0%" not in halo  # each sentence comes from its own rows only


def test_the_conclusion_names_the_leading_category_and_its_criterion():
    tax = taxonomy(frame([row(precision=0.3, recall=0.9)] * 3
                         + [row(precision=0.9, recall=0.3), row(iou=0.9, precision=0.9)]))
    text = failure_conclusion(failure_counts(tax))
    assert text.startswith("4 of 5 images fail")
    assert "'over-segmentation: halo' with 3 (75%; cracks 3)" in text
    assert "criterion: precision < 0.5, recall >= 0.5" in text
    assert "explain 4 of the 4" in text
    passed = taxonomy(frame([row(iou=0.9, precision=0.9)]))
    assert failure_conclusion(failure_counts(passed)).startswith("No image of 1 fails")


def test_gallery_takes_one_image_per_photo_and_keeps_false_alarms():
    tax = taxonomy(frame([
        row(iou=0.3, precision=0.3, recall=0.9),  # img0, photo A
        row(iou=0.1, precision=0.3, recall=0.9),  # img1, photo A (worse: the one shown)
        row(iou=0.2, precision=0.3, recall=0.9),  # img2, photo B
        row(iou=0.0, truth=0.0),  # img3, photo C: false alarm on an empty wall
        row(iou=0.9, precision=0.9),  # img4, passed
    ]))
    photo_of = {"img0": "A", "img1": "A", "img2": "B", "img3": "C", "img4": "D"}
    picks = gallery_picks(tax, photo_of, n=8)
    assert sorted(picks["image_id"]) == ["img1", "img2", "img3"]
    assert picks["group_id"].is_unique
    assert "false alarm on an empty image" in set(picks["category"])
    assert len(gallery_picks(tax, photo_of, n=2)) == 2
    assert set(gallery_picks(tax, photo_of, n=2)["category"]) == {
        "over-segmentation: halo", "false alarm on an empty image"}
    with pytest.raises(KeyError, match="img3"):
        gallery_picks(tax, {k: v for k, v in photo_of.items() if k != "img3"})
