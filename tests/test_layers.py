"""The package map of README.md holds: each package of helpers/ imports only from the layers
below it (function-level imports count too; a package's `__main__.py` is a command and may
import any layer), and the commands at the top only call into them."""

from __future__ import annotations

import ast
import inspect
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HELPERS = ROOT / "helpers"
# bottom to top; README.md's package map lists them in this order
LAYERS = ["core", "data", "model", "train", "demo", "inference", "evaluate", "course"]
COMMANDS = {"bench", "choices", "demo_data", "predict", "prepare", "report", "run_notebooks"}


def imported_modules(path: Path) -> set[str]:
    """Every `helpers...` module a file imports, anywhere in it."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m == "helpers" or m.startswith("helpers.")}


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else None


def upward_imports(path: Path) -> list[str]:
    own = LAYERS.index(path.relative_to(HELPERS).parts[0])
    return sorted(
        m for m in imported_modules(path)
        if layer_of(m) is None or LAYERS.index(layer_of(m)) > own
    )


@pytest.mark.parametrize("layer", LAYERS)
def test_each_package_imports_only_from_the_layers_below(layer: str) -> None:
    # a package's `__main__.py` is a command, like the thin modules at the top of helpers/
    files = sorted(f for f in (HELPERS / layer).rglob("*.py") if f.name != "__main__.py")
    assert files, f"helpers/{layer}/ is missing"
    bad = {str(f.relative_to(ROOT)): upward_imports(f) for f in files}
    assert not {k: v for k, v in bad.items() if v}


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    # the rule above would pass vacuously if it never recognised an import
    fake = HELPERS / "model" / "_layer_probe.py"
    fake.write_text("def f():\n    from helpers.course.runs import trained_model\n")
    try:
        assert upward_imports(fake) == ["helpers.course.runs"]
    finally:
        fake.unlink()


def test_the_top_of_helpers_holds_only_thin_commands() -> None:
    top = {p.stem for p in HELPERS.glob("*.py")} - {"__init__"}
    assert top == COMMANDS
    for name in COMMANDS:
        lines = [ln for ln in (HELPERS / f"{name}.py").read_text().splitlines() if ln.strip()]
        assert len(lines) <= 12, name
        assert all(layer_of(m) for m in imported_modules(HELPERS / f"{name}.py")), name


def test_readme_package_map_matches_the_code() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Package map", 1)[1].split("\n## ", 1)[0]
    listed = re.findall(r"^\| `helpers/(\w+)/` \|", section, flags=re.M)
    assert listed == LAYERS
    packages = sorted(p.name for p in HELPERS.iterdir() if (p / "__init__.py").is_file())
    assert sorted(listed) == packages
    for name in COMMANDS:
        assert f"helpers.{name}" in section, name


MAX_LINES = 60  # a function a notebook calls stays short enough to read in one screen


def _own_functions(obj):
    """`obj` itself if it is a function, or the methods a helpers class defines itself."""
    if inspect.isclass(obj):
        members = [getattr(m, "__func__", m) for m in vars(obj).values()]
        home = sys.modules[obj.__module__].__file__  # not the methods dataclasses writes
        return [m for m in members if inspect.isfunction(m) and m.__code__.co_filename == home]
    return [obj] if inspect.isfunction(obj) else []


def test_no_function_a_notebook_calls_exceeds_60_lines() -> None:
    from helpers.course import toolkit

    long = {}
    for module, names in toolkit.HOMES.items():
        if not module.startswith("helpers."):
            continue  # third-party names (peft's LoraConfig) are not ours to shorten
        for name in names:
            for fn in _own_functions(getattr(toolkit, name)):
                lines = len(inspect.getsourcelines(fn)[0])
                if lines > MAX_LINES:
                    long[f"{module}.{fn.__qualname__}"] = lines
    assert not long, long


def test_the_training_loop_is_short_with_few_parameters() -> None:
    from helpers.train.loop import train

    assert len(inspect.getsourcelines(train)[0]) <= 45
    assert len(inspect.signature(train).parameters) <= 8
