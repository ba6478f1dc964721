"""A notebook's set-up (`open_course`) and its one recording call (`NotebookResults.record`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from helpers.course.profiles import get_profile
from helpers.course.records import JointDataset, ModelResults, Records, plain
from helpers.course.session import Course, open_course


@pytest.fixture
def quiet_course(monkeypatch):
    """Set-up without resolving exports or a device (what it prints is checked elsewhere)."""
    monkeypatch.setattr(Course, "describe", lambda self: "described")
    monkeypatch.setattr(Course, "runtime", "runtime")


def test_open_course_reads_profile_run_and_settings_from_a_namespace(quiet_course, capsys):
    namespace = {"profile": "full", "run_name": "mine", "epochs": 3, "seed": None,
                 "n_examples": 2, "pd": pd}  # other names, modules included, are ignored
    course = open_course(namespace)
    assert course.cfg == get_profile("full", epochs=3)
    assert course.out_name == "mine" and course.overrides == {"epochs": 3}
    assert capsys.readouterr().out == "described\n"  # no device picked: none was declared
    course = open_course(namespace, epochs=None, device="cpu")  # keywords win
    assert course.cfg == get_profile("full", device="cpu") and course.overrides == {"device": "cpu"}
    assert capsys.readouterr().out == "runtime\ndescribed\n"
    assert open_course().out_name == "demo"


def test_open_course_refuses_a_setting_that_is_not_a_plain_value(quiet_course):
    with pytest.raises(TypeError, match="parameter seed = "):
        open_course({"seed": np})  # e.g. a module imported under a setting's name


def test_plain_stores_pandas_and_numpy_values_as_the_schema_types():
    table = pd.DataFrame({"val": [3, 4], "test": [5, 6]}, index=["cracks", "taping"])
    assert plain(table, Records) == table.to_dict(orient="records")
    by_row = {d: table.loc[d].to_dict() for d in table.index}
    assert plain(table, dict[str, dict[str, int]]) == by_row
    assert plain(table["val"], dict[str, int]) == {"cracks": 3, "taping": 4}
    assert plain({"a": table}, dict[str, Records]) == {"a": table.to_dict(orient="records")}
    assert plain(pd.DataFrame(), Records | None) is None  # nothing measured
    assert plain(pd.DataFrame(), Records) == []
    assert type(plain(np.int64(7), int)) is int and plain(Path("a/b"), str) == "a/b"


@dataclass(kw_only=True)
class Probe(ModelResults):
    NAME: ClassVar[str] = "99_probe"
    epochs: int
    per_class: dict[str, float]


def _course(tmp_path, monkeypatch) -> SimpleNamespace:
    import helpers.core.paths

    monkeypatch.setattr(helpers.core.paths, "profile_dir", lambda run: tmp_path / run)
    monkeypatch.setattr(helpers.core.paths, "PROJECT_ROOT", tmp_path)  # outputs name paths from it
    return SimpleNamespace(
        cfg=get_profile("demo", seed=7, epochs=2), out_name="run",
        sources=SimpleNamespace(name="demo-data"),
        runtime=SimpleNamespace(describe=lambda: {"device": "cpu"}),
        peak_memory_mb=lambda: 12.5, evaluation_cap=lambda: {"capped": False},
    )


def test_record_gathers_what_every_run_shares_and_writes_it(tmp_path, monkeypatch, capsys):
    course = _course(tmp_path, monkeypatch)
    results = Probe.record(course, per_class=pd.Series({"cracks": 0.5, "taping": 0.25}))
    stored = json.loads((tmp_path / "run" / "metrics" / "99_probe.json").read_text())
    assert stored == {
        "profile": "demo", "data": "demo-data", "model": "tiny", "seed": 7,
        "runtime": {"device": "cpu"}, "peak_memory_mb": 12.5, "evaluation_cap": {"capped": False},
        "epochs": 2, "per_class": {"cracks": 0.5, "taping": 0.25},
        "summary_sentences": [],  # no summary is registered for this probe
    }
    assert results == Probe.read(tmp_path / "run")
    # named from the repository root, never as a machine path
    assert capsys.readouterr().out == "wrote run/metrics/99_probe.json\n"
    Probe.record(course, per_class={}, seed=1)  # a value given wins over the course's
    assert Probe.read(tmp_path / "run").seed == 1


def test_record_of_a_notebook_without_a_model_picks_no_device(tmp_path, monkeypatch):
    course = _course(tmp_path, monkeypatch)
    course.runtime = None  # any use would fail
    sizes = pd.DataFrame({"train": [10], "val": [2]}, index=["cracks"])
    JointDataset.record(
        course, split_images=sizes, groups_in_several_splits=np.int64(0), negatives_epoch0=3,
    )
    stored = JointDataset.read(tmp_path / "run")
    assert stored.split_images == {"cracks": {"train": 10, "val": 2}}
    assert (stored.seed, stored.image_size, stored.negative_rate) == (7, 352, 1.0)
