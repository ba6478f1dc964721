"""Metrics files are strict JSON: a missing value is null, never NaN or Infinity."""

import json

import numpy as np
import pandas as pd

from helpers.core.io import read_json, write_json


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
