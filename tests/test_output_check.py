"""The scan of what a run leaves for a student finds machine paths, NaN and object reprs."""

from __future__ import annotations

import json

import pytest

from helpers.core.paths import PROJECT_ROOT
from helpers.course.output_check import scan_outputs


def _notebook(outputs: list[dict], source: str = "x = 1") -> str:
    cell = {"cell_type": "code", "source": [source], "metadata": {}, "outputs": outputs,
            "execution_count": 1}
    return json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def run(tmp_path):
    (tmp_path / "metrics").mkdir()
    (tmp_path / "executed").mkdir()
    (tmp_path / "models" / "lora" / "best").mkdir(parents=True)
    (tmp_path / "metrics" / "05.json").write_text('{"iou": 0.5, "path": "outputs/demo/x"}')
    (tmp_path / "report.md").write_text("| class | IoU |\n|---|---|\n| cracks | 0.41 |\n")
    printed = {"output_type": "stream", "name": "stdout", "text": ["IoU 0.41 (info)\n"]}
    code = 'float("nan") if empty else np.nan'  # code may name NaN; only outputs are read
    (tmp_path / "executed" / "04.ipynb").write_text(_notebook([printed], code))
    return tmp_path


def test_a_clean_run_has_no_findings(run):
    assert scan_outputs(run) == []


@pytest.mark.parametrize("where, text, found", [
    ("metrics/06.json", '{"iou": NaN}', ["NaN in JSON"]),
    ("models/lora/best/adapter_config.json", json.dumps({"base": str(PROJECT_ROOT / "m")}),
     [f"absolute path '{PROJECT_ROOT}'"]),
    ("models/lora/best/README.md", "base_model: /home/ana/models/tiny",
     ["absolute path '/home/ana/models/tiny'"]),
    ("report.md", "| cracks | nan |", ["printed 'nan' where a number belongs"]),
    ("html/04.html", "<pre>&lt;torch._C.Generator object at 0x7f70a9d2&gt;</pre><p>/tmp/x/y</p>",
     ["absolute path '/tmp/x/y'", "object repr '&lt;torch._C.Generator object at 0x7f70a9d2&gt;'"]),
])
def test_each_kind_of_finding_names_its_file(run, where, text, found):
    path = run / where
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    findings = scan_outputs(run)
    assert [f.split(" (")[0] for f in findings] == [f"{where}: {what}" for what in found]


def test_printed_outputs_are_read_but_not_embedded_images(run):
    shown = {"output_type": "execute_result", "execution_count": 1,
             "data": {"text/plain": ["<Generator object at 0x7f7009d92990>"],
                      "image/png": "iVBORnaNInfinity/home/x"}, "metadata": {}}
    (run / "executed" / "04.ipynb").write_text(_notebook([shown]))
    assert scan_outputs(run) == [
        "executed/04.ipynb: object repr '<Generator object at 0x7f7009d92990>' (1 in all)"
    ]
