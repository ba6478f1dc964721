"""Notebook hygiene and the runner's parameter contract (no execution; fast)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys

import pytest

from helpers.core.paths import NOTEBOOKS_DIR
from helpers.course import runner as run_notebooks

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


def _runner_refuses(capsys, argv, *words):
    with pytest.raises(SystemExit) as exit_:
        run_notebooks.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_.value.code == 2 and len(err.splitlines()) == 1, err
    for word in words:
        assert word in err, err


def test_runner_refuses_a_device_or_precision_this_machine_lacks_in_one_line(capsys, monkeypatch):
    import torch

    ran = []
    monkeypatch.setattr(run_notebooks, "run", lambda *a, **k: ran.append(a))
    if not torch.cuda.is_available():
        _runner_refuses(capsys, ["--device", "cuda"], "'cuda' is not available", "cpu")
        _runner_refuses(capsys, ["-p", "device=cuda"], "'cuda' is not available")
        _runner_refuses(capsys, ["--precision", "bf16", "--device", "cpu"], "needs a CUDA")
    _runner_refuses(capsys, ["--profile", "nosuch"], "unknown profile 'nosuch'")
    _runner_refuses(capsys, ["-p", "epochs"], "KEY=VALUE")
    assert ran == []  # refused before any notebook ran


def test_runner_names_a_failing_notebook_in_one_line(capsys, monkeypatch, tmp_path):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    def fails(source, target, **kwargs):
        raise PapermillExecutionError(
            cell_index=3, exec_count=4, source="x", ename="ValueError",
            evalue="bad mask in wall.png\nmore", traceback=["..."],
        )

    monkeypatch.setattr(papermill, "execute_notebook", fails)
    monkeypatch.setattr(run_notebooks, "profile_dir", lambda run: tmp_path / run)
    assert run_notebooks.main(["--only", "01", "--device", "cpu"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("error: notebook 01_data_inspection failed in cell 4: ValueError: ")
    assert "bad mask in wall.png" in err and str(tmp_path / "demo" / "executed") in err


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
def test_notebook_ends_by_writing_its_metrics_through_its_schema(name):
    from helpers.course.records import RESULTS

    code = [c for c in _cells(name) if c["cell_type"] == "code"]
    last = "".join(code[-1]["source"])
    assert f"results = {RESULTS[name].__name__}(" in last and "results.write(out_name)" in last
    assert "write_json" not in "".join("".join(c["source"]) for c in code)  # no ad-hoc schema


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
    assert "device=device, precision=precision" in text  # passed into open_course
    assert "course.runtime" in text and "print(rt)" in text
    assert "manifest = course.manifest" in text  # capped evaluation where the profile says so
    metrics = "".join(code[-1]["source"])
    for recorded in ("runtime=rt.describe()", "course.peak_memory_mb()", "course.evaluation_cap()"):
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
    from helpers.core.progress import HEADLESS_ENV, bar

    monkeypatch.delenv(HEADLESS_ENV, raising=False)
    assert not bar(range(3), file=None).disable
    with run_notebooks.inline_figures():
        assert os.environ[HEADLESS_ENV] == "1"
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
        assert bar(range(3)).disable  # nothing drawn that would be stored at "0%"
    assert HEADLESS_ENV not in os.environ


def _course_call(name: str) -> ast.Module:
    """The notebook's `course = open_course(...)` statement, alone."""
    for cell in _cells(name):
        if cell["cell_type"] != "code" or "open_course(" not in "".join(cell["source"]):
            continue
        for node in ast.parse("".join(cell["source"])).body:
            if isinstance(node, ast.Assign) and "open_course(" in ast.unparse(node.value):
                return ast.Module(body=[node], type_ignores=[])
    raise AssertionError(f"{name}: no cell sets itself up with open_course(...)")


def _namespace(name: str, **overrides) -> dict:
    cell = next(c for c in _cells(name) if "parameters" in c.get("metadata", {}).get("tags", []))
    ns: dict = {}
    exec("from helpers.course.session import open_course", ns)
    exec("".join(cell["source"]), ns)
    ns.update(overrides)
    exec(compile(_course_call(name), name, "exec"), ns)
    return ns


# A value for every profile setting a notebook may declare, unlike every profile's own.
OVERRIDES = {
    "cracks_export": "/elsewhere/cracks", "taping_export": "/elsewhere/taping", "seed": 7,
    "model": "some/model", "image_size": 224, "negative_rate": 0.25, "epochs": 3,
    "batch_size": 5, "lora_r": 4, "lora_alpha": 8, "device": "cpu", "precision": "bf16",
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("profile", ["demo", "full", "smoke"])
def test_effective_settings_are_the_profiles_unless_overridden(name, profile):
    """Every profile setting in a parameters cell defaults to None and reaches the profile."""
    from dataclasses import fields

    from helpers.course.profiles import Profile, get_profile

    declared = run_notebooks.notebook_parameter_names(name)
    settings = declared & {f.name for f in fields(Profile)}
    course = _namespace(name, profile=profile)["course"]
    assert course.cfg == get_profile(profile), f"{name}: defaults differ from profile {profile}"
    assert course.out_name == profile and course.overrides == {}
    changed = {k: OVERRIDES[k] for k in settings}
    course = _namespace(name, profile=profile, run_name="elsewhere", **changed)["course"]
    assert {k: getattr(course.cfg, k) for k in settings} == changed, name
    assert course.cfg == get_profile(profile, **changed)
    assert course.out_name == "elsewhere" and course.overrides == changed


def test_a_notebook_that_trains_declares_every_setting_its_model_depends_on():
    """05-07 reuse 04's LoRA run only if the same overrides reach all of them, and 03's
    settings are the ones 04-07 train with."""
    model_settings = {
        "model", "epochs", "batch_size", "lora_r", "lora_alpha", "device", "precision",
        "image_size", "negative_rate",
    }
    for name in NAMES[3:]:
        assert model_settings <= run_notebooks.notebook_parameter_names(name), name
    data_settings = run_notebooks.notebook_parameter_names("03_joint_dataset") - {"n_examples"}
    for name in NAMES[3:]:
        assert data_settings <= run_notebooks.notebook_parameter_names(name), name


@pytest.mark.parametrize("name", NAMES)
def test_every_name_a_notebook_reads_is_imported_or_assigned(name):
    """A name dropped from the imports fails here, not minutes into a headless run."""
    import builtins

    code = "\n".join(
        "".join(c["source"]) for c in _cells(name) if c["cell_type"] == "code"
    )
    tree = ast.parse(code)
    defined = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            defined |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            defined.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.arg):
            defined.add(node.arg)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    assert sorted(used - defined) == [], name


def test_runner_starts_each_kernel_without_a_transport_warning(tmp_path):
    import nbformat

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                       "language": "python"}
    source, target = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(notebook, source)
    code = (  # a fresh process: the kernel writes its warnings to the stderr it inherits
        "import papermill\n"
        "from helpers.course.runner import encrypted_kernel_manager\n"
        "manager = encrypted_kernel_manager()\n"
        f"papermill.execute_notebook({str(source)!r}, {str(target)!r}, progress_bar=False,\n"
        "    **({'kernel_manager_class': manager} if manager else {}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    assert "without encryption" not in done.stderr, done.stderr
    assert "42" in "".join(o.get("text", "") for o in nbformat.read(target, 4).cells[0].outputs)


def test_running_one_notebook_again_keeps_the_others_run_times(tmp_path):
    path = tmp_path / "run_times.json"
    run_notebooks.record_run_times(path, "demo", {"01_a": 4.0, "06_b": 150.0, "total": 154.0})
    run_notebooks.record_run_times(path, "demo", {"06_b": 7.0, "total": 7.0})  # --only 06
    assert json.loads(path.read_text())["seconds"] == {"01_a": 4.0, "06_b": 7.0, "total": 11.0}
    run_notebooks.record_run_times(path, "full", {"01_a": 9.0, "total": 9.0})  # another profile
    assert json.loads(path.read_text())["seconds"] == {"01_a": 9.0, "total": 9.0}
