"""The course report gathers metrics files into one Markdown file and flags small splits."""

from __future__ import annotations

import pytest

from helpers.core.io import read_json, write_json
from helpers.course.course_report import build_report
from helpers.course.records import DataInspection, LoraTraining, ResultsError, ThresholdSweep

RUNTIME = {"device": "cpu", "gpu": None, "precision": "fp32", "num_workers": 0}
SPLITS = {"val": {"cracks": 24, "taping": 18}, "test": {"cracks": 23, "taping": 17}}
UNCAPPED = {
    "max_images_per_split_and_class": None, "capped": False, "evaluated": SPLITS,
    "available": SPLITS,
}


def _sweep(**changes) -> ThresholdSweep:
    values = dict(
        profile="demo", data="demo", model="tiny", seed=42, mode="lora", image_size=352,
        runtime=RUNTIME, peak_memory_mb=812.5, evaluation_cap=UNCAPPED,
        split_images=SPLITS, small_split_threshold=20,
        thresholds_chosen_on_val={"cracks": 0.35, "taping": 0.5},
        thresholds_if_tuned_on_test={"cracks": 0.3, "taping": 0.45},
        test_iou_at_val_threshold={"cracks": 0.41, "taping": 0.52},
        test_iou_if_tuned_on_test={"cracks": 0.44, "taping": 0.55},
        inflation_from_tuning_on_test={"cracks": 0.03, "taping": 0.03},
        per_class=[{"split": "test", "dataset": "cracks", "images": 23, "iou": 0.41}],
        per_prompt_test=[
            {"dataset": "cracks", "prompt": "segment crack", "images": 23, "iou": 0.4}
        ],
        resolution_test=[{"dataset": "cracks", "resolution": "full", "iou": 0.41}],
        postprocess_ablation=[
            {"dataset": "cracks", "split": "val", "method": "none", "iou": 0.4}
        ],
        postprocess_chosen_on_val={"cracks": "none", "taping": "remove_small"},
        postprocess_margin=0.005,
        test_iou_no_postprocess={"cracks": 0.41, "taping": 0.52},
        test_iou_predict_defaults={"cracks": 0.42, "taping": 0.53},
        final_scores=[], predict_settings="outputs/demo/models/lora/best/predict_settings.json",
    )
    values.update(changes)
    return ThresholdSweep(**values)


def _metrics(tmp_path, **sweep_changes):
    DataInspection(
        profile="demo",
        data="demo",
        problems=0,
        exports={"cracks": "/x/cracks", "taping": "/x/taping"},
        summary=[
            {
                "dataset": "taping",
                "source_split": "valid",
                "images": 202,
                "sources": 86,
                "objects": 250,
                "polygons": 0,
                "boxes": 250,
                "empty_segmentation": 250,
            }
        ],
        leakage=[
            {
                "dataset": "taping",
                "split_a": "train",
                "split_b": "valid",
                "key": "source_id",
                "n_a": 160,
                "n_b": 86,
                "n_shared": 82,
                "leak_fraction": 82 / 86,
            }
        ],
    ).write_in(tmp_path)
    _sweep(**sweep_changes).write_in(tmp_path)
    return tmp_path


def test_report_states_run_facts_and_uses_validation_thresholds(tmp_path):
    text = build_report(_metrics(tmp_path), "demo").read_text()
    assert text.startswith("# Course report: demo")
    for fact in ("profile: **demo**", "model: **tiny**", "seed: **42**", "/x/cracks"):
        assert fact in text
    assert "Thresholds chosen on **validation**, scores on **test**" in text
    row = next(line for line in text.splitlines() if line.startswith("| cracks") and "0.35" in line)
    assert "0.41" in row and "0.44" in row  # honest test score and the inflated one, side by side
    assert "82" in text and "0.9535" in text  # the export's own leakage


def test_report_flags_every_split_smaller_than_twenty_images(tmp_path):
    text = build_report(_metrics(tmp_path), "demo").read_text()
    assert "test / taping: 17 images **(only 17 images" in text
    assert "val / cracks: 24 images\n" in text


def test_report_flags_a_split_by_its_photos_where_they_are_known(tmp_path):
    photos = {"val": {"cracks": 21, "taping": 7}, "test": {"cracks": 9, "taping": 7}}
    text = build_report(_metrics(tmp_path, split_photos=photos), "demo").read_text()
    assert "val / cracks: 24 images from 21 photos\n" in text
    assert "test / cracks: 23 images from 9 photos **(only 9 photos: too small" in text


def test_report_without_metrics_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the notebooks"):
        build_report(tmp_path, "demo")


def test_report_flags_small_validation_classes_in_the_training_section(tmp_path):
    LoraTraining(
        profile="demo", data="demo", model="tiny", seed=42, runtime=RUNTIME,
        peak_memory_mb=700.0, evaluation_cap=UNCAPPED, image_size=352, val_threshold=0.5,
        trainable_parameters=38912, total_parameters=714257, gradient_trap=[],
        best_epoch=6, epochs_run=8, train_seconds=79.0, val_images=42,
        val_images_per_class={"cracks": 24, "taping": 18},
        val_iou_untrained={"cracks": 0.17, "taping": 0.03},
        val_iou_lora={"cracks": 0.17, "taping": 0.17},
        thresholds_chosen_on_val={"cracks": 0.3, "taping": 0.4},
        prompt_sensitivity_val={"cracks": 0.6, "taping": 0.8, "all": 0.7},
        cross_prompt_matrix_val=[
            {"image_class": "cracks", "prompt_class": "taping", "right_prompt": False,
             "images": 24, "pairs": 120, "iou": 0.05, "foreground_share": 0.004},
        ],
        checkpoint="outputs/demo/models/lora/best",
    ).write_in(tmp_path)
    text = build_report(tmp_path, "demo").read_text()
    assert "val / taping: 18 images **(only 18 images" in text
    assert "Prompt sensitivity on validation" in text and "**0.700**" in text
    assert "val / cracks: 24 images\n" in text


def _with_runtime(tmp_path, capped: bool):
    evaluated = {s: {c: 2 for c in v} for s, v in SPLITS.items()} if capped else SPLITS
    cap = {
        "max_images_per_split_and_class": 2 if capped else None,
        "capped": capped,
        "evaluated": evaluated,
        "available": SPLITS,
    }
    runtime = {"device": "cuda", "gpu": "NVIDIA H200", "precision": "bf16", "num_workers": 8}
    return _metrics(tmp_path, runtime=runtime, peak_memory_mb=5734.4, evaluation_cap=cap)


def test_report_shows_device_gpu_precision_and_peak_memory_per_notebook(tmp_path):
    text = build_report(_with_runtime(tmp_path, capped=False), "full").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| 05_threshold_sweep"))
    for value in ("cuda", "NVIDIA H200", "bf16", "5734"):
        assert value in row
    assert "capped" not in text


def test_report_says_plainly_that_evaluation_was_capped(tmp_path):
    text = build_report(_with_runtime(tmp_path, capped=True), "smoke").read_text()
    note = "**Evaluation was capped** at 2 image(s) per split and class in 05_threshold_sweep"
    assert note in text
    assert text.index("Evaluation was capped") < text.index("## 05")  # before any score


def test_an_unknown_run_is_one_line_and_exit_2(capsys) -> None:
    from helpers.course.course_report import main

    assert main(["--profile", "nosuch-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no run 'nosuch-run' in outputs (") and "\n" not in err
    assert "make run PROFILE=nosuch-run" in err


def test_help_is_complete(capsys) -> None:
    import pytest

    from helpers.course.course_report import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "report.md" in text and "outputs/<run>/html/" in text


def test_every_number_in_the_report_is_a_value_of_the_metrics_files(tmp_path):
    from report_check import unbacked_numbers

    folder = _metrics(tmp_path)
    text = build_report(folder, "demo").read_text()
    assert unbacked_numbers(text, folder) == []
    # the check bites: a number the metrics do not hold is reported
    assert unbacked_numbers(text + "\nmean IoU 0.4567\n", folder) == ["0.4567"]
    assert unbacked_numbers(text + "\nas notebook 05 shows, 123 images\n", folder) == ["123"]


def test_a_metrics_file_off_the_schema_is_named_in_one_line(tmp_path, capsys, monkeypatch):
    folder = _metrics(tmp_path)
    path = folder / "metrics" / "05_threshold_sweep.json"
    m = read_json(path)
    del m["test_iou_at_val_threshold"]
    write_json(path, m)
    with pytest.raises(ResultsError) as err:
        build_report(folder, "demo")
    message = str(err.value)
    assert str(path) in message and "test_iou_at_val_threshold" in message
    assert "\n" not in message and "re-run notebook 05_threshold_sweep" in message

    import helpers.course.course_report as report

    monkeypatch.setattr(report, "OUTPUTS_DIR", tmp_path.parent)
    monkeypatch.setattr(report, "profile_dir", lambda run: tmp_path.parent / run)
    monkeypatch.setattr(report, "export_html", lambda out_dir: [])
    assert report.main(["--profile", tmp_path.name]) == 2
    err_text = capsys.readouterr().err.strip()
    assert err_text.startswith("error: ") and "\n" not in err_text



@pytest.mark.parametrize(
    ("key", "value", "said"),
    [
        ("image_size", "352", "image_size is str, not int"),
        ("postprocess_margin", True, "postprocess_margin is bool, not float"),
        ("split_images", {"val": {"cracks": 2.5}}, "split_images['val']['cracks'] is float"),
        ("per_class", {"cracks": 1}, "per_class is dict, not a list"),
    ],
)
def test_a_value_of_the_wrong_type_is_named_with_its_key(tmp_path, key, value, said):
    folder = _metrics(tmp_path)
    path = folder / "metrics" / "05_threshold_sweep.json"
    m = read_json(path)
    m[key] = value
    write_json(path, m)
    with pytest.raises(ResultsError) as err:
        ThresholdSweep.read(folder)
    message = str(err.value)
    assert str(path) in message and said in message and "\n" not in message


def test_a_notebook_cannot_write_a_value_of_the_wrong_type(tmp_path):
    results = ThresholdSweep.read(_metrics(tmp_path))
    results.postprocess_margin = 0  # an int is a float
    results.write_in(tmp_path / "again")
    results.image_size = 352.0
    with pytest.raises(ResultsError, match="image_size is float, not int"):
        results.write_in(tmp_path / "again")


def test_a_half_written_metrics_file_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    import helpers.course.course_report as report

    folder = _metrics(tmp_path)
    (folder / "metrics" / "05_threshold_sweep.json").write_text('{"profile": "demo", ')
    monkeypatch.setattr(report, "OUTPUTS_DIR", tmp_path.parent)
    monkeypatch.setattr(report, "profile_dir", lambda run: tmp_path.parent / run)
    monkeypatch.setattr(report, "export_html", lambda out_dir: [])
    assert report.main(["--profile", tmp_path.name]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot build the report of '{tmp_path.name}'")
    assert "\n" not in err
