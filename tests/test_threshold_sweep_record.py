"""Notebook 05's recorded threshold stability and post-processing gains: shown in the report
and the summary with only recorded numbers."""

from __future__ import annotations

from helpers.course.course_report import build_report
from helpers.course.records import ThresholdSweep
from helpers.course.summaries import run_summary

RUNTIME = {"device": "cpu", "gpu": None, "precision": "fp32", "num_workers": 0}
SPLITS = {"val": {"cracks": 24, "taping": 18}, "test": {"cracks": 23, "taping": 17}}
PHOTOS = {"val": {"cracks": 9, "taping": 7}, "test": {"cracks": 9, "taping": 7}}


def _stability(cls, chosen, low, high, steps, median, photos):
    return {"dataset": cls, "val_photos": photos, "resamples": 200, "chosen": chosen,
            "test_iou": 0.28, "threshold_median": median, "threshold_low": low,
            "threshold_high": high, "threshold_std": 0.05, "steps": steps, "test_iou_low": 0.25,
            "test_iou_high": 0.39, "test_iou_std": 0.03, "median_threshold": median,
            "median_test_iou": 0.33, "recommended": chosen if steps <= 1 else median,
            "level": 0.9}


def _sweep() -> ThresholdSweep:
    return ThresholdSweep(
        profile="demo", data="demo", model="tiny", seed=42, mode="lora", image_size=352,
        runtime=RUNTIME, peak_memory_mb=800.0, evaluation_cap={"capped": False},
        split_images=SPLITS, split_photos=PHOTOS, small_split_threshold=20,
        thresholds_chosen_on_val={"cracks": 0.35, "taping": 0.15},
        thresholds_if_tuned_on_test={"cracks": 0.35, "taping": 0.4},
        test_iou_at_val_threshold={"cracks": 0.41, "taping": 0.2768},
        test_iou_if_tuned_on_test={"cracks": 0.41, "taping": 0.3885},
        inflation_from_tuning_on_test={"cracks": 0.0, "taping": 0.1117},
        val_iou_at_val_threshold={"cracks": 0.45, "taping": 0.269},
        val_iou_at_test_threshold={"cracks": 0.45, "taping": 0.268},
        peeking_readings=["taping: validation picks 0.15 (validation IoU 0.269); test would "
                          "pick 0.40, which validation scores 0.268."],
        per_class=[], per_prompt_test=[], resolution_test=[], postprocess_ablation=[],
        postprocess_chosen_on_val={"cracks": "none", "taping": "none"}, postprocess_margin=0.005,
        test_iou_no_postprocess={"cracks": 0.41, "taping": 0.2768},
        test_iou_predict_defaults={"cracks": 0.41, "taping": 0.2768}, final_scores=[],
        predict_settings="outputs/demo/models/lora/best/predict_settings.json",
        threshold_stability=[_stability("cracks", 0.35, 0.3, 0.35, 1, 0.35, 9),
                             _stability("taping", 0.15, 0.1, 0.45, 7, 0.3, 7)],
        threshold_stability_reading="taping: resampling its 7 validation photos moves it.",
        threshold_rule="use the median of the bootstrap choices",
        postprocess_gain_val=[{"mode": "open_close", "dataset": "taping", "photos": 7,
                               "pairs": 90, "iou": 0.29, "iou_low": 0.2, "iou_high": 0.35,
                               "level": 0.9, "diff": 0.003, "diff_low": -0.001,
                               "diff_high": 0.005}],
        postprocess_gain_readings=["open_close on taping: validation IoU +0.003 against none."],
    )


def test_the_report_shows_how_far_the_threshold_moves_and_the_rule(tmp_path):
    from report_check import unbacked_numbers

    _sweep().write_in(tmp_path)
    text = build_report(tmp_path, "demo").read_text()
    assert "validation photos resampled 200 times" in text
    rows = [[cell.strip() for cell in line.split("|")]
            for line in text.splitlines() if line.startswith("| taping")]
    stability = next(cells for cells in rows if "0.45" in cells)
    assert "7" in stability  # the sweep steps the choices spread over
    assert "The course's rule: use the median of the bootstrap choices." in text
    assert "- taping: validation picks 0.15 (validation IoU 0.269)" in text
    inflation = next(cells for cells in rows if "0.1117" in cells)
    assert "0.268" in inflation and "0.269" in inflation  # the test's pick, scored on val
    assert "a fixed rule of the course, not a measurement" in text and "noise" not in text
    assert "- open_close on taping: validation IoU +0.003 against none." in text
    assert unbacked_numbers(text, tmp_path) == []


def test_the_summary_applies_the_rule_only_where_the_choice_moves():
    cracks, taping = run_summary(_sweep())[2:4]
    assert cracks.startswith("cracks: resampling its 9 validation photos keeps the choice "
                             "within one sweep step (0.30-0.35)")
    assert "moves the choice over 0.10-0.45 (7 sweep steps, more than one)" in taping
    assert "gives 0.30, test IoU 0.330 against 0.280 at the single choice" in taping
