"""Notebook 06's comparison with the zero-shot model: its row, strict JSON, the report section
and the summary, each written from the recorded numbers."""

from __future__ import annotations

import json
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from helpers.course.comparison import (  # noqa: E402
    blind_reading,
    long_localisation,
    mode_comparison,
    readable,
    sensitivity_readings,
)
from helpers.course.course_report import build_report  # noqa: E402
from helpers.course.evaluation_figures import modes_figure  # noqa: E402
from helpers.course.records import ModeComparison  # noqa: E402
from helpers.course.summaries import run_summary  # noqa: E402
from helpers.course.zero_shot import ZeroShotModel  # noqa: E402

RUNTIME = {"device": "cpu", "gpu": None, "precision": "fp32", "num_workers": 0}
SPLITS = {"test": {"cracks": 12, "taping": 9}}
PHOTOS = {"test": {"cracks": 8, "taping": 7}}


class Trained:
    """The attributes of a `helpers.course.runs.TrainedModel` that the comparison reads."""

    def __init__(self, mode, trainable, folder):
        self.mode, self.checkpoint = mode, folder
        self.log = pd.DataFrame({"seconds": [2.0, 4.0], "peak_mem_mb": [10.0, 30.0]})
        self.info = {"parameters": {"trainable": trainable}, "best_epoch": 2,
                     "train_config": {"lr": 1e-3, "tower_lr": None}}


def _per_class() -> pd.DataFrame:
    return pd.DataFrame([
        {"split": s, "dataset": d, "mode": m, "iou": 0.1 + 0.2 * i, "dice": 0.2}
        for i, m in enumerate(["none", "lora"]) for s in ("val", "test")
        for d in ("cracks", "taping")
    ])


def test_the_zero_shot_row_stores_nothing_and_trains_nothing(tmp_path):
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "adapter.bin").write_bytes(b"x" * 2_000_000)
    none = ZeroShotModel(model=None, processor=None,
                         info={"parameters": {"trainable": 0}, "best_epoch": None,
                               "train_config": {"lr": None, "tower_lr": None}, "base_model": "t"})
    runs = {"none": none, "lora": Trained("lora", 5000, tmp_path / "best")}
    table = mode_comparison(runs, _per_class(), cuda=True)
    assert list(table.index) == ["none", "lora"]
    assert table.loc["none", "checkpoint_mb"] == 0.0  # the run's own figure, not a folder's
    assert table.loc["lora", "checkpoint_mb"] == pytest.approx(2.0, abs=0.01)
    assert pd.isna(table.loc["none", "seconds_per_epoch"]) and pd.isna(table.loc["none", "lr"])
    assert table.loc["lora", "seconds_per_epoch"] == 3.0
    assert table.loc["lora", "peak_memory_mb"] == 30.0
    assert table.loc["lora", "test_iou_taping"] == pytest.approx(0.3)
    assert table.loc["lora", "best_epoch"] == 2 and isinstance(table.loc["lora", "best_epoch"], int)


def _results(**changes) -> ModeComparison:
    comparison = [
        {"mode": "none", "trainable_parameters": 0, "lr": None, "checkpoint_mb": 0.0,
         "seconds_per_epoch": float("nan"), "best_epoch": None, "test_iou_cracks": 0.1,
         "test_iou_taping": 0.2},
        {"mode": "lora", "trainable_parameters": 5000, "lr": 0.001, "checkpoint_mb": 2.0,
         "seconds_per_epoch": 3.0, "best_epoch": 2, "test_iou_cracks": 0.5,
         "test_iou_taping": 0.25},
    ]
    boot = [
        {"mode": m, "dataset": d, "photos": PHOTOS["test"][d], "pairs": 40, "iou": iou,
         "iou_low": iou - 0.05, "iou_high": iou + 0.05, "level": 0.9, "diff": diff,
         "diff_low": low, "diff_high": high}
        for m, d, iou, diff, low, high in [
            ("none", "cracks", 0.1, 0.0, 0.0, 0.0), ("none", "taping", 0.2, 0.0, 0.0, 0.0),
            ("lora", "cracks", 0.5, 0.4, 0.3, 0.5), ("lora", "taping", 0.25, 0.05, -0.02, 0.1),
        ]
    ]
    values = dict(
        profile="demo", data="demo", model="tiny", seed=42, runtime=RUNTIME,
        peak_memory_mb=100.0, evaluation_cap={"capped": False}, epochs=8, split_images=SPLITS,
        split_photos=PHOTOS, thresholds_chosen_on="val",
        thresholds={"none": {"cracks": 0.3, "taping": 0.5}, "lora": {"cracks": 0.4,
                                                                      "taping": 0.45}},
        comparison=comparison, per_class=[], per_prompt_test=[],
        prompt_sensitivity_test={"none": {"cracks": 0.01, "taping": 0.02, "all": 0.015},
                                 "lora": {"cracks": 0.6, "taping": 0.7, "all": 0.65}},
        cross_prompt_matrix_test={}, test_iou_photo_bootstrap=boot, bootstrap_reference="none",
        wrong_prompt_localisation=[{"mode": "none", "cracks": float("nan"), "taping": 0.5,
                                    "all": 0.5}],
        held_out_readings=["lora: held-out phrasings score mean test IoU cracks 0.5 against 0.5."],
    )
    values.update(changes)
    return ModeComparison(**values)


def test_a_missing_value_is_null_on_disk_and_not_a_value_to_check(tmp_path):
    path = _results().write_in(tmp_path)

    def refuse(token):
        raise AssertionError(f"{token} in strict JSON")

    data = json.loads(path.read_text(), parse_constant=refuse)
    assert data["comparison"][0]["seconds_per_epoch"] is None
    assert data["wrong_prompt_localisation"][0]["cracks"] is None
    text = build_report(tmp_path, "demo").read_text()
    assert "Values to check" not in text
    assert "Mode none is the base model untrained (zero-shot)" in text
    assert "diff is a mode's mean minus the zero-shot model's (none)" in text
    assert "each mode was trained once (seed 42)" in text


def test_the_summary_judges_each_gain_by_its_interval_and_names_photos_and_seed():
    lines = run_summary(_results())
    lora = next(s for s in lines if s.startswith("lora:"))
    assert "5,000 trainable parameters" in lora
    assert "cracks 0.500 [0.450, 0.550]" in lora
    assert "cracks +0.400 [+0.300, +0.500] above over 8 photos" in lora
    assert "taping +0.050 [-0.020, +0.100] not resolved over 7 photos" in lora
    assert any("trained once (seed 42)" in s for s in lines)
    assert lines[-1].startswith("lora: held-out phrasings")


def test_sensitivity_readings_state_their_cut_offs():
    forms = pd.DataFrame(
        {"cracks": [0.6, 0.2, 0.5, 0.1, 0.05], "taping": [0.6, 0.2, 0.5, 0.1, 0.05],
         "all": [0.6, 0.2, 0.5, 0.1, 0.05], "images": [8, 10, 10, 10, 8]},
        index=pd.Index(["labelled", "all", "deployed", "deployed_blind", "on_object"],
                       name="form"))
    (line,) = sensitivity_readings({"lora": forms}, {"lora": {"all": 0.8}})
    assert "sensitivity 0.600 on labelled images (prompt-aware" in line
    assert "0.500 against 0.100 for a prompt-blind copy" in line
    assert "separates the masks beyond what the thresholds do" in line
    assert "at least 0.1 above it" in line
    assert "80% of the wrong prompts' pixels lie on the image's label" in line
    assert "finds the object whatever it is asked; cut-off 50%" in line
    (split,) = sensitivity_readings({"lora": forms},
                                    {"lora": {"cracks": 0.09, "taping": 0.9, "all": 0.2}})
    assert ("of the wrong prompts' pixels, on crack images 9% lie on the image's label (mostly "
            "off the object); on taping images 90% lie on the image's label (it finds the object "
            "whatever it is asked) (cut-off 50%)") in split  # a pooled share hides a class
    matrix = pd.DataFrame([
        {"image_class": "cracks", "prompt_class": "cracks", "right_prompt": True,
         "foreground_share": 0.0226},
        {"image_class": "cracks", "prompt_class": "taping", "right_prompt": False,
         "foreground_share": 0.0215},
        {"image_class": "taping", "prompt_class": "taping", "right_prompt": True,
         "foreground_share": 0.2},
        {"image_class": "taping", "prompt_class": "cracks", "right_prompt": False,
         "foreground_share": 0.001},
    ])
    (ratio,) = sensitivity_readings({"lora": forms}, {"lora": {"all": 0.8}}, {"lora": matrix})
    assert ("By mean foreground share, the wrong prompt marks on crack images 0.951 times as "
            "much (nearly as much or more); on taping images 0.005 times as much (almost "
            "nothing) as the right one") in ratio  # prompt-aware by s, yet not on crack images
    (little,) = sensitivity_readings({"lora": forms}, {"lora": {"taping": 0.9, "all": 0.9}},
                                     {"lora": matrix})
    assert ("on taping images 90% lie on the image's label (the little it marks is the "
            "object") in little
    (quiet,) = sensitivity_readings({"lora": forms}, {"lora": {"all": math.nan}})
    assert "the wrong prompts mark nothing" in quiet


def test_the_modes_figure_starts_at_zero_and_labels_its_log_axis():
    boot = pd.DataFrame(_results().test_iou_photo_bootstrap)
    comparison = pd.DataFrame(_results().comparison).set_index("mode")
    fig = modes_figure(boot, comparison, reference="none", resamples=2000)
    bars, scatter = fig.axes
    assert bars.get_ylim()[0] == 0 and scatter.get_ylim()[0] == 0
    assert "test split" in bars.get_title() and "validation" in bars.get_title()
    assert "2000 photo resamples" in bars.get_title()
    fig.canvas.draw()
    labels = [t.get_text() for t in scatter.get_xticklabels() if t.get_text()]
    assert scatter.get_xscale() == "log" and "1k" in labels and "10k" in labels
    assert "none (zero-shot, 0 trainable): 0.150" in scatter.get_legend().get_texts()[0].get_text()
    plt.close(fig)


def test_a_prompt_blind_model_is_explained_by_what_its_text_tower_separates():
    same = blind_reading("decoder", -0.001, {"within": 0.93, "across": 0.95})
    assert "decoder is prompt-blind (sensitivity -0.0010, within 0.1 of 0)" in same
    assert "as close (cosine 0.950) as prompts of the same class (0.930)" in same
    assert same.endswith("frozen in this mode, so training cannot change that.")
    apart = blind_reading("lora", 0.02, {"within": 0.9, "across": 0.5})
    assert "does separate the classes (cosine 0.500 across, 0.900 within)" in apart
    assert "decoder that does not use the difference" in apart


def test_a_figure_near_zero_reads_as_prompt_blind_either_side():
    from helpers.evaluate.sensitivity import describe_sensitivity

    assert describe_sensitivity(-0.001).startswith("prompt-blind")
    assert describe_sensitivity(-0.2).startswith("inverted")
    assert describe_sensitivity(0.3).startswith("partly prompt-aware")


def test_a_share_the_wrong_prompts_never_had_is_written_as_words_not_nan():
    table = long_localisation({"lora": {"cracks": 0.12345, "taping": math.nan, "all": 0.1}})
    shown = readable(table.set_index("mode"), missing="nothing marked")
    assert shown.loc["lora", "cracks"] == 0.123 and shown.loc["lora", "taping"] == "nothing marked"
    assert "NaN" not in shown.to_string() and "nan" not in shown.to_html()
