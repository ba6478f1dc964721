"""Prompt sensitivity: blind models score 0, perfect switches 1, the matrix pairs prompts."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.evaluate.sensitivity import (
    cross_prompt_matrix,
    describe_sensitivity,
    per_image_sensitivity,
    prompt_sensitivity,
)

THRESHOLDS = {"cracks": 0.3, "taping": 0.4}
MANIFEST = pd.DataFrame(
    {
        "image_path": ["/x/c1.jpg", "/x/t1.jpg"],
        "dataset": ["cracks", "taping"],
        "width": [10, 10],
        "height": [10, 10],
    }
)


def table(pixels: dict[tuple[str, str], int]) -> pd.DataFrame:
    """Sweep rows at both thresholds; `pixels[(image, prompt)]` predicted pixels (all fp)."""
    rows = []
    for (image, prompt), n in pixels.items():
        for t in (0.3, 0.4):
            rows.append({"image_id": image, "dataset": "cracks" if image == "c1" else "taping",
                         "prompt": prompt, "split": "test", "threshold": t, "tp": 0, "fp": n,
                         "fn": 5, "iou": 0.0})
    return pd.DataFrame(rows)


CRACK, TAPE = "segment crack", "segment taping area"


def test_a_prompt_blind_model_scores_zero():
    blind = table({("c1", CRACK): 20, ("c1", TAPE): 20, ("t1", CRACK): 7, ("t1", TAPE): 7})
    assert prompt_sensitivity(blind, THRESHOLDS, MANIFEST) == {
        "cracks": 0.0, "taping": 0.0, "all": 0.0
    }
    nothing = table({("c1", CRACK): 0, ("c1", TAPE): 0, ("t1", CRACK): 0, ("t1", TAPE): 0})
    assert prompt_sensitivity(nothing, THRESHOLDS, MANIFEST)["all"] == 0.0
    assert "blind" in describe_sensitivity(0.0)


def test_a_perfect_switch_scores_one_and_an_inverted_one_below_zero():
    good = table({("c1", CRACK): 20, ("c1", TAPE): 0, ("t1", CRACK): 0, ("t1", TAPE): 9})
    assert prompt_sensitivity(good, THRESHOLDS, MANIFEST)["all"] == 1.0
    bad = table({("c1", CRACK): 10, ("c1", TAPE): 30, ("t1", CRACK): 0, ("t1", TAPE): 9})
    s = per_image_sensitivity(bad, THRESHOLDS, MANIFEST).set_index("image_id")["sensitivity"]
    assert s["c1"] == pytest.approx(-0.5) and s["t1"] == 1.0
    assert "inverted" in describe_sensitivity(-0.5)


def test_matrix_gives_foreground_share_per_image_and_prompt_class():
    t = table({("c1", CRACK): 20, ("c1", TAPE): 10, ("t1", CRACK): 0, ("t1", TAPE): 50})
    m = cross_prompt_matrix(t, THRESHOLDS, MANIFEST).set_index(["image_class", "prompt_class"])
    assert m.loc[("cracks", "cracks"), "foreground_share"] == pytest.approx(0.2)
    assert m.loc[("cracks", "taping"), "foreground_share"] == pytest.approx(0.1)
    assert m.loc[("taping", "taping"), "right_prompt"]
    assert not m.loc[("taping", "cracks"), "right_prompt"]


def test_rows_of_only_the_right_prompts_are_refused():
    t = table({("c1", CRACK): 20, ("t1", TAPE): 9})
    with pytest.raises(ValueError, match="right and the wrong"):
        prompt_sensitivity(t, THRESHOLDS, MANIFEST)


def test_a_blind_model_scores_zero_per_class_even_with_different_class_thresholds():
    rows = []
    for image, dataset in (("c1", "cracks"), ("t1", "taping")):
        for prompt in (CRACK, TAPE):
            for t, n in ((0.3, 20), (0.4, 10)):  # same probabilities for every prompt
                rows.append({"image_id": image, "dataset": dataset, "prompt": prompt,
                             "split": "test", "threshold": t, "tp": 0, "fp": n, "fn": 5,
                             "iou": 0.0})
    s = prompt_sensitivity(pd.DataFrame(rows), THRESHOLDS, MANIFEST)
    assert s == {"cracks": 0.0, "taping": 0.0, "all": 0.0}


def test_an_empty_wall_left_empty_does_not_count_as_prompt_blind():
    """On a crack-free image nothing under either prompt is right, and says nothing."""
    manifest = pd.concat([MANIFEST, pd.DataFrame({
        "image_path": ["/x/c2.jpg"], "dataset": ["cracks"], "width": [10], "height": [10],
    })], ignore_index=True)
    t = table({("c1", CRACK): 20, ("c1", TAPE): 0, ("c2", CRACK): 0, ("c2", TAPE): 0,
               ("t1", CRACK): 0, ("t1", TAPE): 9})
    t.loc[t["image_id"] == "c2", "fn"] = 0  # c2's label is empty
    per_image = per_image_sensitivity(t, THRESHOLDS, manifest).set_index("image_id")
    assert per_image.loc["c2", "sensitivity"] == 0.0 and not per_image.loc["c2", "labelled"]
    assert prompt_sensitivity(t, THRESHOLDS, manifest) == {
        "cracks": 1.0, "taping": 1.0, "all": 1.0
    }


def test_the_reading_names_each_class_when_they_differ():
    from helpers.evaluate.sensitivity import describe_by_class

    assert describe_by_class({"cracks": 0.9, "taping": 0.8, "all": 0.85}) == (
        "prompt-aware: the wrong prompt marks little"
    )
    mixed = describe_by_class({"cracks": 0.3, "taping": 0.9, "all": 0.6})
    assert mixed.startswith("crack images: partly prompt-aware")
    assert "; taping images: prompt-aware" in mixed


def test_prompt_embedding_similarity_separates_within_from_across_classes(monkeypatch):
    import torch

    import helpers.model.forward as forward
    from helpers.data.prompts import PROMPTS
    from helpers.evaluate.sensitivity import prompt_embedding_similarity

    class Tokenizer:
        def __call__(self, prompts, **kwargs):
            self.prompts = list(prompts)
            return {"input_ids": torch.zeros(len(prompts), 2), "attention_mask": None}

    tokenizer = Tokenizer()
    crack = set(PROMPTS["cracks"])

    def by_class(model, ids, mask):  # one direction per class, scaled by the prompt's length
        return torch.tensor([[len(p), 0.0] if p in crack else [0.0, len(p)]
                             for p in tokenizer.prompts])

    monkeypatch.setattr(forward, "text_embeddings", by_class)
    assert prompt_embedding_similarity(None, tokenizer) == {"within": 1.0, "across": 0.0}
    monkeypatch.setattr(forward, "text_embeddings", lambda m, i, a: torch.ones(len(i), 3))
    same = prompt_embedding_similarity(None, tokenizer)
    assert same["within"] == pytest.approx(1.0) and same["across"] == pytest.approx(1.0)
