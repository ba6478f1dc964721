"""Held-out phrasings: scored on test at the class thresholds chosen from training prompts,
and read with their criterion."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.data.prompts import PROMPTS
from helpers.evaluate.held_out import (
    HELD_OUT_PROMPTS,
    check_held_out,
    describe_held_out,
    held_out_gaps,
    held_out_scores,
)

TRAINED = {"cracks": ["segment crack"], "taping": ["segment taping area"]}
HELD = {"cracks": ["hairline fracture"], "taping": ["joint compound"]}
GRID = (0.3, 0.5, 0.7)


def _rows(image, dataset, prompt, split, best, iou=1.0):
    """Sweep rows of one image and prompt: `iou` at threshold `best`, 0.2 elsewhere."""
    return [{"image_id": image, "dataset": dataset, "prompt": prompt, "split": split,
             "threshold": t, "iou": iou if t == best else 0.2} for t in GRID]


def _table() -> pd.DataFrame:
    rows = []
    for cls, best in (("cracks", 0.3), ("taping", 0.7)):
        (trained,), (held,) = TRAINED[cls], HELD[cls]
        rows += _rows(f"{cls}-val", cls, trained, "val", best)
        # a held-out prompt on val would pick another threshold: it must not be used
        rows += _rows(f"{cls}-val", cls, held, "val", 0.5)
        rows += _rows(f"{cls}-test", cls, trained, "test", best, iou=0.8)
        rows += _rows(f"{cls}-test", cls, held, "test", best, iou=0.6)
    return pd.DataFrame(rows)


def test_default_held_out_prompts_are_not_training_prompts():
    check_held_out(HELD_OUT_PROMPTS, PROMPTS)
    with pytest.raises(ValueError, match="are training prompts"):
        check_held_out({"cracks": ["Segment  crack"]}, PROMPTS)
    with pytest.raises(ValueError, match="not one of"):
        check_held_out({"mould": ["mould"]}, PROMPTS)


def test_held_out_prompts_are_scored_at_the_training_prompts_thresholds():
    table = held_out_scores(_table(), HELD, TRAINED)
    assert list(table["prompt"]) == [
        "segment crack", "hairline fracture", "segment taping area", "joint compound"
    ]
    assert list(table["held_out"]) == [False, True, False, True]
    # thresholds from the training prompts on val (0.3 and 0.7), not from the held-out rows
    assert list(table["threshold"]) == [0.3, 0.3, 0.7, 0.7]
    assert list(table["iou"]) == pytest.approx([0.8, 0.6, 0.8, 0.6])
    assert (table["images"] == 1).all()


def test_held_out_prompts_need_their_test_rows():
    table = _table()
    with pytest.raises(ValueError, match="hairline fracture"):
        held_out_scores(table[table["prompt"] != "hairline fracture"], HELD, TRAINED)


def test_the_reading_states_its_criterion_and_whether_the_model_listens():
    scores = held_out_scores(_table(), HELD, TRAINED)
    both = pd.concat([scores.assign(mode="lora"), scores.assign(mode="decoder")])
    gaps = held_out_gaps(both)
    assert list(gaps["gap"]) == pytest.approx([-0.2] * 4)
    lora, decoder = describe_held_out(both, {"lora": 0.6, "decoder": 0.01}, close=0.05)
    assert "cracks 0.600 against 0.800 (-0.200: lower; weakest 'hairline fracture' 0.600)" in lora
    assert "within 0.05" in lora
    assert "With its training prompts it is prompt-aware (sensitivity 0.600, at least 0.5)" in lora
    assert "on cracks and taping it does not carry over to the held-out words" in lora
    assert "is prompt-blind (sensitivity 0.010, within 0.1 of 0)" in decoder
    (near,) = describe_held_out(scores.assign(mode="lora"), {"lora": 0.6}, close=0.25)
    assert "(-0.200: close)" in near
    assert ("on cracks and taping the held-out words mark that class's images as its training "
            "prompts do" in near)


def test_a_class_whose_images_the_model_is_blind_on_gets_no_verdict_of_closeness():
    scores = held_out_scores(_table(), HELD, TRAINED).assign(mode="lora")
    (line,) = describe_held_out(scores, {"lora": {"cracks": -0.02, "taping": 0.9, "all": 0.44}},
                                close=0.25)
    assert "partly prompt-aware (sensitivity 0.440" in line
    assert "on taping the held-out words mark that class's images" in line
    assert "on crack images (sensitivity -0.020) it is prompt-blind" in line
    assert "on cracks and taping the held-out words" not in line
