"""What a notebook's teaching material looks like, read from its cells (no execution).

The conventions every course notebook follows:

- the first cell holds a line `**Objectives.** After this notebook you can:` and then 3-5
  bullet lines;
- a markdown cell headed `## What this run showed` comes right before the last code cell,
  which records the results and prints `show_summary(results)`;
- a markdown cell headed `## Exercises` holds 3-5 paragraphs `**Exercise N.** ...`, each with
  a `*Hint:*`;
- a markdown cell headed `## References` lists the papers the notebook relies on;
- `notebooks/solutions/<notebook>.py` defines `exercise_1(course)` ... `exercise_N(course)`,
  one per exercise, each returning what its answer reads.
"""

from __future__ import annotations

import importlib.util
import json
import re
from types import ModuleType

from helpers.core.paths import NOTEBOOKS_DIR

SOLUTIONS_DIR = NOTEBOOKS_DIR / "solutions"
OBJECTIVES = "**Objectives.** After this notebook you can:"


def cells(name: str) -> list[dict]:
    return json.loads((NOTEBOOKS_DIR / f"{name}.ipynb").read_text(encoding="utf-8"))["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def objectives(name: str) -> list[str]:
    """The objective bullets of the first cell (empty when the line is missing)."""
    lines = source(cells(name)[0]).splitlines()
    if OBJECTIVES not in lines:
        return []
    out = []
    for line in lines[lines.index(OBJECTIVES) + 1:]:
        if not line.strip():
            if out:
                break
            continue
        if not re.match(r"^\s*[*-] ", line):
            break
        out.append(line.strip()[2:])
    return out


def section(name: str, heading: str) -> tuple[int, str] | None:
    """(index, text) of the markdown cell whose first line is `heading`."""
    for i, cell in enumerate(cells(name)):
        text = source(cell)
        if cell["cell_type"] == "markdown" and text.splitlines()[:1] == [heading]:
            return i, text
    return None


def exercises(name: str) -> list[str]:
    """The exercise paragraphs of the `## Exercises` cell, in order."""
    found = section(name, "## Exercises")
    if found is None:
        return []
    parts = re.split(r"(?m)^\*\*Exercise (\d+)\.\*\*", found[1])
    numbers = [int(n) for n in parts[1::2]]
    assert numbers == list(range(1, len(numbers) + 1)), f"{name}: exercises numbered {numbers}"
    return [p.strip() for p in parts[2::2]]


def solutions(name: str) -> ModuleType | None:
    """The notebook's solutions module, imported from its file (None when missing)."""
    path = SOLUTIONS_DIR / f"{name}.py"
    if not path.is_file():
        return None
    spec = importlib.util.spec_from_file_location(f"solutions_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
