"""Held-out phrasings: scored on test at the class thresholds chosen from training prompts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.core.io import write_mask_png
from helpers.data.prompts import PROMPTS
from helpers.demo.tiny_model import build_tiny_model
from helpers.evaluate.held_out import HELD_OUT_PROMPTS, check_held_out, held_out_scores
from helpers.evaluate.predictions import evaluate_model
from helpers.evaluate.sweep import choose_thresholds
from helpers.inference.segmenter import Segmenter

TRAINED = {"cracks": ["segment crack"], "taping": ["segment taping area"]}
HELD = {"cracks": ["hairline fracture"], "taping": ["joint compound"]}


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(*build_tiny_model())


@pytest.fixture()
def manifest(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        dataset = "cracks" if i < 4 else "taping"
        image = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (40, 48, 3), dtype=np.uint8)).save(image)
        mask = write_mask_png(tmp_path / f"mask{i}.png", rng.random((40, 48)) < 0.3)
        split = "val" if i % 2 else "test"
        rows.append({"image_path": str(image), "mask_path": str(mask), "true_mask_path": "",
                     "dataset": dataset, "split": split})
    return pd.DataFrame(rows)


def test_default_held_out_prompts_are_not_training_prompts():
    check_held_out(HELD_OUT_PROMPTS, PROMPTS)
    with pytest.raises(ValueError, match="are training prompts"):
        check_held_out({"cracks": ["Segment  crack"]}, PROMPTS)
    with pytest.raises(ValueError, match="not one of"):
        check_held_out({"mould": ["mould"]}, PROMPTS)


def test_held_out_prompts_are_scored_at_the_training_prompts_thresholds(
    tmp_path, segmenter, manifest
):
    table = held_out_scores(segmenter, manifest, tmp_path / "store", "tiny", HELD, TRAINED,
                            batch_size=4, progress=False)
    assert list(table["prompt"]) == [
        "segment crack", "hairline fracture", "segment taping area", "joint compound"
    ]
    assert list(table["held_out"]) == [False, True, False, True]
    assert (table["images"] == 2).all()  # the two test images of each class

    sweep, _ = evaluate_model(segmenter, manifest, tmp_path / "store", "tiny", ("val", "test"),
                              {c: [*TRAINED[c], *HELD[c]] for c in TRAINED}, progress=False)
    trained_rows = sweep["prompt"].isin(["segment crack", "segment taping area"])
    chosen = choose_thresholds(sweep[trained_rows])
    for row in table.itertuples():
        assert row.threshold == pytest.approx(chosen[row.dataset])
        rows = sweep[(sweep["split"] == "test") & (sweep["prompt"] == row.prompt)
                     & np.isclose(sweep["threshold"], chosen[row.dataset])]
        assert row.iou == pytest.approx(rows["iou"].mean())
