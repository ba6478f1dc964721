"""Notebooks 04-07 and the report, executed headlessly on the quick profile.

The quick profile is the demo (generated data, tiny model) with one epoch cut to 12 steps and
evaluation capped at a few images per split and class: the demo defaults are exercised by
`make run`; here the same code paths run quickly and the tests assert on the numbers each
notebook records in its metrics file. The notebooks' solutions (tests/test_course_material.py)
reuse this run.
"""

from __future__ import annotations

import pytest

from helpers.core.io import read_json
from helpers.core.paths import metrics_dir, profile_dir, resolve
from helpers.course import runner as run_notebooks
from helpers.course.course_report import build_report, export_html

pytestmark = [pytest.mark.notebook, pytest.mark.slow]
RUN = "test-smoke"
PROFILE = "quick"


@pytest.fixture(scope="module")
def executed():
    names = run_notebooks.select(["04", "05", "06", "07"])
    run_notebooks.run(PROFILE, names, {"run_name": RUN, "n_gallery": 1})
    return {name: read_json(metrics_dir(RUN) / f"{name}.json") for name in names}


def test_04_shows_the_gradient_trap_and_the_prompt_switch_numbers(executed):
    m = executed["04_lora_training"]
    trap = {(r["forward"], r["part"]): r for r in m["gradient_trap"]}
    for part in ("vision", "text"):
        assert trap[("stock", part)]["with_gradient"] == 0
        assert trap[("course", part)]["with_gradient"] > 0
    assert trap[("stock", "decoder")]["with_gradient"] > 0
    assert set(m["val_iou_untrained"]) == set(m["val_iou_lora"]) == {"cracks", "taping"}
    assert set(m["thresholds_chosen_on_val"]) == {"cracks", "taping"}
    cells = {(r["image_class"], r["prompt_class"]) for r in m["cross_prompt_matrix_val"]}
    assert cells == {(a, b) for a in ("cracks", "taping") for b in ("cracks", "taping")}
    assert set(m["prompt_sensitivity_val"]) == {"cracks", "taping", "all"}
    assert all(-1 <= v <= 1 for v in m["prompt_sensitivity_val"].values())


def test_05_chooses_thresholds_on_validation_and_writes_predict_defaults(executed):
    m = executed["05_threshold_sweep"]
    assert set(m["thresholds_chosen_on_val"]) == {"cracks", "taping"}
    for cls, inflation in m["inflation_from_tuning_on_test"].items():
        assert inflation >= -1e-9, f"tuning on test cannot score lower on test ({cls})"
    images = {(r["dataset"], r["prompt"]): r["images"] for r in m["per_prompt_test"]}
    for cls in ("cracks", "taping"):
        assert len({n for (d, _), n in images.items() if d == cls}) == 1  # paired: same images
    settings = read_json(resolve(m["predict_settings"]))  # named relative to the repository
    # predict gets the threshold rule's choice: the median of the resampled choices where
    # validation is too small to choose, else the single validation choice
    rule = {r["dataset"]: r["recommended"] for r in m["threshold_stability"]}
    assert settings["threshold"] == m["thresholds_for_predict"] == rule
    assert settings["postprocess"] == m["postprocess_chosen_on_val"]
    stability = {r["dataset"]: r for r in m["threshold_stability"]}
    assert set(stability) == {"cracks", "taping"}
    for cls, r in stability.items():  # the resampled choices, and the test IoU of each
        assert r["chosen"] == m["thresholds_chosen_on_val"][cls]
        assert r["test_iou"] == pytest.approx(m["test_iou_at_val_threshold"][cls], abs=1e-6)
        assert r["threshold_low"] <= r["median_threshold"] <= r["threshold_high"]
        assert r["recommended"] == (r["chosen"] if r["steps"] <= 1 else r["median_threshold"])
        assert cls in m["threshold_stability_reading"]
    assert m["threshold_rule"] and len(m["curve_readings"]) == 8  # 2 classes x 2 splits x 2
    gains = m["postprocess_gain_val"]
    assert {(r["mode"], r["dataset"]) for r in gains} == {
        (method, cls) for method in ("none", "open_close", "remove_small")
        for cls in ("cracks", "taping")
    }
    for r in gains:  # paired against "none" on the same validation photos
        assert r["diff_low"] <= r["diff"] <= r["diff_high"] or r["mode"] == "none"
        assert r["photos"] == m["split_photos"]["val"][r["dataset"]]
    assert len(m["postprocess_gain_readings"]) == 4


def test_06_compares_three_modes_under_one_protocol(executed):
    m = executed["06_full_vs_lora"]
    rows = {r["mode"]: r for r in m["comparison"]}
    assert set(rows) == {"none", "decoder", "lora", "full"}
    assert rows["none"]["trainable_parameters"] == 0 and rows["none"]["checkpoint_mb"] == 0
    assert rows["lora"]["trainable_parameters"] < rows["decoder"]["trainable_parameters"]
    assert rows["decoder"]["trainable_parameters"] < rows["full"]["trainable_parameters"]
    assert rows["lora"]["checkpoint_mb"] < rows["full"]["checkpoint_mb"]
    for row in rows.values():
        assert {"test_iou_cracks", "test_iou_taping", "val_iou_cracks"} <= set(row)
    spread = m["test_iou_photo_bootstrap"]
    assert {(r["mode"], r["dataset"]) for r in spread} == {
        (mode, cls) for mode in rows for cls in ("cracks", "taping")
    }
    for r in spread:  # the bootstrap's mean is the table's test IoU, inside its own interval
        assert r["iou"] == pytest.approx(rows[r["mode"]][f"test_iou_{r['dataset']}"], abs=1e-4)
        assert r["iou_low"] <= r["iou"] <= r["iou_high"]
        assert r["photos"] <= m["split_images"]["test"][r["dataset"]]
    assert m["bootstrap_reference"] == "none"  # each mode's gain over the zero-shot model
    zero = {r["dataset"]: r["iou"] for r in spread if r["mode"] == "none"}
    for r in spread:
        assert r["diff"] == pytest.approx(r["iou"] - zero[r["dataset"]], abs=1e-9)
    assert {r["mode"] for r in m["test_iou_vs_lora"]} == set(rows)
    for sentence in m["gain_readings"]:  # verdicts name their photos and the one seed
        assert " photos: " in sentence and f"seed {m['seed']}" in sentence
    forms = {(r["mode"], r["form"]) for r in m["prompt_sensitivity_forms"]}
    assert forms == {(mode, form) for mode in rows for form in (
        "labelled", "all", "deployed", "deployed_blind", "on_object")}
    assert {r["mode"] for r in m["wrong_prompt_localisation"]} == set(rows)
    assert len(m["sensitivity_readings"]) == len(rows)
    held = m["held_out_prompts_test"]
    for mode in rows:  # unseen phrasings at the training prompts' validation thresholds
        mine = [r for r in held if r["mode"] == mode]
        assert {r["prompt"] for r in mine if r["held_out"]} == {
            "wall crack", "hairline fracture", "drywall tape joint", "joint compound"}
        assert all(r["threshold"] == m["thresholds"][mode][r["dataset"]] for r in mine)
    assert len(m["held_out_readings"]) == len(rows)
    text = (metrics_dir(RUN) / "06_full_vs_lora.json").read_text()
    assert "NaN" not in text and "Infinity" not in text  # strict JSON: a missing value is null


def test_07_measures_the_rectangle_bias_and_the_refinement(executed):
    m = executed["07_failure_analysis"]
    for cls, row in m["taxonomy_counts"].items():
        assert row["images"] == m["test_images"][cls]
        categories = {k: v for k, v in row.items() if k not in ("images", "empty", "failing")}
        assert sum(categories.values()) == row["failing"] <= row["images"]
        assert 0 <= row["false alarm on an empty image"] <= row["empty"] <= row["images"]
        assert 0 <= m["explained_share"][cls] <= 1
    q = m["refinement_iou_vs_true_seams"]
    assert q["refined_iou"] > q["rectangle_iou"]
    against = {r["scored_against"] for r in m["rectangle_bias"]}
    assert against == {"rectangle labels", "true seams"}
    ratio = {r["scored_against"]: r["predicted_area_ratio"] for r in m["rectangle_bias"]}
    assert ratio["true seams"] > ratio["rectangle labels"] > 0  # a seam lies inside its rectangle
    assert len(m["refined_training_effect"]) == 2


def test_report_gathers_every_notebook(executed):
    html = export_html(profile_dir(RUN))
    assert {p.stem for p in html} >= set(executed)
    text = build_report(profile_dir(RUN), RUN).read_text()
    for name in executed:
        assert f"html/{name}.html" in text
    for fig in ("04_training_curves.png", "05_threshold_curves.png", "06_modes.png"):
        assert f"![{fig}](figures/{fig})" in text  # the key figures are shown, not only linked


def test_every_number_in_the_report_comes_from_the_metrics_files(executed):
    from report_check import unbacked_numbers

    from helpers.course.records import RESULTS

    for name in executed:  # each file follows its schema
        assert RESULTS[name].read(profile_dir(RUN)) is not None
    text = build_report(profile_dir(RUN), RUN).read_text()
    assert unbacked_numbers(text, profile_dir(RUN)) == []


def _figures(path) -> int:
    import nbformat

    nb = nbformat.read(path, as_version=4)
    return sum(
        "image/png" in out.get("data", {})
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


def test_executed_notebooks_hold_their_figures(executed):
    """The tests export MPLBACKEND=Agg; the runner's kernels still draw inline."""
    for name in executed:
        assert _figures(profile_dir(RUN) / "executed" / f"{name}.ipynb") > 0, name


def test_model_notebooks_record_runtime_and_an_uncapped_evaluation(executed):
    for name, m in executed.items():
        assert m["runtime"]["device"] in ("cpu", "cuda", "mps"), name
        assert m["runtime"]["precision"] in ("fp32", "bf16", "fp16"), name
        assert m["peak_memory_mb"] > 0, name
        cap = m["evaluation_cap"]  # the quick profile caps evaluation, and says so
        assert cap["capped"] and cap["max_images_per_split_and_class"] == 4, name


def test_every_trained_model_has_a_card_of_recorded_numbers(executed):
    import re

    from huggingface_hub import ModelCard
    from report_check import json_values, unbacked_numbers

    from helpers.course.model_card import write_model_cards

    cards = write_model_cards(profile_dir(RUN))
    assert {p.parent.parent.name for p in cards} >= {"decoder", "lora", "full"}
    for path in cards:
        card = ModelCard.load(path)
        assert "[More Information Needed]" not in card.content
        if path.parent.parent.name in ("decoder", "lora", "full"):  # the runs 06 scores
            assert "Zero-shot baseline" in card.content  # 06's row "none" and the gain over it
        assert not re.search(r"(^|[\s\"'`(=:])/(?:tmp|work|root|home|Users)/", card.content)
        extra = json_values(*path.parent.glob("*.json"), path.parent.parent / "run.json")
        assert unbacked_numbers(card.text, profile_dir(RUN), extra) == [], path


def test_what_the_run_leaves_holds_no_machine_path_nan_or_object_repr(executed):
    from helpers.course.model_card import write_model_cards
    from helpers.course.output_check import scan_outputs

    export_html(profile_dir(RUN))
    build_report(profile_dir(RUN), RUN)
    write_model_cards(profile_dir(RUN))
    assert scan_outputs(profile_dir(RUN)) == []
