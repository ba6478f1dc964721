"""The bootstrap over photos: copies of a photo count once, and paired differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.evaluate.bootstrap import photo_bootstrap


def _scores(ious: dict[str, float], dataset: str = "cracks") -> pd.DataFrame:
    return pd.DataFrame(
        {"image_id": list(ious), "dataset": dataset, "iou": list(ious.values())}
    )


def test_copies_of_one_photo_do_not_narrow_the_interval():
    # nine copies of a photo the model gets right, one photo it gets wrong: two photos in all
    ious = {f"a{i}": 1.0 for i in range(9)} | {"b0": 0.0}
    photo_of = {k: k[0] for k in ious}
    row = photo_bootstrap({"m": _scores(ious)}, photo_of, seed=1).iloc[0]
    assert row["photos"] == 2 and row["pairs"] == 10
    assert row["iou"] == pytest.approx(0.9)  # the mean over pairs, as summary_at reports it
    assert row["iou_low"] == 0.0 and row["iou_high"] == 1.0  # either photo may be all there is
    as_images = photo_bootstrap({"m": _scores(ious)}, {k: k for k in ious}, seed=1).iloc[0]
    assert as_images["iou_low"] > 0.5  # resampling copies would claim far more certainty


def test_the_difference_between_models_is_paired_by_photo():
    rng = np.random.default_rng(0)
    base = {f"p{i}": float(v) for i, v in enumerate(rng.uniform(0.1, 0.8, 12))}
    better = {k: v + 0.1 for k, v in base.items()}
    photo_of = {k: k for k in base}
    table = photo_bootstrap(
        {"lora": _scores(base), "full": _scores(better)}, photo_of, reference="lora", seed=3
    ).set_index("mode")
    assert table.loc["full", "diff"] == pytest.approx(0.1)
    assert table.loc["full", "diff_low"] == pytest.approx(0.1)  # same photos in every round
    assert table.loc["full", "diff_high"] == pytest.approx(0.1)
    assert table.loc["full", "iou_high"] - table.loc["full", "iou_low"] > 0.1  # alone: wide
    assert table.loc["lora", "diff"] == 0.0


def test_it_is_deterministic_and_refuses_models_scored_on_other_photos():
    a = _scores({"x": 0.2, "y": 0.6, "z": 0.9})
    photo_of = {"x": "x", "y": "y", "z": "z", "w": "w"}
    first = photo_bootstrap({"m": a}, photo_of, seed=5)
    pd.testing.assert_frame_equal(first, photo_bootstrap({"m": a}, photo_of, seed=5))
    other = _scores({"x": 0.2, "y": 0.6, "w": 0.9})
    with pytest.raises(ValueError, match="other cracks photos"):
        photo_bootstrap({"m": a, "n": other}, photo_of)
    with pytest.raises(KeyError, match="no photo"):
        photo_bootstrap({"m": a}, {"x": "x"})
