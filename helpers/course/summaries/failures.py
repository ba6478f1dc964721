"""Summary of notebook 07 (failure analysis)."""

from __future__ import annotations

from helpers.course.records import FailureAnalysis
from helpers.course.summaries.registry import summary_for
from helpers.evaluate.failures import CATEGORIES, class_verdict


@summary_for(FailureAnalysis)
def summary_07(m: FailureAnalysis) -> list[str]:
    """Failing images per class with what the count means, the most common measured category,
    the best image against the cut-off, and the refinement's gain with its interval, verdict and
    caveats (one training seed; synthetic seams)."""
    out = []
    for cls, row in m.taxonomy_counts.items():
        categories = {k: v for k, v in row.items() if k in CATEGORIES and v}
        top = max(categories, key=categories.get) if categories else None
        verdict = class_verdict(cls, int(row["images"]), int(row["failing"]))
        out.append(
            f"{verdict[0].upper()}{verdict[1:]} (a false alarm on an unlabelled image fails too)"
            + (f"; the most common category is {top!r} ({categories[top]})" if top else "")
            + "."
        )
    out += [f"{sentence}." for sentence in m.best_image_sentences]
    out += m.refinement_verdict  # the gain with its interval, the verdict and its caveats
    return out
