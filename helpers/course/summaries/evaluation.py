"""Summaries of notebooks 05 (threshold sweep) and 06 (modes compared)."""

from __future__ import annotations

from helpers.core.numbers import signed
from helpers.course.records import ModeComparison, ThresholdSweep
from helpers.course.summaries.registry import summary_for
from helpers.evaluate.bootstrap import gain_verdict


@summary_for(ThresholdSweep)
def summary_05(m: ThresholdSweep) -> list[str]:
    """Thresholds chosen on validation, the test IoU at them, the inflation of peeking, how far
    the choice moves with the validation photos, and the predict defaults."""
    out = [
        f"{cls}: threshold {t:.2f} chosen on validation gives test IoU "
        f"{m.test_iou_at_val_threshold[cls]:.3f}; choosing on test would have reported "
        f"{m.test_iou_if_tuned_on_test[cls]:.3f} "
        f"(inflation {signed(m.inflation_from_tuning_on_test[cls])})."
        for cls, t in m.thresholds_chosen_on_val.items()
    ]
    for r in m.threshold_stability:
        if r["steps"] <= 1:
            out.append(
                f"{r['dataset']}: resampling its {r['val_photos']} validation photos keeps the "
                f"choice within one sweep step ({r['threshold_low']:.2f}-"
                f"{r['threshold_high']:.2f}): validation is large enough to choose."
            )
        else:
            rule = (
                f"gives the single choice itself, {r['chosen']:.2f}"
                if r["median_threshold"] == r["chosen"]
                else f"gives {r['median_threshold']:.2f}, test IoU {r['median_test_iou']:.3f} "
                f"against {r['test_iou']:.3f} at the single choice"
            )
            out.append(
                f"{r['dataset']}: resampling its {r['val_photos']} validation photos moves the "
                f"choice over {r['threshold_low']:.2f}-{r['threshold_high']:.2f} ({r['steps']} "
                f"sweep steps, more than one) and its test IoU over {r['test_iou_low']:.3f}-"
                f"{r['test_iou_high']:.3f}: too few photos to choose; the course's rule (median "
                f"of the resampled choices) {rule}."
            )
    if m.postprocess_chosen_on_val:
        out.append(
            "predict's defaults: "
            + "; ".join(
                f"{cls} threshold {_predict_threshold(m, cls):.2f} and post-processing "
                f"'{method}', test IoU "
                f"{m.test_iou_predict_defaults[cls]:.3f} (without post-processing "
                f"{m.test_iou_no_postprocess[cls]:.3f})"
                for cls, method in m.postprocess_chosen_on_val.items()
            )
            + "."
        )
    return out


def _predict_threshold(m: ThresholdSweep, cls: str) -> float:
    """The threshold predict uses for `cls`: the rule's, else (older records) validation's."""
    return m.thresholds_for_predict.get(cls, m.thresholds_chosen_on_val[cls])


def _interval(r: dict) -> str:
    return f"{r['iou']:.3f} [{r['iou_low']:.3f}, {r['iou_high']:.3f}]"


@summary_for(ModeComparison)
def summary_06(m: ModeComparison) -> list[str]:
    """Per mode: trainable parameters, test IoU per class with its interval over photos, and
    its paired gain over the reference mode (the zero-shot model) judged by that interval;
    then the held-out phrasings' readings."""
    boot: dict[str, list[dict]] = {}
    for r in m.test_iou_photo_bootstrap:
        boot.setdefault(r["mode"], []).append(r)
    ref = m.bootstrap_reference
    out = []
    for row in m.comparison:
        mode = row["mode"]
        rows = boot.get(mode, [])
        if rows:
            scores = ", ".join(f"{r['dataset']} {_interval(r)}" for r in rows)
            level = rows[0]["level"]
        else:  # results recorded without intervals
            scores = ", ".join(
                f"{key.removeprefix('test_iou_')} {value:.3f}"
                for key, value in row.items() if key.startswith("test_iou_")
            )
            level = None
        sentence = (
            f"{mode}: {row['trainable_parameters']:,} trainable parameters; test IoU {scores} "
            f"(thresholds chosen on {m.thresholds_chosen_on}"
            + (f"; intervals: the middle {level} of photo resamples)" if level else ")")
        )
        gains = [r for r in rows if mode != ref and "diff" in r]
        if gains:
            sentence += "; against " + ref + ": " + ", ".join(
                f"{r['dataset']} {signed(r['diff'])} "
                f"[{signed(r['diff_low'])}, {signed(r['diff_high'])}] "
                + gain_verdict(r["diff_low"], r["diff_high"], "above", "below", "not resolved")
                + f" over {r['photos']} photos"
                for r in gains
            )
        out.append(sentence + ".")
    if any(r["mode"] != ref and "diff" in r for r in m.test_iou_photo_bootstrap):
        out.append(
            f"A gain is 'above' or 'below' when its whole interval lies on one side of 0; the "
            f"intervals cover the choice of test photos only, and each mode was trained once "
            f"(seed {m.seed})."
        )
    out += m.held_out_readings
    return out
