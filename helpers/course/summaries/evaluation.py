"""Summaries of notebooks 05 (threshold sweep) and 06 (modes compared)."""

from __future__ import annotations

from helpers.course.records import ModeComparison, ThresholdSweep
from helpers.course.summaries.registry import summary_for


@summary_for(ThresholdSweep)
def summary_05(m: ThresholdSweep) -> list[str]:
    """Thresholds chosen on validation, the test IoU at them, and the inflation of peeking."""
    return [
        f"{cls}: threshold {t:.2f} chosen on validation gives test IoU "
        f"{m.test_iou_at_val_threshold[cls]:.3f}; choosing on test would have reported "
        f"{m.test_iou_if_tuned_on_test[cls]:.3f} "
        f"(inflation {m.inflation_from_tuning_on_test[cls]:+.3f})."
        for cls, t in m.thresholds_chosen_on_val.items()
    ]


@summary_for(ModeComparison)
def summary_06(m: ModeComparison) -> list[str]:
    """Test IoU per mode and class, with the trainable parameters of each mode."""
    out = []
    for row in m.comparison:
        scores = ", ".join(
            f"{key.removeprefix('test_iou_')} {value:.3f}"
            for key, value in row.items() if key.startswith("test_iou_")
        )
        out.append(
            f"{row['mode']}: {row['trainable_parameters']:,} trainable parameters; "
            f"test IoU {scores} "
            f"(thresholds chosen on {m.thresholds_chosen_on})."
        )
    return out
