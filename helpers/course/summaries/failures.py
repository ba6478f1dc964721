"""Summary of notebook 07 (failure analysis)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from helpers.course.records import FailureAnalysis
from helpers.course.summaries.registry import summary_for
from helpers.evaluate.failures import class_counts, class_verdict, leading_categories


def _leading(row: Mapping[str, Any]) -> str:
    """"; the most common category is 'x' (5)", naming every category tied for the lead."""
    tied = leading_categories(row)
    if not tied:
        return ""
    top = int(row[tied[0]])
    if len(tied) == 1:
        return f"; the most common category is {tied[0]!r} ({top})"
    names = ", ".join(repr(c) for c in tied)
    return f"; {len(tied)} categories tie as the most common ({names}; {top} each)"


@summary_for(FailureAnalysis)
def summary_07(m: FailureAnalysis) -> list[str]:
    """Failing images per class with what the count means, the most common measured category,
    the best image against the cut-off, and the refinement's gain with its interval, verdict and
    caveats (one training seed; synthetic seams)."""
    out = []
    for cls, row in m.taxonomy_counts.items():
        counts = class_counts(row)
        verdict = class_verdict(cls, **counts)
        empty = " (a false alarm on an empty image fails too)" if counts.get("empty") else ""
        out.append(f"{verdict[0].upper()}{verdict[1:]}{empty}" + _leading(row) + ".")
    out += [f"{sentence}." for sentence in m.best_image_sentences]
    out += m.refinement_verdict  # the gain with its interval, the verdict and its caveats
    return out
