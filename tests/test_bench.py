"""`helpers.bench --quick` runs end to end and writes every documented key (not a timing
test)."""

from __future__ import annotations

import json
import math

import pytest

import helpers.course.benchmarks as bench

pytestmark = pytest.mark.slow


def test_quick_bench_writes_every_key(tmp_path, monkeypatch, capsys):
    # the real --quick path on a smaller workload: the keys, not the speed, are under test
    small = bench.BenchSize(batch_size=2, train_steps=2, eval_images=4, predict_images=4,
                            repeats=1)
    monkeypatch.setattr(bench, "QUICK", small)
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    for key in bench.JSON_KEYS:
        value = bench.lookup(result, key)
        if key in ("device", "precision"):
            assert value == {"device": "cpu", "precision": "fp32"}[key]
        else:
            assert isinstance(value, float) and math.isfinite(value) and value > 0, key
    captured = capsys.readouterr()
    assert "train lora (items/s)" in captured.out and "5 prompts cost" in captured.out
    assert "Loading weights" not in captured.err  # the libraries' bars stay off in a CLI


def test_a_device_that_is_not_there_is_one_line_and_exit_2(capsys):
    if "cuda" in bench.get_runtime("auto").device.type:
        pytest.skip("this machine has CUDA")
    assert bench.main(["--quick", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: device 'cuda' is not available") and "\n" not in err


def test_full_size_needs_both_exports(capsys):
    assert bench.main(["--full-size", "--device", "cpu"]) == 2
    assert "--cracks PATH and --taping PATH" in capsys.readouterr().err
