"""Every notebook teaches: objectives, a generated summary, exercises with solutions that run,
and references (conventions in tests/course_material.py)."""

from __future__ import annotations

import inspect

import pytest
from course_material import cells, exercises, objectives, section, solutions, source

from helpers.course import runner as run_notebooks

NAMES = run_notebooks.available_notebooks()


@pytest.mark.parametrize("name", NAMES)
def test_notebook_opens_with_three_to_five_objectives(name):
    assert 3 <= len(objectives(name)) <= 5, name


@pytest.mark.parametrize("name", NAMES)
def test_summary_is_printed_from_the_recorded_results_right_before_the_end(name):
    nb = cells(name)
    found = section(name, "## What this run showed")
    assert found is not None, f"{name} has no '## What this run showed' cell"
    last_code = max(i for i, c in enumerate(nb) if c["cell_type"] == "code")
    assert found[0] == last_code - 1, f"{name}: the summary heading must precede the last code cell"
    assert "show_summary(" in source(nb[last_code]), name


@pytest.mark.parametrize("name", NAMES)
def test_three_to_five_exercises_each_with_a_hint(name):
    found = exercises(name)
    assert 3 <= len(found) <= 5, f"{name}: {len(found)} exercises"
    for i, text in enumerate(found, 1):
        assert "*Hint:*" in text, f"{name}: exercise {i} has no hint"
    cell = section(name, "## Exercises")[1]
    assert f"Solutions: `notebooks/solutions/{name}.py`" in cell, f"{name}: no solutions line"


@pytest.mark.parametrize("name", NAMES)
def test_references_cite_papers(name):
    found = section(name, "## References")
    assert found is not None, f"{name} has no references"
    assert found[1].count("\n- ") + found[1].count("\n* ") >= 1, name


@pytest.mark.parametrize("name", NAMES)
def test_every_exercise_has_a_solution_function(name):
    module = solutions(name)
    assert module is not None, f"notebooks/solutions/{name}.py is missing"
    wanted = [f"exercise_{i}" for i in range(1, len(exercises(name)) + 1)]
    defined = sorted(
        n for n, f in vars(module).items() if n.startswith("exercise_") and callable(f)
    )
    assert defined == sorted(wanted), f"{name}: solutions {defined}, exercises {wanted}"
    for fn in wanted:
        assert list(inspect.signature(getattr(module, fn)).parameters) == ["course"], fn
    # `python notebooks/solutions/<name>.py` runs them all, as the notebook's Solutions line says
    text = inspect.getsource(module)
    assert 'if __name__ == "__main__":' in text and "run_exercises(globals())" in text, name


# Solutions run on the quick profile (the demo, 1 epoch, capped evaluation) against the run the
# smoke notebooks use, so they reuse its cached data, models and predictions
# (tests/test_notebooks_smoke.py runs first).
SOLUTION_RUN = {"profile": "quick", "run_name": "test-smoke"}


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("name", NAMES)
def test_every_solution_runs_on_the_quick_profile(name, capsys):
    from helpers.course.session import open_course

    module = solutions(name)
    course = open_course(**SOLUTION_RUN)
    for i in range(1, len(exercises(name)) + 1):
        answer = getattr(module, f"exercise_{i}")(course)
        assert answer is not None, f"{name} exercise {i} returns nothing to read"
