"""The smoke profile: every notebook on the full-size architecture (random weights) and the real
exports, a few training steps and a few evaluated images (what `make smoke` runs).

It proves the full profile's code path at full size; its scores mean nothing. Skipped with the
reason where the real exports are absent.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from helpers.core.io import read_json
from helpers.core.paths import SHARED_ROBOFLOW_DIR, metrics_dir, profile_dir
from helpers.core.runtime import get_runtime
from helpers.course import runner as run_notebooks
from helpers.course.course_report import build_report
from helpers.course.profiles import PROFILES

pytestmark = [pytest.mark.slow, pytest.mark.notebook, pytest.mark.realdata]
RUN = "test-smoke-profile"
MODEL_NOTEBOOKS = ["04_lora_training", "05_threshold_sweep", "06_full_vs_lora",
                   "07_failure_analysis"]


@pytest.fixture(scope="module")
def smoke() -> dict[str, dict]:
    profile = PROFILES["smoke"]
    for export in (profile.cracks_export, profile.taping_export):
        if not Path(export).is_dir():
            pytest.skip(f"real Roboflow export not found at {export} (under {SHARED_ROBOFLOW_DIR})")
    shutil.rmtree(profile_dir(RUN), ignore_errors=True)  # train and evaluate afresh
    names = run_notebooks.available_notebooks()
    run_notebooks.run("smoke", names, {"run_name": RUN})
    return {
        name: read_json(path)
        for name in names
        if (path := metrics_dir(RUN) / f"{name}.json").is_file()
    }


def test_every_notebook_writes_its_metrics(smoke):
    assert set(smoke) == set(run_notebooks.available_notebooks())
    for name in MODEL_NOTEBOOKS:
        assert smoke[name]["model"] == "full-size-random", name
        assert smoke[name]["data"].startswith("custom-"), name  # the real exports


def test_model_notebooks_record_the_runtime_they_ran_with(smoke):
    expected = get_runtime("auto", "auto")
    for name in MODEL_NOTEBOOKS:
        rt = smoke[name]["runtime"]
        assert (rt["device"], rt["precision"]) == (expected.device.type, expected.precision), name
        assert smoke[name]["peak_memory_mb"] > 0, name


def test_evaluation_is_capped_and_recorded_as_such(smoke):
    cap = PROFILES["smoke"].eval_max_images
    for name in MODEL_NOTEBOOKS:
        info = smoke[name]["evaluation_cap"]
        assert info["max_images_per_split_and_class"] == cap and info["capped"], name
        for split in ("val", "test"):
            assert set(info["evaluated"][split]) == {"cracks", "taping"}, name
            assert all(0 < n <= cap for n in info["evaluated"][split].values()), name
    assert smoke["05_threshold_sweep"]["split_images"] == smoke["04_lora_training"][
        "evaluation_cap"
    ]["evaluated"]
    text = build_report(profile_dir(RUN), RUN).read_text()
    assert "**Evaluation was capped**" in text
    from report_check import unbacked_numbers

    assert unbacked_numbers(text, profile_dir(RUN)) == []  # every number from the metrics files


def test_data_notebooks_show_the_real_exports_leakage_and_a_leak_free_split(smoke):
    leak = {(r["dataset"], r["split_a"], r["split_b"]): r for r in
            smoke["01_data_inspection"]["leakage"]}
    assert leak[("taping", "train", "valid")]["n_shared"] == 82
    assert leak[("taping", "train", "valid")]["n_b"] == 86
    joint = smoke["03_joint_dataset"]
    assert joint["groups_in_several_splits"] == 0
    assert all(r["n_shared"] == 0 for r in joint["split_leakage"])
    assert smoke["02_mask_rendering"]["images"] == {"cracks": 205, "taping": 1022}


def test_decoder_mode_trains_exactly_the_full_size_decoder(smoke):
    rows = {r["mode"]: r for r in smoke["06_full_vs_lora"]["comparison"]}
    assert rows["decoder"]["trainable_parameters"] == 1_127_009  # the real checkpoint's decoder
    assert rows["lora"]["trainable_parameters"] < rows["decoder"]["trainable_parameters"]
    assert rows["full"]["trainable_parameters"] > 100_000_000


def test_executed_notebooks_hold_their_figures(smoke):
    import nbformat

    for name in MODEL_NOTEBOOKS:
        nb = nbformat.read(profile_dir(RUN) / "executed" / f"{name}.ipynb", as_version=4)
        outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
        assert any("image/png" in o.get("data", {}) for o in outputs), name
