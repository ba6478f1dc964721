"""Notebooks 01-03 run unchanged on the real Roboflow exports and show the real leakage."""

from __future__ import annotations

import pytest

from helpers.core.io import read_json
from helpers.core.paths import metrics_dir
from helpers.course import runner as run_notebooks

pytestmark = [pytest.mark.realdata, pytest.mark.notebook, pytest.mark.slow]


def test_notebooks_01_to_03_on_real_exports(shared_roboflow, real_processor_dir):
    params = {
        "model": str(real_processor_dir),  # the checkpoint's real processor (no weights needed)
        "cracks_export": str(shared_roboflow / "cracks.v1i.coco"),
        "taping_export": str(shared_roboflow / "drywall-join-detect.v2i.coco"),
        "run_name": "test-real",
        "n_examples": 2,
    }
    names = run_notebooks.select(["01", "02", "03"])
    run_notebooks.run("full", names, params)
    inspection = read_json(metrics_dir("test-real") / "01_data_inspection.json")
    leak = {(r["dataset"], r["split_a"], r["split_b"]): r for r in inspection["leakage"]}
    assert leak[("taping", "train", "valid")]["n_shared"] == 82
    assert leak[("taping", "train", "valid")]["n_b"] == 86
    joint = read_json(metrics_dir("test-real") / "03_joint_dataset.json")
    assert joint["groups_in_several_splits"] == 0
    assert all(r["n_shared"] == 0 for r in joint["split_leakage"])
    images = read_json(metrics_dir("test-real") / "02_mask_rendering.json")["images"]
    assert images == {"cracks": 205, "taping": 1022}
