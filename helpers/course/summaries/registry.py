"""The registry of per-notebook summaries, and the course summary built from them."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from helpers.course.records import NotebookResults

Summary = Callable[[NotebookResults], list[str]]
SUMMARIES: dict[type, Summary] = {}


def summary_for(results_class: type) -> Callable[[Summary], Summary]:
    """Register the function that writes the summary of one notebook's results class."""

    def register(fn: Summary) -> Summary:
        SUMMARIES[results_class] = fn
        return fn

    return register


def run_summary(results: NotebookResults) -> list[str]:
    """The sentences of one notebook's summary, each carrying its number."""
    try:
        write = SUMMARIES[type(results)]
    except KeyError:
        raise KeyError(f"no summary is registered for {type(results).__name__}") from None
    return write(results)


def written_summary(results: NotebookResults) -> list[str]:
    """The summary to record: `run_summary`, or, where a value it reads is missing (null or
    NaN, as when a class has no image in a split), one sentence saying so instead."""
    from helpers.course.records import non_finite_fields

    try:
        return run_summary(results)
    except (TypeError, ValueError, KeyError, ZeroDivisionError) as err:
        found = [f for k, v in results.to_dict().items() for f in non_finite_fields(v, k)]
        missing = "; ".join(found[:3]) or str(err)
        return [f"No summary: a value it is written from is missing ({missing})."]


def show_summary(results: NotebookResults) -> None:
    """Print a notebook's summary as recorded with its results, one bullet per sentence."""
    for sentence in results.summary_sentences or written_summary(results):
        print(f"- {sentence}")


def course_summary(metrics: Mapping[str, NotebookResults]) -> list[str]:
    """The whole run's summary: each notebook's sentences as it recorded them (written now
    for results recorded without them), in course order, led by the notebook's name."""
    out = []
    for name in sorted(metrics):
        sentences = metrics[name].summary_sentences or written_summary(metrics[name])
        if sentences:
            out.append(f"**{name}**: " + " ".join(sentences))
    return out
