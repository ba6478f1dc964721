"""Notebook hygiene and the runner's parameter contract (no execution; fast)."""

from __future__ import annotations

import ast
import json
import os

import pytest

from helpers import run_notebooks
from helpers.paths import NOTEBOOKS_DIR

NAMES = run_notebooks.available_notebooks()


def _cells(name: str) -> list[dict]:
    return json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]


def test_course_notebooks_are_present_in_order():
    assert NAMES[:3] == ["01_data_inspection", "02_mask_rendering", "03_joint_dataset"]
    assert NAMES == [n for n in run_notebooks.NOTEBOOKS if n in NAMES]


@pytest.mark.parametrize("name", NAMES)
def test_one_parameters_cell_of_plain_literals(name):
    cells = [c for c in _cells(name) if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, f"{name}: expected exactly one cell tagged 'parameters'"
    tree = ast.parse("".join(cells[0]["source"]))
    for node in tree.body:
        assert isinstance(node, ast.Assign), f"{name}: parameters cell may only assign values"
        ast.literal_eval(node.value)  # raises if a value is not a plain literal


@pytest.mark.parametrize("name", NAMES)
def test_papermill_sees_every_parameter(name):
    """papermill silently skips a parameter line it cannot parse (e.g. '=' in its comment)."""
    cell = next(c for c in _cells(name) if "parameters" in c.get("metadata", {}).get("tags", []))
    assigned = {t.id for node in ast.parse("".join(cell["source"])).body for t in node.targets}
    assert run_notebooks.notebook_parameter_names(name) == assigned


@pytest.mark.parametrize("name", NAMES)
def test_runner_injects_only_declared_parameters(name):
    declared = run_notebooks.notebook_parameter_names(name)
    injected = run_notebooks.injected_parameters("demo", {})
    assert set(injected) <= declared
    # the data parameters used for real exports exist in every notebook
    assert {"profile", "cracks_export", "taping_export", "seed", "run_name"} <= declared


def test_runner_refuses_an_unknown_parameter():
    with pytest.raises(SystemExit, match="epochs_typo"):
        run_notebooks.check_parameters(NAMES, {"profile": "demo", "epochs_typo": 3})


def test_runner_passes_each_notebook_only_what_it_declares():
    params = {"profile": "demo", "n_examples": 2, "model": "tiny"}
    run_notebooks.check_parameters(NAMES, params)  # every name is declared somewhere
    for name in NAMES:
        passed = run_notebooks.parameters_for(name, params)
        assert set(passed) <= run_notebooks.notebook_parameter_names(name)
        assert passed["profile"] == "demo"


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_do_not_edit_sys_path_or_install(name):
    text = "".join("".join(c["source"]) for c in _cells(name) if c["cell_type"] == "code")
    assert "sys.path" not in text
    assert "pip install" not in text


@pytest.mark.parametrize("name", NAMES)
def test_notebook_ends_by_writing_its_metrics(name):
    code = [c for c in _cells(name) if c["cell_type"] == "code"]
    assert f'"{name}.json"' in "".join(code[-1]["source"])


def test_parse_value_reads_literals_and_strings():
    assert run_notebooks.parse_value("3") == 3
    assert run_notebooks.parse_value("0.5") == 0.5
    assert run_notebooks.parse_value("../shared/data") == "../shared/data"
    assert run_notebooks.parse_value("'tiny'") == "tiny"


MODEL_NOTEBOOKS = [n for n in NAMES if n[:2] in {"04", "05", "06", "07"}]


@pytest.mark.parametrize("name", MODEL_NOTEBOOKS)
def test_model_notebooks_take_device_and_precision_and_record_the_runtime(name):
    cell = next(c for c in _cells(name) if "parameters" in c.get("metadata", {}).get("tags", []))
    lines = {
        line.split("=")[0].strip(): line
        for line in "".join(cell["source"]).splitlines()
        if "=" in line
    }
    for key in ("device", "precision"):
        assert key in run_notebooks.notebook_parameter_names(name), f"{name}: no {key}"
        assert "#" in lines[key], f"{name}: {key} needs a comment"
    code = [c for c in _cells(name) if c["cell_type"] == "code"]
    text = "".join("".join(c["source"]) for c in code)
    assert "device=device, precision=precision" in text  # passed into get_profile
    assert "get_runtime(cfg.device, cfg.precision, cfg.num_workers)" in text
    assert "print(rt)" in text
    assert "evaluation_manifest(" in text
    metrics = "".join(code[-1]["source"])
    for recorded in ('"runtime": rt.describe()', "peak_memory_mb(rt.device)", "evaluation_cap("):
        assert recorded in metrics, f"{name}: metrics lack {recorded}"


def test_runner_kernels_draw_inline_whatever_the_caller_exported(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    with run_notebooks.inline_figures():
        assert os.environ["MPLBACKEND"] == run_notebooks.INLINE_BACKEND
    assert os.environ["MPLBACKEND"] == "Agg"
    monkeypatch.delenv("MPLBACKEND")
    with run_notebooks.inline_figures():
        pass
    assert "MPLBACKEND" not in os.environ


def test_runner_kernels_store_no_frozen_progress_bars(monkeypatch, capsys):
    from helpers.progress import HEADLESS_ENV, bar

    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    assert not bar(range(3), file=None).disable
    with run_notebooks.inline_figures():
        assert os.environ[HEADLESS_ENV] == "1"
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
        assert bar(range(3)).disable  # nothing drawn that would be stored at "0%"
    assert HEADLESS_ENV not in os.environ
