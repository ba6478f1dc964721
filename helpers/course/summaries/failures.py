"""Summary of notebook 07 (failure analysis)."""

from __future__ import annotations

from helpers.course.records import FailureAnalysis
from helpers.course.summaries.registry import summary_for


@summary_for(FailureAnalysis)
def summary_07(m: FailureAnalysis) -> list[str]:
    """Failing images per class and the most common measured category."""
    out = []
    for cls, row in m.taxonomy_counts.items():
        categories = {k: v for k, v in row.items() if k not in ("images", "failing") and v}
        top = max(categories, key=categories.get) if categories else None
        out.append(
            f"{cls}: {row['failing']} of {row['images']} test images fail (IoU < {m.fail_iou:g}, "
            "or a false alarm)"
            + (f"; the most common category is {top!r} ({categories[top]})." if top else ".")
        )
    return out
