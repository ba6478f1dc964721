"""The course report gathers metrics files into one Markdown file and flags small splits."""

from __future__ import annotations

import pytest

from helpers.io import read_json, write_json
from helpers.report import build_report


def _metrics(tmp_path):
    m = tmp_path / "metrics"
    write_json(
        m / "01_data_inspection.json",
        {
            "profile": "demo",
            "data": "demo",
            "problems": 0,
            "exports": {"cracks": "/x/cracks", "taping": "/x/taping"},
            "summary": [
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
            "leakage": [
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
        },
    )
    write_json(
        m / "05_threshold_sweep.json",
        {
            "profile": "demo",
            "data": "demo",
            "model": "tiny",
            "seed": 42,
            "split_images": {
                "val": {"cracks": 24, "taping": 18},
                "test": {"cracks": 23, "taping": 17},
            },
            "thresholds_chosen_on_val": {"cracks": 0.35, "taping": 0.5},
            "test_iou_at_val_threshold": {"cracks": 0.41, "taping": 0.52},
            "test_iou_if_tuned_on_test": {"cracks": 0.44, "taping": 0.55},
            "inflation_from_tuning_on_test": {"cracks": 0.03, "taping": 0.03},
            "per_class": [{"split": "test", "dataset": "cracks", "images": 23, "iou": 0.41}],
            "per_prompt_test": [
                {"dataset": "cracks", "prompt": "segment crack", "images": 23, "iou": 0.4}
            ],
            "resolution_test": [{"dataset": "cracks", "resolution": "full", "iou": 0.41}],
            "postprocess_ablation": [
                {"dataset": "cracks", "split": "val", "method": "none", "iou": 0.4}
            ],
            "postprocess_chosen_on_val": {"cracks": "none", "taping": "remove_small"},
        },
    )
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


def test_report_without_metrics_says_what_to_do(tmp_path):
    with pytest.raises(FileNotFoundError, match="run the notebooks"):
        build_report(tmp_path, "demo")


def test_report_flags_small_validation_classes_in_the_training_section(tmp_path):
    write_json(
        tmp_path / "metrics" / "04_lora_training.json",
        {
            "profile": "demo",
            "data": "demo",
            "model": "tiny",
            "seed": 42,
            "trainable_parameters": 38912,
            "total_parameters": 714257,
            "best_epoch": 6,
            "epochs_run": 8,
            "train_seconds": 79.0,
            "val_images": 42,
            "val_images_per_class": {"cracks": 24, "taping": 18},
            "val_iou_untrained": {"cracks": 0.17, "taping": 0.03},
            "val_iou_lora": {"cracks": 0.17, "taping": 0.17},
            "prompt_sensitivity_val": {"cracks": 0.6, "taping": 0.8, "all": 0.7},
            "cross_prompt_matrix_val": [
                {"image_class": "cracks", "prompt_class": "taping", "right_prompt": False,
                 "images": 24, "pairs": 120, "iou": 0.05, "foreground_share": 0.004},
            ],
        },
    )
    text = build_report(tmp_path, "demo").read_text()
    assert "val / taping: 18 images **(only 18 images" in text
    assert "Prompt sensitivity on validation" in text and "**0.700**" in text
    assert "val / cracks: 24 images\n" in text


def _with_runtime(tmp_path, capped: bool):
    folder = _metrics(tmp_path)
    path = folder / "metrics" / "05_threshold_sweep.json"
    m = read_json(path)
    m["runtime"] = {"device": "cuda", "gpu": "NVIDIA H200", "precision": "bf16", "num_workers": 8}
    m["peak_memory_mb"] = 5734.4
    available = {"val": {"cracks": 24, "taping": 18}, "test": {"cracks": 23, "taping": 17}}
    evaluated = {s: {c: 2 for c in v} for s, v in available.items()} if capped else available
    m["evaluation_cap"] = {
        "max_images_per_split_and_class": 2 if capped else None,
        "capped": capped,
        "evaluated": evaluated,
        "available": available,
    }
    write_json(path, m)
    return folder


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
    from helpers.report import main

    assert main(["--profile", "nosuch-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: no run 'nosuch-run'") and "\n" not in err
    assert "make run PROFILE=nosuch-run" in err


def test_help_is_complete(capsys) -> None:
    import pytest

    from helpers.report import main

    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "report.md" in text and "outputs/<run>/html/" in text
