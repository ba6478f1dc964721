"""Single-pass threshold sweep equals thresholding; thresholds chosen on validation only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from sweep_reference import sweep_table

from helpers.evaluate.metrics import confusion_counts, iou
from helpers.evaluate.sweep import (
    THRESHOLDS,
    apply_thresholds,
    choose_thresholds,
    summary_at,
    sweep_counts,
    threshold_curve,
)


def _random_case(seed: int, dtype) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    probs = rng.random((37, 53)).astype(dtype)
    flat = probs.reshape(-1)
    flat[: len(THRESHOLDS)] = np.asarray(THRESHOLDS, dtype=dtype)  # values exactly on thresholds
    flat[len(THRESHOLDS) : len(THRESHOLDS) + 2] = [0.0, 1.0]
    rng.shuffle(flat)
    truth = rng.random((37, 53)) < 0.3
    return probs, truth


def test_thresholds_grid():
    assert len(THRESHOLDS) == 19 and THRESHOLDS[0] == 0.05 and THRESHOLDS[-1] == 0.95


@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.float64])
def test_single_pass_counts_equal_thresholding(dtype):
    for seed in range(5):
        probs, truth = _random_case(seed, dtype)
        counts = sweep_counts(torch.from_numpy(probs), torch.from_numpy(truth))[0].numpy()
        expected = np.array([confusion_counts(probs >= float(t), truth) for t in THRESHOLDS])
        assert np.array_equal(counts, expected)


def test_sweep_counts_rejects_bad_input():
    with pytest.raises(ValueError, match="shape"):
        sweep_counts(torch.zeros(4, 4), torch.zeros(4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="NaN"):
        sweep_counts(torch.full((4, 4), float("nan")), torch.zeros(4, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="float"):
        sweep_counts(torch.zeros(4, 4, dtype=torch.uint8), torch.zeros(4, 4, dtype=torch.bool))


def _record(image_id, dataset, split, p_truth, p_background, prompt="segment crack"):
    truth = np.zeros((10, 10), bool)
    truth[3:6, 2:8] = True
    probs = np.where(truth, p_truth, p_background).astype(np.float32)
    return {"image_id": image_id, "dataset": dataset, "prompt": prompt, "split": split,
            "probs": probs, "truth": truth}


def test_sweep_table_rows_and_scores():
    rng = np.random.default_rng(0)
    truth = rng.random((16, 16)) < 0.2
    probs = rng.random((16, 16)).astype(np.float32)
    empty = {"image_id": "e", "dataset": "cracks", "prompt": "p", "split": "val",
             "probs": np.zeros((8, 8), np.float32), "truth": np.zeros((8, 8), bool)}
    df = sweep_table([{"image_id": "a", "dataset": "cracks", "prompt": "p", "split": "val",
                       "probs": probs, "truth": truth}, empty])
    assert len(df) == 2 * len(THRESHOLDS)
    assert list(df.columns) == ["image_id", "dataset", "prompt", "split", "threshold", "tp",
                                "fp", "fn", "iou", "dice", "precision", "recall"]
    row = df[(df.image_id == "a") & np.isclose(df.threshold, 0.4)].iloc[0]
    assert row["iou"] == pytest.approx(iou(probs >= 0.4, truth))
    assert (df[df.image_id == "e"]["iou"] == 1.0).all()  # correctly empty at every threshold


def test_choose_thresholds_uses_validation_only():
    records = [
        # validation: only t = 0.30 separates truth (0.32) from background (0.28)
        *(_record(f"v{i}", "cracks", "val", 0.32, 0.28) for i in range(3)),
        # test would prefer t = 0.70
        *(_record(f"t{i}", "cracks", "test", 0.72, 0.68) for i in range(3)),
        *(_record(f"tv{i}", "taping", "val", 0.62, 0.58) for i in range(2)),
        *(_record(f"tt{i}", "taping", "test", 0.22, 0.18) for i in range(2)),
    ]
    df = sweep_table(records)
    chosen = choose_thresholds(df, split="val")
    assert chosen == {"cracks": pytest.approx(0.30), "taping": pytest.approx(0.60)}
    assert choose_thresholds(df, split="test") == {"cracks": pytest.approx(0.70),
                                                   "taping": pytest.approx(0.20)}
    test_rows = apply_thresholds(df, chosen, split="test")
    assert len(test_rows) == 5 and set(test_rows["split"]) == {"test"}
    assert np.allclose(test_rows[test_rows.dataset == "cracks"]["threshold"], 0.30)
    assert (test_rows["iou"] < 1.0).all()  # the honest test score is not the test optimum
    assert list(choose_thresholds(df, by=None)) == ["all"]
    with pytest.raises(ValueError, match="split"):
        choose_thresholds(df, split="train")
    with pytest.raises(KeyError, match="taping"):
        apply_thresholds(df, {"cracks": 0.3}, split="test")


def test_ties_go_to_threshold_closest_to_half():
    # every threshold in [0.20, 0.85] separates 0.85 from 0.15 -> tie; 0.5 is chosen
    df = sweep_table([_record("a", "cracks", "val", 0.85, 0.15)])
    assert choose_thresholds(df) == {"cracks": pytest.approx(0.5)}
    curve = threshold_curve(df)
    assert set(curve.columns) >= {"dataset", "threshold", "iou", "pooled_iou", "images"}
    assert isinstance(df, pd.DataFrame)


def test_curve_and_summary_share_one_set_of_columns():
    """Every score table names its columns alike: images, pairs, the means, pooled_iou."""
    records = [_record("a", "cracks", "val", 0.9, 0.1), _record("b", "cracks", "val", 0.6, 0.4),
               _record("a", "cracks", "val", 0.7, 0.2, prompt="segment fracture")]
    df = sweep_table(records)
    curve = threshold_curve(df).set_index("threshold")
    summary = summary_at(df, {"cracks": 0.5}, "val")
    scores = ["images", "pairs", "iou", "dice", "precision", "recall", "pooled_iou"]
    assert list(summary.columns) == ["split", "dataset", *scores[:2], "threshold", *scores[2:]]
    assert list(curve.columns) == ["dataset", *scores]
    at_half = curve.loc[0.5]
    assert (at_half["images"], at_half["pairs"]) == (2, 3)
    assert summary.loc[0, "iou"] == pytest.approx(at_half["iou"])
    assert summary.loc[0, "pooled_iou"] == pytest.approx(at_half["pooled_iou"])


def test_a_choice_on_the_edge_of_the_grid_is_named():
    from helpers.evaluate.sweep import edge_choices

    said = edge_choices({"none": {"cracks": 0.3, "taping": 0.05}, "lora": {"cracks": 0.95}})
    assert said.startswith("At the edge of the sweep grid (0.05 to 0.95): none taping 0.05, "
                           "lora cracks 0.95.")
    assert edge_choices({"lora": {"cracks": 0.3}}) == (
        "No threshold was chosen at the edge of the sweep grid (0.05 to 0.95).")
