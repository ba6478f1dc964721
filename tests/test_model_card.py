"""Every trained model goes out with a model card generated from its run's records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from huggingface_hub import ModelCard
from report_check import json_values, unbacked_numbers

from helpers.core.io import read_json, write_json
from helpers.course.model_card import write_model_card, write_model_cards

ABSOLUTE = re.compile(r"(^|[\s\"'`(=:])/(?:tmp|work|root|home|Users|var|opt)/")


def _run(tmp_path: Path, base: str, mode: str = "lora") -> Path:
    out = tmp_path / "outputs" / "run"
    folder = out / "models" / mode
    (folder / "best").mkdir(parents=True)
    write_json(folder / "run.json", {
        "fingerprint": "f", "completed": True, "mode": mode, "base_model": base,
        "profile": "full", "lora": {"r": 16, "alpha": 32, "dropout": 0.05},
        "parameters": {"total": 150747746, "trainable": 995328},
        "train_config": {"epochs": 20, "batch_size": 32, "lr": 0.0005, "bce_weight": 1.0,
                         "dice_weight": 1.0, "seed": 42, "threshold": 0.5},
        "best_epoch": 7, "seconds": 246.25, "runtime": {"device": "cuda"},
        "train_images": 945, "val_images": 184,
    })
    write_json(folder / "best" / "adapter_config.json",
               {"base_model_name_or_path": str(tmp_path / "cache" / "clipseg"), "r": 16})
    write_json(out / "metrics" / "04_lora_training.json", {
        "val_threshold": 0.5, "image_size": 352,
        "val_iou_untrained": {"cracks": 0.2415, "taping": 0.1123},
        "val_iou_lora": {"cracks": 0.5512, "taping": 0.4471},
    })
    write_json(out / "metrics" / "06_full_vs_lora.json", {
        "data": "custom-abc",
        "split_images": {"train": {"cracks": 640, "taping": 305}, "val": {"cracks": 121,
                         "taping": 63}, "test": {"cracks": 118, "taping": 66}},
        "split_photos": {"train": {"cracks": 210, "taping": 101}, "val": {"cracks": 41,
                         "taping": 19}, "test": {"cracks": 40, "taping": 22}},
        "thresholds": {"lora": {"cracks": 0.35000000000000003, "taping": 0.4}},
        "test_iou_photo_bootstrap": [
            {"mode": "lora", "dataset": c, "photos": n, "iou": v, "iou_low": v - 0.05,
             "iou_high": v + 0.04, "level": 0.9}
            for c, n, v in (("cracks", 40, 0.53127), ("taping", 22, 0.41018))
        ],
        "prompt_sensitivity_test": {"lora": {"cracks": 0.61, "taping": 0.4, "all": 0.52}},
    })
    return folder


def test_the_card_parses_names_the_hub_model_and_prints_only_recorded_numbers(tmp_path):
    folder = _run(tmp_path, "CIDAS/clipseg-rd64-refined")
    card = ModelCard.load(write_model_card(folder))
    assert card.data.base_model == "CIDAS/clipseg-rd64-refined"
    assert card.data.library_name == "peft"
    for heading in ("## Training data", "## Thresholds", "## Evaluation",
                    "## Limitations and intended use", "## How to use"):
        assert heading in card.text
    assert "cracks 0.35, taping 0.4" in card.text  # thresholds chosen on validation
    assert "| taping | 0.4102 | 0.3602 to 0.4502 | 22 |" in card.text  # interval over photos
    assert "taping (19 photos)" in card.text  # the small-split flag
    extra = json_values(folder / "run.json")
    assert unbacked_numbers(card.text, folder.parents[1], extra) == []
    assert not ABSOLUTE.search(card.content)
    # the adapter names its base model, not the folder it was loaded from
    config = read_json(folder / "best" / "adapter_config.json")
    assert config["base_model_name_or_path"] == "CIDAS/clipseg-rd64-refined"


def test_a_made_up_number_would_be_caught(tmp_path):
    folder = _run(tmp_path, "CIDAS/clipseg-rd64-refined")
    text = write_model_card(folder).read_text() + "\nTest IoU 0.9731.\n"
    assert unbacked_numbers(text, folder.parents[1], json_values(folder / "run.json")) == [
        "0.9731"
    ]


def test_the_tiny_model_is_named_as_the_demo_model_not_a_path(tmp_path):
    folder = _run(tmp_path, "tiny")
    card = ModelCard.load(write_model_card(folder))
    assert card.data.base_model is None
    assert "tiny demo model" in card.text
    assert read_json(folder / "best" / "adapter_config.json")["base_model_name_or_path"] == "tiny"


def test_cards_are_written_for_finished_runs_only(tmp_path):
    done = _run(tmp_path, "tiny")
    unfinished = done.parent / "full"
    (unfinished / "best").mkdir(parents=True)
    write_json(unfinished / "run.json", {"completed": False, "mode": "full"})
    assert write_model_cards(done.parents[1]) == [done / "best" / "README.md"]


@pytest.mark.parametrize("missing", ["04_lora_training", "06_full_vs_lora"])
def test_a_card_before_the_evaluation_notebooks_ran_says_so(tmp_path, missing):
    folder = _run(tmp_path, "tiny")
    (folder.parents[1] / "metrics" / f"{missing}.json").unlink()
    text = write_model_card(folder).read_text()
    assert "once notebook" in text
    assert unbacked_numbers(text, folder.parents[1], json_values(folder / "run.json")) == []


def test_a_variant_run_does_not_borrow_the_scores_of_its_mode(tmp_path):
    folder = _run(tmp_path, "tiny")
    variant = folder.with_name("lora-refined-lines")
    folder.rename(variant)
    text = write_model_card(variant).read_text()
    assert "0.5313" not in text and "0.35" not in text  # lora's test IoU and threshold
    assert "variant of the `lora` run" in text


def _failure_analysis(out: Path, refined_run: str | None) -> None:
    """07's record of the taping bias and of a model trained on refined masks."""
    write_json(out / "metrics" / "07_failure_analysis.json", {
        "mode": "lora", "refine_method": "lines", "refined_run": refined_run,
        "refined_thresholds_chosen_on_val": {"cracks": 0.45, "taping": 0.2},
        "refinement_iou_vs_true_seams": {"rectangle_iou": 0.6707, "refined_iou": 0.8745},
        "rectangle_bias": [
            {"scored_against": "rectangle labels", "iou": 0.2422, "threshold": 0.4},
            {"scored_against": "true seams", "iou": 0.1773, "threshold": 0.4},
        ],
        "refined_gain": [
            {"mode": m, "dataset": "taping", "photos": 7, "pairs": 17, "iou": v,
             "iou_low": v - 0.03, "iou_high": v + 0.04, "level": 0.9, "diff": d,
             "diff_low": d - 0.005, "diff_high": d + 0.006}
            for m, v, d in (("rectangles", 0.1773, 0.0), ("refined", 0.1849, 0.0076))
        ],
    })


def test_a_mode_without_saved_settings_says_predict_uses_its_default(tmp_path):
    folder = _run(tmp_path, "tiny", mode="decoder")
    m06 = folder.parents[1] / "metrics" / "06_full_vs_lora.json"
    write_json(m06, {**read_json(m06), "thresholds": {"decoder": {"cracks": 0.3, "taping": 0.1}}})
    text = write_model_card(folder).read_text()
    assert "Chosen on validation by notebook 06, per prompt class: cracks 0.3, taping 0.1." in text
    assert "applied by `predict`" not in text
    assert "`predict` applies 0.5 to every prompt unless given `--threshold`" in text
    # how to use it: one predict call per class at the thresholds chosen for it, not at 0.5
    assert ('python -m helpers.predict photos/ --prompt "segment crack" --threshold 0.3 '
            "--model") in text
    assert '--prompt "segment taping area" --threshold 0.1 --model' in text
    assert "--out masks/taping/" in text
    assert "PredictSettings(threshold={'cracks': 0.3, 'taping': 0.1})" in text
    (folder / "best" / "predict_settings.json").write_text('{"threshold": {"cracks": 0.25}}')
    saved = write_model_card(folder).read_text()
    assert "applied by `predict`: cracks 0.25." in saved
    assert "--threshold" not in saved.split("## How to use")[1]  # the saved settings apply


@pytest.mark.parametrize(("all_", "words"), [
    (0.52, "the prompt is the switch (prompt sensitivity on test 0.52: prompt-aware"),
    (0.3, "on test this model is only partly prompt-aware (prompt sensitivity 0.3"),
    (0.0004, "but on test this model is prompt-blind (prompt sensitivity 0.0004, by notebook "
             "06's criterion): its mask barely depends on the prompt"),
])
def test_the_card_says_whether_the_prompt_switches_as_its_test_sensitivity_reads(
    tmp_path, all_, words
):
    folder = _run(tmp_path, "tiny")
    m06 = folder.parents[1] / "metrics" / "06_full_vs_lora.json"
    write_json(m06, {**read_json(m06), "prompt_sensitivity_test": {"lora": {
        "cracks": all_, "taping": all_, "all": all_}}})
    text = write_model_card(folder).read_text()
    assert words in text
    assert unbacked_numbers(text, folder.parents[1], json_values(folder / "run.json")) == []


def test_the_refined_variant_card_holds_what_07_measured_for_it(tmp_path):
    folder = _run(tmp_path, "tiny")
    variant = folder.with_name("lora-refined-lines")
    folder.rename(variant)
    _failure_analysis(variant.parents[1], refined_run="lora-refined-lines")
    card = ModelCard.load(write_model_card(variant))
    assert card.text.startswith("\n# CLIPSeg for drywall quality assurance: lora, trained on "
                                "lines-refined taping masks")
    assert "refined into seam masks by the `lines` refiner" in card.text
    assert "by notebook 07, per prompt class: cracks 0.45, taping 0.2." in card.text
    assert "test IoU 0.1849" in card.text and "against 0.1773" in card.text
    assert "paired gain 0.0076" in card.text
    assert "this model trained on masks refined from them" in card.text
    assert ("refined masks at IoU 0.8745 against the true seams, the rectangles at "
            "0.6707") in card.text
    assert unbacked_numbers(card.text, variant.parents[1], json_values(variant / "run.json")) == []


def test_the_box_label_limitation_gives_07s_measurement_for_the_mode_it_analysed(tmp_path):
    folder = _run(tmp_path, "tiny")
    out = folder.parents[1]
    assert "0.2422" not in write_model_card(folder).read_text()  # nothing measured yet
    _failure_analysis(out, refined_run=None)
    text = write_model_card(folder).read_text()
    assert ("taping test IoU at 0.2422 against the rectangles and 0.1773 against the true "
            "seams") in text
    other = _run(tmp_path / "other", "tiny", mode="full")
    _failure_analysis(other.parents[1], refined_run=None)
    assert "0.2422" not in write_model_card(other).read_text()  # 07 analysed lora, not full


def test_a_demo_model_card_is_for_learning_not_for_inspecting_walls(tmp_path):
    folder = _run(tmp_path, "tiny")
    m06 = folder.parents[1] / "metrics" / "06_full_vs_lora.json"
    write_json(m06, {**read_json(m06), "data": "demo"})
    text = write_model_card(folder).read_text()
    assert "Intended use: learning and teaching the method. Do not use it to inspect walls" in text
    assert "Intended use: marking cracks" not in text
    write_json(m06, {**read_json(m06), "data": "custom-abc"})
    assert "Intended use: marking cracks" in write_model_card(folder).read_text()
