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
    failure_counts,
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
        (row(iou=0.2, precision=0.3, recall=0.3), None, "wrong place"),
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
