"""Notebook 04's prompt switch: distinct photos in the figure, and readings that say what the
numbers beside them say (never "marks little" when the wrong prompt marks half)."""

from __future__ import annotations

import pandas as pd
import pytest

from helpers.course.prompt_switch import (
    distinct_photos,
    foreground_ratios,
    reading_cut_offs,
    switch_reading,
    wrong_prompt_excess,
)


def matrix(right: float, wrong: float, cls: str = "cracks") -> list[dict]:
    return [
        {"image_class": cls, "prompt_class": cls, "right_prompt": True, "images": 24,
         "pairs": 120, "iou": 0.4, "foreground_share": right},
        {"image_class": cls, "prompt_class": "taping", "right_prompt": False, "images": 24,
         "pairs": 96, "iou": 0.1, "foreground_share": wrong},
    ]


def forms(labelled=0.6, every=0.5, deployed=0.55, blind=0.05, on_object=0.3) -> list[dict]:
    values = {"labelled": labelled, "all": every, "deployed": deployed,
              "deployed_blind": blind, "on_object": on_object}
    return [{"form": k, "cracks": v, "all": v, "images": 24} for k, v in values.items()]


def reading(m, f=None, on_label=None) -> str:
    return " ".join(switch_reading(m, f or forms(), on_label or {}, foreground_ratios(m)))


def test_the_reading_says_the_wrong_prompt_still_marks_about_half_when_it_does():
    text = reading(matrix(0.0267, 0.0127))
    assert "still marks about half (0.476 times as much" in text
    assert "0.0267" in text and "0.0127" in text
    assert "marks little" not in text


@pytest.mark.parametrize(("wrong", "words"), [
    (0.001, "almost nothing"), (0.006, "a small fraction"), (0.015, "most"),
    (0.03, "nearly as much or more"),
])
def test_the_ratio_words_follow_their_cut_offs(wrong, words):
    assert f"marks {words} (" in reading(matrix(0.02, wrong))


def test_a_right_prompt_that_marks_nothing_is_said_so_without_a_ratio():
    m = matrix(0.0, 0.004)
    assert foreground_ratios(m) == {}
    assert "the right prompt marks nothing" in reading(m)


def test_deployed_is_read_against_the_prompt_blind_copy():
    assert "crack images 0.550 against 0.050: the prompt adds" in reading(
        matrix(0.02, 0.01), forms(deployed=0.55, blind=0.05))
    close = reading(matrix(0.02, 0.01), forms(deployed=0.12, blind=0.08))
    assert "no more than the thresholds alone give" in close


def test_sensitivity_words_follow_the_blind_cut_off():
    assert "crack images 0.050, prompt-blind (within 0.1 of 0)" in reading(
        matrix(0.02, 0.019), forms(labelled=0.05))
    assert "inverted (at most -0.1)" in reading(matrix(0.02, 0.03), forms(labelled=-0.2))
    # the same bands, with the same words, as every other sensitivity reading of the course
    assert "partly prompt-aware (0.1 to 0.5)" in reading(matrix(0.02, 0.01), forms(labelled=0.3))
    assert "0.600, prompt-aware (at least 0.5)" in reading(matrix(0.02, 0.01), forms(labelled=0.6))


def test_a_class_that_is_inverted_is_named_even_when_the_mean_over_classes_is_not():
    rows = forms()
    rows[0].update(cracks=-0.2, taping=0.5, all=0.11)  # the labelled form
    text = reading(matrix(0.017, 0.027), rows)
    assert "0.110 (crack images -0.200, inverted" in text and "taping images 0.500" in text
    assert "nearly as much or more (1.588 times as much" in text


def test_where_the_wrong_prompt_marks_is_read_with_its_cut_off():
    on = reading(matrix(0.02, 0.01), on_label={"cracks": 0.8, "all": 0.8})
    off = reading(matrix(0.02, 0.01), on_label={"cracks": 0.2, "all": 0.2})
    assert "0.800 lie on the image's label: on the label" in on
    assert "mostly off the label" in off
    assert "0.5" in str(reading_cut_offs()["wrong_on_label"])


def test_a_high_mean_sensitivity_beside_a_large_wrong_share_is_traced_to_a_few_images():
    # 20 crack images where the wrong prompt marks nothing, one where it floods the image
    per_image = pd.DataFrame({
        "image_id": [f"c{i}" for i in range(21)], "dataset": ["cracks"] * 21,
        "right_pixels": [100.0] * 21, "wrong_pixels": [0.0] * 20 + [5000.0],
    })
    excess = wrong_prompt_excess(per_image)
    assert excess.to_dict("records") == [{"image_class": "cracks", "images": 21,
                                          "wrong_marks_more": 1,
                                          "their_share_of_wrong_pixels": 1.0}]
    text = " ".join(switch_reading(matrix(0.0411, 0.0438), forms(labelled=0.927), {},
                                   foreground_ratios(matrix(0.0411, 0.0438)),
                                   excess=excess.to_dict("records")))
    assert "nearly as much or more (1.066 times as much" in text
    assert "on 1 of the 21 images, which hold 1.000 of every pixel" in text
    assert "a few images carry its mean" in text


def test_the_little_a_wrong_prompt_marks_on_the_label_is_not_read_as_finding_the_object():
    little = reading(matrix(0.2692, 0.0006), on_label={"cracks": 0.9})
    assert "the little it marks is the object itself" in little
    much = reading(matrix(0.02, 0.015), on_label={"cracks": 0.9})
    assert "it finds the object whatever the prompt" in much


def test_distinct_photos_takes_one_image_per_photo_largest_label_first():
    manifest = pd.DataFrame({
        "split": ["val"] * 6 + ["test"],
        "dataset": ["cracks"] * 4 + ["taping"] * 2 + ["cracks"],
        "group_id": ["a", "a", "b", "c", "t1", "t2", "z"],
        "mask_fraction": [0.30, 0.25, 0.10, 0.20, 0.5, 0.4, 0.9],
        "image_path": [f"{i}.jpg" for i in range(7)],
    })
    picked = distinct_photos(manifest, "val", per_class=2)
    assert picked["image_path"].tolist() == ["0.jpg", "3.jpg", "4.jpg", "5.jpg"]
    assert picked["group_id"].is_unique


def test_the_summary_and_the_report_show_the_forms_and_their_reading(tmp_path):
    from helpers.course.course_report import section_04
    from helpers.course.records import LoraTraining
    from helpers.course.summaries import run_summary

    m = matrix(0.0267, 0.0127) + matrix(0.05, 0.001, "taping")
    m[-1]["prompt_class"] = "cracks"
    results = LoraTraining(
        profile="demo", data="demo", model="tiny", seed=42, runtime={}, peak_memory_mb=1.0,
        evaluation_cap={}, image_size=352, val_threshold=0.5, val_images=42,
        val_images_per_class={"cracks": 24, "taping": 18}, trainable_parameters=10,
        total_parameters=100, gradient_trap=[], val_iou_untrained={"cracks": 0.09, "taping": 0.0},
        val_iou_lora={"cracks": 0.3, "taping": 0.4}, best_epoch=3, epochs_run=8,
        train_seconds=80.0, thresholds_chosen_on_val={"cracks": 0.3, "taping": 0.4},
        prompt_sensitivity_val={"cracks": 0.6, "taping": 0.8, "all": 0.7},
        cross_prompt_matrix_val=m, checkpoint="outputs/demo/models/lora/best",
        trainable_share=0.1, val_empty_label_images={"cracks": 2, "taping": 0},
        val_iou_empty_prediction={"cracks": 2 / 24, "taping": 0.0},
        written_step={"bce": 0.7, "dice": 0.9, "loss": 3.0, "grad_norm": 2.5, "grad_clip": 1.0,
                      "lr": 0.005, "loss_after": 2.8},
        prompt_sensitivity_forms_val=forms(), wrong_prompt_on_label_val={"cracks": 0.35},
        wrong_to_right_foreground_val=foreground_ratios(m), reading_cut_offs=reading_cut_offs(),
        wrong_prompt_excess_val=[{"image_class": "cracks", "images": 24, "wrong_marks_more": 2,
                                  "their_share_of_wrong_pixels": 0.9}],
    )
    summary = " ".join(run_summary(results))
    assert "2 of 24 validation images have an empty label" in summary
    assert "marking nothing scores 0.083" in summary
    assert "no better than marking nothing" in summary  # 0.09 vs 0.083: within 0.02
    assert "took the loss on that batch to 2.8000" in summary
    assert "still marks about half" in summary and "almost nothing" in summary
    assert "on 2 of the 24 images, which hold 0.900" in summary
    report = section_04(results)
    assert "| deployed_blind |" in report and "0.35" in report
    assert "**0.700**" in report
