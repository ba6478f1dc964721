"""Sentences of notebooks 05 and 06 written from their numbers: each states its criterion and
says what the numbers show, whichever way they fall."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.evaluate.bootstrap import describe_gains, photo_bootstrap
from helpers.evaluate.curves import curve_readings, largest_rise
from helpers.evaluate.stability import describe_peeking
from helpers.evaluate.sweep import THRESHOLDS, counts_table


def _sweep(images: dict[str, tuple[int, list[int]]]) -> pd.DataFrame:
    """A test sweep table of crack images: name -> (labelled pixels, predicted pixels at each
    threshold, all on the label when the image is labelled)."""
    keys, counts = [], []
    for name, (label, predicted) in images.items():
        keys.append((name, "cracks", "segment crack", "test"))
        tp = [min(p, label) for p in predicted]
        counts.append([[t, p - t, label - t] for t, p in zip(tp, predicted, strict=True)])
    return counts_table(keys, np.array(counts), THRESHOLDS)


def test_largest_rise_reads_left_to_right():
    t = np.array([0.1, 0.2, 0.3, 0.4])
    assert largest_rise(t, np.array([0.5, 0.4, 0.7, 0.6])) == (0.2, 0.4, 0.3, 0.7)
    low, v0, high, v1 = largest_rise(t, np.array([0.9, 0.8, 0.7, 0.1]))
    assert v1 - v0 == 0


def test_recall_rising_is_explained_by_empty_labels_and_falling_is_said_plainly():
    n = len(THRESHOLDS)
    shrinking = [100 - 5 * i for i in range(n)]  # a labelled image: recall falls
    empties = {f"empty{i}": (0, [50 if j < 3 + i else 0 for j in range(n)]) for i in range(3)}
    table = _sweep({"cracked": (100, shrinking), **empties})
    recall = [s for s in curve_readings(table, splits=("test",)) if "recall" in s][0]
    assert "recall rises from" in recall and "by 0.005 or more counts as a rise" in recall
    assert "on the 1 images with something labelled it only falls" in recall
    assert "from the 3 images whose label is empty" in recall

    only_labelled = _sweep({"cracked": (100, shrinking)})
    (iou, recall) = curve_readings(only_labelled, splits=("test",))
    assert "recall falls (or stays level)" in recall and "1.000 at 0.05" in recall
    assert "mean IoU peaks at 0.05 (1.000)" in iou


def _boot(diffs: dict[str, list[float]]) -> pd.DataFrame:
    """A paired bootstrap of two models on 3 photos: `diffs[mode]` are per-photo IoUs."""
    scores = {
        mode: pd.DataFrame({"image_id": [f"i{k}" for k in range(3)], "dataset": "cracks",
                            "iou": ious})
        for mode, ious in diffs.items()
    }
    return photo_bootstrap(scores, {f"i{k}": f"p{k}" for k in range(3)}, reference="none",
                           n_resamples=300)


def test_gains_are_judged_by_their_interval_with_photos_and_seed_stated():
    up = _boot({"none": [0.1, 0.2, 0.3], "lora": [0.5, 0.6, 0.7]})
    (sentence,) = describe_gains(up, "none", seeds="each mode was trained once (seed 42)")
    assert "lora on cracks: test IoU +0.400 against none" in sentence
    assert "over 3 photos: above none on these photos" in sentence
    assert "lies wholly above or below 0" in sentence
    assert "covers the choice of photos only; each mode was trained once (seed 42)" in sentence
    assert "only 3 photos: the interval itself is rough" in sentence
    mixed = _boot({"none": [0.1, 0.5, 0.3], "lora": [0.3, 0.2, 0.4]})
    (sentence,) = describe_gains(mixed, "none")
    assert "not distinguishable from none" in sentence and "seed" not in sentence
    with pytest.raises(ValueError, match="reference"):
        describe_gains(up.drop(columns=["diff"]), "none")


def test_peeking_is_called_flat_only_below_its_cut_off():
    sentences = describe_peeking(
        chosen={"cracks": 0.3, "taping": 0.15}, peeked={"cracks": 0.3, "taping": 0.4},
        val_at_chosen={"cracks": 0.5, "taping": 0.269}, val_at_peeked={"cracks": 0.5,
                                                                       "taping": 0.268},
        inflation={"cracks": 0.0, "taping": 0.1117}, val_photos={"cracks": 9, "taping": 7},
    )
    assert sentences[0].startswith("cracks: validation and test pick the same threshold, 0.30")
    assert "0.001 lower over 7 validation photos" in sentences[1]
    assert "flat there (less than 0.01 apart)" in sentences[1] and "+0.112" in sentences[1]
    (steep,) = describe_peeking({"taping": 0.15}, {"taping": 0.4}, {"taping": 0.30},
                                {"taping": 0.20}, {"taping": 0.05}, {"taping": 7})
    assert "prefers its own pick by at least 0.01" in steep
