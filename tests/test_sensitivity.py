"""Prompt sensitivity: blind models score 0, perfect switches 1, the matrix pairs prompts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.evaluate.sensitivity import (
    FORMS,
    cross_prompt_matrix,
    describe_sensitivity,
    per_image_sensitivity,
    prompt_sensitivity,
    sensitivity_forms,
    wrong_prompt_localisation,
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

    same = describe_by_class({"cracks": 0.9, "taping": 0.8, "all": 0.85})
    assert same.startswith("prompt-aware (at least 0.5") and "images" not in same
    assert "marks little" not in same  # how much the wrong prompt marks is the matrix's to say
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


def counts_table(counts: dict[tuple[str, str], tuple[int, int, int]],
                 thresholds=(0.3, 0.4)) -> pd.DataFrame:
    """Sweep rows with `counts[(image, prompt)] = (tp, fp, fn)` at every threshold."""
    rows = []
    for (image, prompt), (tp, fp, fn) in counts.items():
        for t in thresholds:
            rows.append({"image_id": image, "dataset": "cracks" if image[0] == "c" else "taping",
                         "prompt": prompt, "split": "test", "threshold": t, "tp": tp, "fp": fp,
                         "fn": fn, "iou": 0.0})
    return pd.DataFrame(rows)


EMPTY_WALL = pd.concat([MANIFEST, pd.DataFrame({
    "image_path": ["/x/c2.jpg"], "dataset": ["cracks"], "width": [10], "height": [10],
})], ignore_index=True)


def test_a_prompt_blind_model_scores_zero_in_every_form():
    # the same pixels whatever the prompt, on the object and off it; one threshold for both
    blind = counts_table({("c1", CRACK): (6, 4, 2), ("c1", TAPE): (6, 4, 2),
                          ("c2", CRACK): (0, 3, 0), ("c2", TAPE): (0, 3, 0),
                          ("t1", CRACK): (5, 0, 1), ("t1", TAPE): (5, 0, 1)})
    forms = sensitivity_forms(blind, {"cracks": 0.3, "taping": 0.3}, EMPTY_WALL)
    assert list(forms.index) == [*FORMS[:3], "deployed_blind", "on_object"]
    assert (forms[["cracks", "taping", "all"]] == 0.0).all().all()
    # its wrong prompt lies on the object as much as its right one does
    assert wrong_prompt_localisation(blind, THRESHOLDS, EMPTY_WALL)["cracks"] == pytest.approx(
        (6 + 0) / (10 + 3))


def test_a_false_alarm_on_an_empty_wall_counts_only_on_all_images():
    t = counts_table({("c1", CRACK): (8, 0, 2), ("c1", TAPE): (0, 0, 10),
                      ("c2", CRACK): (0, 0, 0), ("c2", TAPE): (0, 12, 0),  # false alarm
                      ("t1", CRACK): (0, 0, 9), ("t1", TAPE): (9, 0, 0)})
    forms = sensitivity_forms(t, THRESHOLDS, EMPTY_WALL)
    assert forms.loc["labelled", "cracks"] == 1.0 and forms.loc["labelled", "images"] == 2
    assert forms.loc["all", "cracks"] == pytest.approx((1.0 - 1.0) / 2)
    assert forms.loc["all", "all"] == pytest.approx((1.0 - 1.0 + 1.0) / 3)
    assert forms.loc["on_object", "all"] == 1.0


def test_the_right_object_under_the_wrong_prompt_scores_zero_on_object():
    # the wrong prompt marks less, but all of it on the crack: not prompt-aware
    t = counts_table({("c1", CRACK): (10, 10, 0), ("c1", TAPE): (10, 0, 0),
                      ("t1", CRACK): (0, 0, 9), ("t1", TAPE): (9, 0, 0)})
    forms = sensitivity_forms(t, THRESHOLDS, MANIFEST)
    assert forms.loc["labelled", "cracks"] == pytest.approx((20 - 10) / 30)
    assert forms.loc["on_object", "cracks"] == 0.0
    loc = wrong_prompt_localisation(t, THRESHOLDS, MANIFEST)
    assert loc["cracks"] == 1.0 and np.isnan(loc["taping"])


def test_deployed_thresholds_each_prompt_at_its_own_class_threshold():
    # probabilities that are the same for both prompts: 20 pixels at 0.3, 10 at 0.4
    rows = []
    for image, dataset in (("c1", "cracks"), ("t1", "taping")):
        for prompt in (CRACK, TAPE):
            for thr, n in ((0.3, 20), (0.4, 10)):
                rows.append({"image_id": image, "dataset": dataset, "prompt": prompt,
                             "split": "test", "threshold": thr, "tp": n, "fp": 0, "fn": 30 - n,
                             "iou": 0.0})
    forms = sensitivity_forms(pd.DataFrame(rows), THRESHOLDS, MANIFEST)
    assert forms.loc["labelled", "all"] == 0.0
    # cracks (0.3): R = 20 under the crack prompt, W = 10 under the taping prompt (0.4)
    assert forms.loc["deployed", "cracks"] == pytest.approx(10 / 30)
    assert forms.loc["deployed", "taping"] == pytest.approx(-10 / 30)
    # a blind model gives exactly this at these thresholds: the threshold gap, not the prompt
    assert forms.loc["deployed_blind"].equals(forms.loc["deployed"])
