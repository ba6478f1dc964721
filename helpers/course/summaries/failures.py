"""Summary of notebook 07 (failure analysis)."""

from __future__ import annotations

from helpers.course.records import FailureAnalysis
from helpers.course.summaries.registry import summary_for
from helpers.evaluate.failures import CATEGORIES, class_verdict


def _leading(categories: dict[str, int]) -> str:
    """"; the most common category is 'x' (5)", naming every category tied for the lead."""
    if not categories:
        return ""
    top = max(categories.values())
    tied = [repr(k) for k, v in categories.items() if v == top]
    if len(tied) == 1:
        return f"; the most common category is {tied[0]} ({top})"
    return f"; {len(tied)} categories tie as the most common ({', '.join(tied)}; {top} each)"


@summary_for(FailureAnalysis)
def summary_07(m: FailureAnalysis) -> list[str]:
    """Failing images per class with what the count means, the most common measured category,
    the best image against the cut-off, and the refinement's gain with its interval, verdict and
    caveats (one training seed; synthetic seams)."""
    out = []
    for cls, row in m.taxonomy_counts.items():
        categories = {k: v for k, v in row.items() if k in CATEGORIES and v}
        verdict = class_verdict(
            cls, int(row["images"]), int(row["failing"]), int(row.get("empty", 0)),
            int(row.get("false alarm on an empty image", 0)),
        )
        out.append(
            f"{verdict[0].upper()}{verdict[1:]} (a false alarm on an empty image fails too)"
            + _leading(categories) + "."
        )
    out += [f"{sentence}." for sentence in m.best_image_sentences]
    out += m.refinement_verdict  # the gain with its interval, the verdict and its caveats
    return out
