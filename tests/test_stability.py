"""Threshold stability on hand-built sweep tables whose answer is known."""

import numpy as np
import pandas as pd
import pytest

from helpers.evaluate.stability import describe_stability, threshold_stability

GRID = [0.3, 0.4, 0.5, 0.6, 0.7]


def _table(val_peaks: list[float]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Val photo i (two images each) scores 1.0 at val_peaks[i] and 0.5 elsewhere; every test
    image scores IoU = threshold, so the test IoU of a choice is the choice itself."""
    rows, photo_of = [], {}
    for i, peak in enumerate(val_peaks):
        for copy in range(2):
            image = f"v{i}_{copy}"
            photo_of[image] = f"photo{i}"
            rows += [{"image_id": image, "dataset": "cracks", "prompt": "segment crack",
                      "split": "val", "threshold": t, "iou": 1.0 if t == peak else 0.5}
                     for t in GRID]
    for j in range(3):
        rows += [{"image_id": f"t{j}", "dataset": "cracks", "prompt": "segment crack",
                  "split": "test", "threshold": t, "iou": t} for t in GRID]
    return pd.DataFrame(rows), photo_of


def test_a_sharp_optimum_gives_zero_spread():
    table, photo_of = _table([0.6] * 6)
    summary, draws = threshold_stability(table, photo_of, n_resamples=50)
    row = summary.iloc[0]
    assert row["chosen"] == 0.6 and row["test_iou"] == pytest.approx(0.6)
    assert (draws["threshold"] == 0.6).all()
    assert row["steps"] == 0
    assert row["threshold_std"] == pytest.approx(0, abs=1e-12)
    assert row["test_iou_std"] == pytest.approx(0, abs=1e-12)
    assert row["recommended"] == 0.6 and row["val_photos"] == 6
    assert "every resample of its 6 validation photos chose 0.60" in describe_stability(summary)


def test_a_flat_curve_gives_a_wide_spread_and_the_median_rule():
    # each photo prefers another threshold: which photos are drawn decides the choice
    table, photo_of = _table([0.3, 0.4, 0.5, 0.6, 0.7, 0.3, 0.4, 0.6, 0.7])
    summary, draws = threshold_stability(table, photo_of, n_resamples=150, seed=1)
    row = summary.iloc[0]
    assert draws["threshold"].nunique() >= 4
    assert row["threshold_high"] - row["threshold_low"] >= 0.3 and row["steps"] >= 3
    # the test IoU of each draw is that draw's threshold (the fixture's test curve)
    assert np.allclose(draws["test_iou"], draws["threshold"])
    assert row["test_iou_high"] > row["test_iou_low"]
    assert row["median_threshold"] in GRID
    assert row["median_threshold"] == pytest.approx(row["threshold_median"], abs=0.05)
    assert row["median_test_iou"] == pytest.approx(row["median_threshold"])
    assert row["recommended"] == row["median_threshold"]
    assert "median of the bootstrap choices" in describe_stability(summary)


def test_resampling_is_deterministic_and_needs_every_photo():
    table, photo_of = _table([0.3, 0.5, 0.7, 0.5])
    a = threshold_stability(table, photo_of, n_resamples=40, seed=3)[1]
    b = threshold_stability(table, photo_of, n_resamples=40, seed=3)[1]
    pd.testing.assert_frame_equal(a, b)
    del photo_of["v0_0"]
    with pytest.raises(KeyError, match="v0_0"):
        threshold_stability(table, photo_of, n_resamples=5)


def test_a_notebook_says_whether_its_thresholds_are_the_ones_predict_applies(tmp_path):
    from helpers.evaluate.stability import against_saved
    from helpers.inference.segmenter import PredictSettings

    assert "No thresholds are saved beside this model yet" in against_saved({"cracks": 0.3},
                                                                           tmp_path)
    PredictSettings(threshold={"cracks": 0.3, "taping": 0.25}).write(tmp_path)
    assert against_saved({"cracks": 0.3, "taping": 0.25}, tmp_path).startswith(
        "These are also the thresholds predict applies (saved by notebook 05's rule: cracks "
        "0.30, taping 0.25)")
    differ = against_saved({"cracks": 0.3, "taping": 0.15}, tmp_path)
    assert differ.startswith("predict applies notebook 05's rule instead: taping 0.25 (here "
                             "0.15).")
