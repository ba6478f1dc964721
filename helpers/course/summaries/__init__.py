"""'What this run showed': sentences written from a notebook's recorded results.

Every notebook ends by recording its results (`helpers.course.records`) and printing
`show_summary(results)`; `report.md` opens with `course_summary`. Each sentence is generated
from the numbers of the run that recorded them and states its number (and, where it judges,
its criterion), so the summary stays true on any profile and seed. One module per part of the
course registers its notebooks' summaries with `summary_for`.
"""

from helpers.course.summaries import data, evaluation, failures, training  # noqa: F401  (registers)
from helpers.course.summaries.registry import (
    SUMMARIES,
    course_summary,
    run_summary,
    show_summary,
    summary_for,
    written_summary,
)

__all__ = [
    "SUMMARIES", "course_summary", "run_summary", "show_summary", "summary_for", "written_summary",
]
