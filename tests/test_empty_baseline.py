"""What marking nothing scores, measured by the training loop's validation, and the course's
forward beside the stock one as a student reads them."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from torch import nn

from helpers.course.empty_baseline import empty_labels, empty_prediction_scores, untrained_reading
from helpers.course.listings import excerpt, forward_listings


def _loader(labels_per_class: dict[str, list[bool]]) -> list[dict]:
    """One batch per class: 8x8 labels, a square of foreground where marked."""
    batches = []
    for cls, marked in labels_per_class.items():
        labels = torch.zeros(len(marked), 8, 8)
        for i, on in enumerate(marked):
            if on:
                labels[i, 2:5, 2:5] = 1.0
        batches.append({"labels": labels, "datasets": [cls] * len(marked),
                        "pixel_values": torch.zeros(len(marked), 3, 8, 8)})
    return batches


def test_an_empty_prediction_scores_the_share_of_empty_labels():
    model = nn.Linear(1, 1)  # only says where batches go
    scores = empty_prediction_scores(model, _loader({"cracks": [True, False, True, False],
                                                     "taping": [True, True, True]}), 0.5)
    assert scores == {"cracks": pytest.approx(0.5), "taping": 0.0}


def test_empty_labels_are_counted_per_class_of_the_split():
    manifest = pd.DataFrame({"split": ["val", "val", "val", "test"],
                             "dataset": ["cracks", "cracks", "taping", "cracks"],
                             "mask_fraction": [0.0, 0.1, 0.2, 0.0]})
    assert empty_labels(manifest, "val") == {"cracks": 1, "taping": 0}


@pytest.mark.parametrize(("untrained", "verdict"), [
    (0.09, "no better than marking nothing (within 0.02 of it"),
    (0.3, "above marking nothing by 0.217 (at least 0.1): it already finds"),
    (0.13, "slightly above marking nothing (by 0.047: more than the 0.02 margin, less than 0.1)"),
    (0.0, "below marking nothing by 0.083 (more than the 0.02 margin)"),
])
def test_the_untrained_score_is_read_against_marking_nothing(untrained, verdict):
    (line,) = untrained_reading({"cracks": untrained}, {"cracks": 2 / 24}, {"cracks": 2},
                                {"cracks": 24}, 0.5)
    assert "2 of 24 validation images have an empty label" in line
    assert "marking nothing scores 0.083" in line and verdict in line


def test_the_listings_show_the_stock_no_grad_and_the_courses_grad_switch():
    listing = forward_listings()
    assert listing["stock"].count("with torch.no_grad():") == 2  # vision and text towers
    assert "torch.set_grad_enabled(grad)" in listing["course"]
    assert "get_text_features" in listing["stock"] and "get_text_features" in listing["course"]
    assert "/" not in listing["stock"].splitlines()[0]  # a module name, not a machine path


def test_an_excerpt_whose_lines_are_gone_says_so():
    with pytest.raises(ValueError, match="the code changed"):
        excerpt(forward_listings, "no such line", "return")
