"""Notebook hygiene and the runner's parameter contract (no execution; fast)."""

from __future__ import annotations

import ast
import json
import os
import re
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
    # every notebook reads the exports, so each can be pointed at real ones
    assert {"profile", "cracks_export", "taping_export", "run_name"} <= declared


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
def test_notebook_ends_by_recording_its_results_through_its_schema(name):
    from helpers.course.records import RESULTS

    code = [c for c in _cells(name) if c["cell_type"] == "code"]
    calls = [
        node for node in ast.walk(ast.parse("".join(code[-1]["source"])))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
        and node.func.attr == "record" and isinstance(node.func.value, ast.Name)
    ]
    assert [c.func.value.id for c in calls] == [RESULTS[name].__name__], name
    assert isinstance(calls[0].args[0], ast.Name) and calls[0].args[0].id == "course"
    assert "write_json" not in "".join("".join(c["source"]) for c in code)  # no ad-hoc schema


def test_parse_value_reads_literals_and_strings():
    assert run_notebooks.parse_value("3") == 3
    assert run_notebooks.parse_value("0.5") == 0.5
    assert run_notebooks.parse_value("../shared/data") == "../shared/data"
    assert run_notebooks.parse_value("'tiny'") == "tiny"


MODEL_NOTEBOOKS = [n for n in NAMES if n[:2] in {"04", "05", "06", "07"}]


@pytest.mark.parametrize("name", MODEL_NOTEBOOKS)
def test_model_notebooks_take_device_and_precision_and_print_the_runtime(name, capsys):
    cell = next(c for c in _cells(name) if "parameters" in c.get("metadata", {}).get("tags", []))
    comments = {
        line.split("=")[0].strip(): "#" in line for line in "".join(cell["source"]).splitlines()
    }
    for key in ("device", "precision"):
        assert key in run_notebooks.notebook_parameter_names(name), f"{name}: no {key}"
        assert comments[key], f"{name}: {key} needs a comment"
    ns = _namespace(name, device="cpu", precision="fp32", with_unpacking=True)
    course = ns["course"]
    assert (course.cfg.device, course.cfg.precision) == ("cpu", "fp32")
    printed = capsys.readouterr().out
    assert str(course.runtime) in printed and course.describe() in printed
    assert ns["manifest"] is course.manifest  # val/test capped where the profile says so


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


def _course_call(name: str, with_unpacking: bool = False) -> ast.Module:
    """The notebook's `course = open_course(...)` statement, alone or with the statements after
    it that unpack what it returned (`cfg, manifest = course.cfg, course.manifest`)."""
    for cell in _cells(name):
        if cell["cell_type"] != "code" or "open_course(" not in "".join(cell["source"]):
            continue
        body = ast.parse("".join(cell["source"])).body
        for i, node in enumerate(body):
            if isinstance(node, ast.Assign) and "open_course(" in ast.unparse(node.value):
                chosen, bound = [node], _binds(node)
                for later in body[i + 1:] if with_unpacking else []:
                    if not (isinstance(later, ast.Assign) and _only_unpacks(later, bound)):
                        break
                    chosen.append(later)
                    bound |= _binds(later)
                return ast.Module(body=chosen, type_ignores=[])
    raise AssertionError(f"{name}: no cell sets itself up with open_course(...)")


def _namespace(name: str, with_unpacking: bool = False, **overrides) -> dict:
    cell = next(c for c in _cells(name) if "parameters" in c.get("metadata", {}).get("tags", []))
    ns: dict = {}
    exec("from helpers.course.session import open_course", ns)
    exec("".join(cell["source"]), ns)
    ns.update(overrides)
    exec(compile(_course_call(name, with_unpacking), name, "exec"), ns)
    return ns


# A value for every profile setting a notebook may declare, unlike every profile's own.
OVERRIDES = {
    "cracks_export": "/elsewhere/cracks", "taping_export": "/elsewhere/taping", "seed": 7,
    "model": "some/model", "image_size": 224, "negative_rate": 0.25, "epochs": 3,
    "batch_size": 5, "lora_r": 4, "lora_alpha": 8, "device": "cpu", "precision": "bf16",
}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("profile", ["demo", "full", "smoke"])
def test_effective_settings_are_the_profiles_unless_overridden(name, profile, monkeypatch):
    """Every profile setting in a parameters cell defaults to None and reaches the profile."""
    from dataclasses import fields

    from helpers.course.profiles import Profile, get_profile
    from helpers.course.session import Course

    # the settings are compared without their exports or device (some are not on this machine)
    monkeypatch.setattr(Course, "describe", lambda self: "")
    monkeypatch.setattr(Course, "runtime", "not resolved")

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
    defined = set(dir(builtins)) | {"display"}  # IPython's, in every kernel
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


# -- bookkeeping: how much of a notebook's code only sets up or records ----------------------
#
# A code line is a non-blank line of a code cell that is not only a comment. A bookkeeping
# line is a code line of
#   - an import statement;
#   - the `parameters` cell;
#   - set-up: the statement that calls `open_course`, and the statements after it that only
#     unpack attributes of what it returned (`cfg, rt = course.cfg, course.runtime`) or print
#     them;
#   - recording results: every statement that names the notebook's results class
#     (`helpers.course.records.RESULTS`), and the statements that only pass on what those
#     bound (`path = results.write(out_name)`, `print("wrote", path)`).
# Every other code line (computing, plotting, showing) is the notebook's work.

BOOKKEEPING_LIMIT = 0.30
BUILTINS = set(dir(__import__("builtins")))


def _code_lines(source: str, start: int = 1, end: int | None = None) -> int:
    lines = source.splitlines()[start - 1:end]
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


def _binds(node: ast.AST) -> set[str]:
    names = (n for n in ast.walk(node) if isinstance(n, ast.Name))
    return {n.id for n in names if isinstance(n.ctx, ast.Store)}


def _only_unpacks(node: ast.stmt, bound: set[str]) -> bool:
    """An assignment of attributes of set-up names, or a print of set-up names."""
    if isinstance(node, ast.Assign):
        values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
        return all(
            isinstance(v, ast.Attribute) and isinstance(v.value, ast.Name) and v.value.id in bound
            for v in values
        )
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        call, args = node.value, [*node.value.args, *(k.value for k in node.value.keywords)]
        return (
            isinstance(call.func, ast.Name) and call.func.id == "print"
            and not any(isinstance(n, ast.Call) for a in args for n in ast.walk(a))
            and bool(_loads(call) - {"print"}) and _loads(call) - {"print"} <= bound
        )
    return False


def bookkeeping(name: str) -> dict[str, int | float]:
    """Code lines of notebook `name` by kind of bookkeeping (see above), and their share."""
    from helpers.course.records import RESULTS

    counts = {"code": 0, "imports": 0, "parameters": 0, "setup": 0, "recording": 0}
    setup: set[str] = set()
    recording: set[str] = {RESULTS[name].__name__}
    for cell in _cells(name):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        counts["code"] += _code_lines(source)
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            counts["parameters"] += _code_lines(source)
            continue
        for node in ast.parse(source).body:
            lines = _code_lines(source, node.lineno, node.end_lineno)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                counts["imports"] += lines
            elif "open_course" in _loads(node) or setup and _only_unpacks(node, setup):
                counts["setup"] += lines
                setup |= _binds(node)
            elif RESULTS[name].__name__ in _loads(node) or (
                _loads(node) & recording and _loads(node) <= recording | setup | BUILTINS
            ):
                counts["recording"] += lines
                recording |= _binds(node)
    kept = counts["imports"] + counts["parameters"] + counts["setup"] + counts["recording"]
    return {**counts, "bookkeeping": kept, "share": round(kept / counts["code"], 3)}


def bookkeeping_table() -> str:
    """Every notebook's bookkeeping, one row each (print it to report it)."""
    import pandas as pd

    return pd.DataFrame.from_dict({n: bookkeeping(n) for n in NAMES}, orient="index").to_string()


def test_bookkeeping_is_at_most_30_percent_of_each_notebook():
    print("\n" + bookkeeping_table())
    shares = {n: bookkeeping(n)["share"] for n in NAMES}
    over = {n: share for n, share in shares.items() if share > BOOKKEEPING_LIMIT}
    assert over == {}, f"bookkeeping above {BOOKKEEPING_LIMIT:.0%} of the code lines: {over}"


# -- every parameter is used ----------------------------------------------------------------
#
# A parameter is used when the notebook's code (outside the parameters cell) reads it, or, for a
# profile setting, when it reads that setting of its profile (`cfg.epochs`) or touches something
# that reads it: the set-up's data, manifest or runtime, or a course call that takes the whole
# profile. Passing a setting to `open_course` alone does not count.

EXPORTS = {"cracks_export", "taping_export"}
SPLIT = EXPORTS | {"seed"}  # the prepared manifest holds a seeded split
RUNTIME = {"device", "precision"}
TRAINING = SPLIT | RUNTIME | {
    "model", "epochs", "batch_size", "lora_r", "lora_alpha", "image_size", "negative_rate",
}
# What reads which settings: attributes of the course (helpers/course/session.py) and the course
# calls that take the whole profile (helpers/course/sources.py, helpers/course/runs.py).
READS = {
    "sources": EXPORTS, "prepared": SPLIT, "prepared_manifest": SPLIT, "manifest": SPLIT,
    "runtime": RUNTIME, "prepared_data": SPLIT, "load_model": {"model"},
    "load_processor": {"model"}, "lora_settings": {"lora_r", "lora_alpha"},
    "datasets": SPLIT | {"image_size", "negative_rate"}, "trained_model": TRAINING,
}


def unused_parameters(cells: list[dict]) -> list[str]:
    """Parameters of a notebook's cells that nothing in its code uses (see above)."""
    from helpers.course.session import settings_names

    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    declared = {t.id for node in ast.parse("".join(tagged[0]["source"])).body for t in node.targets}
    code = ast.parse("\n".join(
        "".join(c["source"]) for c in cells if c["cell_type"] == "code" and c not in tagged
    ))
    loads = _loads(code)
    attributes = {
        (n.value.id, n.attr) for n in ast.walk(code)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
    }
    touched = loads | {attr for owner, attr in attributes if owner == "course"}
    read = {attr for owner, attr in attributes if owner == "cfg"} | {
        n.attr for n in ast.walk(code)
        if isinstance(n, ast.Attribute) and ast.unparse(n.value) == "course.cfg"
    }
    read |= set().union(*(READS.get(t, set()) for t in touched))
    unused = [
        p for p in declared - {"profile", "run_name"}
        if (p not in read if p in settings_names() else p not in loads)
    ]
    return sorted(unused)


@pytest.mark.parametrize("name", NAMES)
def test_every_parameter_is_used(name):
    assert unused_parameters(_cells(name)) == [], name


def test_an_unused_parameter_is_found():
    def cell(source, tags=()):
        return {"cell_type": "code", "metadata": {"tags": list(tags)}, "source": source}

    cells = [
        cell("profile = 'demo'\nrun_name = None\nn_examples = 2\nepochs = None\nseed = None\n"
             "image_size = None", ["parameters"]),
        cell("course = open_course(globals())\nmanifest = course.prepared_manifest\n"
             "print(n_examples, course.cfg.image_size)"),
    ]
    # seed: the prepared manifest's split; image_size: read from the profile
    assert unused_parameters(cells) == ["epochs"]


def test_toolkit_names_resolve_to_their_homes():
    import importlib

    from helpers.course import toolkit

    for name, module in toolkit.HOME.items():
        assert hasattr(importlib.import_module(module), name), f"{module} has no {name}"
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        toolkit.nothing  # noqa: B018


def test_training_reads_the_settings_said_to_reach_it():
    """READS is what justifies a training setting in 05-07's parameters: each of those that the
    training protocol takes from the profile changes it."""
    from helpers.course.profiles import get_profile
    from helpers.course.runs import lora_settings, train_config

    def protocol(profile):
        return train_config(profile, "lora"), lora_settings(profile)

    changed = {"epochs": 3, "batch_size": 5, "seed": 7, "lora_r": 4, "lora_alpha": 8,
               "precision": "bf16"}
    assert set(changed) <= TRAINING
    for key, value in changed.items():
        assert protocol(get_profile("demo", **{key: value})) != protocol(get_profile("demo")), key


PROFILE_VALUES = re.compile(r"\((demo [^,()]+(?:, [a-z]+ [^,()]+)*)\)\s*$")


@pytest.mark.parametrize("name", NAMES)
def test_the_profile_values_a_parameter_comment_quotes_are_the_profiles(name):
    """`epochs = None  # training epochs (demo 4, full 20, smoke 1)` must say what the profiles
    hold, so a changed profile cannot leave a parameters cell quoting the old value."""
    from helpers.course.profiles import PROFILES

    cell = next(c for c in _cells(name) if "parameters" in c.get("metadata", {}).get("tags", []))
    for line in "".join(cell["source"]).splitlines():
        setting, _, comment = line.partition(" = None  # ")
        found = PROFILE_VALUES.search(comment)
        if not comment or not found or not hasattr(PROFILES["demo"], setting):
            continue
        for part in found.group(1).split(", "):
            profile, value = part.split(" ", 1)
            assert value == f"{getattr(PROFILES[profile], setting)!s}", (name, line)
