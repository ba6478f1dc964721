"""Metrics files are strict JSON: a missing value is null, never NaN or Infinity."""

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from helpers.core.io import read_json, write_json
from helpers.course.records import NotebookResults, ResultsError


def test_write_json_writes_null_for_nan_and_infinity(tmp_path):
    frame = pd.DataFrame([{"mode": "full", "tower_lr": 1e-5}, {"mode": "lora"}])
    data = {
        "nan": float("nan"),
        "inf": np.float32("inf"),
        "array": np.array([0.5, np.nan]),
        "rows": frame.to_dict("records"),  # pandas fills the missing tower_lr with NaN
        "na": pd.NA,
        "kept": [1, np.int64(2), True, "x", None],
    }
    path = write_json(tmp_path / "m.json", data)
    text = path.read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    # a strict parser (what browsers and most other languages use) accepts the file
    json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(ValueError(name)))
    back = read_json(path)
    assert back["nan"] is None and back["inf"] is None and back["na"] is None
    assert back["array"] == [0.5, None]
    assert back["rows"] == [{"mode": "full", "tower_lr": 1e-5}, {"mode": "lora", "tower_lr": None}]
    assert back["kept"] == [1, 2, True, "x", None]


@dataclass(kw_only=True)
class Measured(NotebookResults):
    NAME: ClassVar[str] = "measured"
    value: float
    per_class: dict[str, float]


def test_a_missing_number_round_trips_as_null_on_disk_and_nan_when_read(tmp_path):
    record = Measured(profile="demo", data="demo", value=float("nan"),
                      per_class={"cracks": 0.5, "taping": float("nan")})
    path = record.write_in(tmp_path)
    assert "NaN" not in path.read_text(encoding="utf-8")
    assert read_json(path)["per_class"]["taping"] is None
    back = Measured.read(tmp_path)
    assert np.isnan(back.value) and np.isnan(back.per_class["taping"])
    assert back.per_class["cracks"] == 0.5
    # null is a missing number, not a licence for other types
    with pytest.raises(ResultsError, match="value is str, not float"):
        Measured.from_dict({"profile": "demo", "data": "demo", "value": "x", "per_class": {}})
