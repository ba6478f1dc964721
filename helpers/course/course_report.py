"""The course report: every notebook's metrics gathered into one Markdown file, plus HTML of
the executed notebooks.

    python -m helpers.report --profile demo     # outputs/demo/report.md and outputs/demo/html/

Every table states the split it comes from; test scores are at thresholds chosen on
validation; a split with fewer than `SMALL_SPLIT` photos (near-duplicate groups; images where
photos are not recorded) is flagged where its numbers appear.
The header says where each notebook ran (device, GPU, precision, peak memory) and, when a
profile capped the evaluated images, says so before any score.

Nothing is dropped silently: a notebook without a metrics file keeps its place with a line
saying so, and every NaN or infinite number is listed under "Values to check" with its file
and field (the command then exits 1). A metrics file that is off the schema or not complete
JSON stops the report with one line naming the file (exit 2).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.core.io import read_json, write_text
from helpers.core.numbers import rounded
from helpers.core.paths import OUTPUTS_DIR, profile_dir, shown
from helpers.course.model_card import write_model_cards
from helpers.course.output_check import scan_outputs
from helpers.course.records import (
    DataInspection,
    FailureAnalysis,
    JointDataset,
    LoraTraining,
    MaskRendering,
    ModeComparison,
    ModelResults,
    NotebookResults,
    ThresholdSweep,
    non_finite_fields,
    read_results,
)
from helpers.course.summaries import course_summary
from helpers.data.split import SMALL_SPLIT
from helpers.evaluate.metrics import MODEL_SIZE


def _table(
    rows: Sequence[Mapping[str, Any]] | pd.DataFrame,
    columns: Sequence[str] | None = None,
    digits: int = 4,
    missing: str = "",
) -> str:
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if df.empty:
        return "_(no rows)_\n"
    if columns:
        df = df[[c for c in columns if c in df.columns]]
    df = rounded(df, digits)
    for col in df.columns[df.isna().any()]:  # a value that does not apply: `missing`
        df[col] = df[col].astype(object).where(df[col].notna(), missing)
    return df.to_markdown(index=False) + "\n"


def _flag(n: int, unit: str = "images") -> str:
    return f" **(only {n} {unit}: too small to trust on its own)**" if n < SMALL_SPLIT else ""


def _size(images: int, photos: int | None = None) -> str:
    """"24 images from 9 photos", flagged on the photos (the independent cases) where known."""
    if photos is None:
        return f"{images} images{_flag(images)}"
    return f"{images} images from {photos} photos{_flag(photos, 'photos')}"


def _split_sizes(
    sizes: Mapping[str, Mapping[str, int]], photos: Mapping[str, Mapping[str, int]] | None = None
) -> str:
    lines = []
    for split, per_class in sizes.items():
        for cls, n in per_class.items():
            p = (photos or {}).get(split, {}).get(cls)
            lines.append(f"- {split} / {cls}: {_size(int(n), None if p is None else int(p))}")
    return "\n".join(lines) + "\n"


def section_01(m: DataInspection) -> str:
    out = ["## 01 · Data inspection", "", f"Problems while reading: {m.problems}.", ""]
    out.append(
        _table(
            m.summary,
            [
                "dataset",
                "source_split",
                "images",
                "sources",
                "objects",
                "polygons",
                "boxes",
                "empty_segmentation",
            ],
        )
    )
    out += ["", "Leakage of the exports' own splits (source photos shared):", ""]
    leak = [r for r in m.leakage if r.get("key", "source_id") == "source_id"]
    out.append(
        _table(leak, ["dataset", "split_a", "split_b", "n_a", "n_b", "n_shared", "leak_fraction"])
    )
    if m.median_variants_per_source:
        out.append(
            "\nExported images per source photo (median): "
            + ", ".join(f"{c} {v:g}" for c, v in m.median_variants_per_source.items()) + ".\n"
        )
    return "\n".join(out)


def section_02(m: MaskRendering) -> str:
    out = ["## 02 · Mask rendering", ""]
    rows = [
        {
            "dataset": d,
            "images": m.images[d],
            "objects": m.objects[d],
            "box_fallbacks": m.box_fallbacks[d],
            "mean_mask_fraction": m.mean_mask_fraction[d],
            "images_without_foreground": m.images_without_foreground.get(d),
        }
        for d in m.images
    ]
    out.append(_table(rows))
    bias = m.rectangle_vs_true_seam_iou or {}
    if bias.get("n_images"):
        out.append(
            f"\nIoU of the rectangle labels against the true seam masks (demo data, all "
            f"{bias['n_images']} taping images): **{bias['mean']:.3f}**.\n"
        )
    return "\n".join(out)


def section_03(m: JointDataset) -> str:
    rows = [
        {"dataset": d, **{split: _size(n, m.split_photos.get(d, {}).get(split))
                          for split, n in v.items()}}
        for d, v in m.split_images.items()
    ]
    out = [
        "## 03 · Joint dataset and split",
        "",
        f"Seed {m.seed}; groups in more than one split: {m.groups_in_several_splits}.",
        "",
    ]
    out.append(_table(rows))
    leak = [
        {"split": "export's own", **r} for r in m.export_leakage if r.get("key") == "group_id"
    ] + [{"split": "this course's", **r} for r in m.split_leakage if r.get("key") == "group_id"]
    if leak:
        out += ["", "Photo groups shared between pairs of splits:", ""]
        out.append(_table(leak, ["split", "dataset", "split_a", "split_b", "n_a", "n_b",
                                 "n_shared"]))
    if m.item_targets_epoch0:
        out.append(
            f"\nEpoch 0's training items by what their target holds (negative_rate "
            f"{m.negative_rate:g}): "
            + ", ".join(f"{k} {v}" for k, v in m.item_targets_epoch0.items()) + ".\n"
        )
    return "\n".join(out)


def section_04(m: LoraTraining) -> str:
    from helpers.course.empty_baseline import untrained_reading

    rows = [
        {"class": c, "untrained": m.val_iou_untrained[c], "LoRA": m.val_iou_lora.get(c),
         "marking nothing": m.val_iou_empty_prediction.get(c)}
        for c in m.val_iou_untrained
    ]
    out = [
        "## 04 · LoRA training",
        "",
        f"Trainable parameters: {m.trainable_parameters:,} of {m.total_parameters:,}; "
        f"best epoch {m.best_epoch} of {m.epochs_run}; training took {m.train_seconds:.0f} s.",
        "",
        f"Validation IoU per class (threshold {m.val_threshold}, {m.image_size}x{m.image_size}; "
        "one sampled prompt per image), the score the training loop selects its best epoch by, "
        "beside what an all-empty prediction scores under the same protocol. "
        "Sections 05 and 06 score the same model at full resolution, with every prompt of the "
        "class and a threshold chosen per class on validation, so their numbers differ:",
        "",
        _split_sizes({"val": m.val_images_per_class}, {"val": m.val_photos_per_class}),
        _table(rows),
        "",
    ]
    if m.val_iou_empty_prediction:
        out += [f"- {line}" for line in untrained_reading(
            m.val_iou_untrained, m.val_iou_empty_prediction, m.val_empty_label_images,
            m.val_images_per_class, m.val_threshold,
        )] + [""]
    return "\n".join([*out, *prompt_sensitivity_lines(m, "val")])


def _thresholds(per_class: Mapping[str, float]) -> str:
    return ", ".join(f"{c} {t}" for c, t in per_class.items())


FORM_MEANINGS = {
    "labelled": "images whose label marks something",
    "all": "every image (a false alarm on an empty wall counts)",
    "deployed": "each prompt at its own class's threshold, as predict runs",
    "deployed_blind": "the same for a prompt-blind copy: what deployed is read against",
    "on_object": "pixels on the image's label only",
}


def prompt_sensitivity_lines(m: LoraTraining, split: str) -> list[str]:
    """Prompt sensitivity (four forms), the cross-prompt matrix and where the wrong prompt's
    pixels lie, for one model (04), as report lines with their reading."""
    from helpers.course.prompt_switch import switch_reading

    s = getattr(m, f"prompt_sensitivity_{split}", None)
    matrix = getattr(m, f"cross_prompt_matrix_{split}", None)
    if not s or not matrix:
        return []
    name = {"val": "validation", "test": "test"}[split]
    out = [
        f"Prompt sensitivity on {name} (labelled images, every prompt at the validation "
        "threshold of the image's class): "
        f"**{s['all']:.3f}** (crack images {s['cracks']:.3f}, taping images {s['taping']:.3f}; "
        "0 = the prompt changes nothing, 1 = only the right prompt marks anything).",
        "",
        f"Cross-prompt scores ({name}, full resolution, every prompt of each class, thresholds "
        f"chosen on validation: {_thresholds(m.thresholds_chosen_on_val)}; IoU against the "
        "image's label, foreground share of the image):",
        "",
        _table([
            {"image class": r["image_class"], "prompt class": r["prompt_class"],
             "right prompt": r["right_prompt"], "images": r["images"], "IoU": r["iou"],
             "foreground share": r["foreground_share"]}
            for r in matrix
        ]),
    ]
    forms = m.prompt_sensitivity_forms_val if split == "val" else []
    if forms:
        out += [
            "",
            f"Prompt sensitivity in four forms ({name}; s = (R - W) / (R + W) per image, "
            "averaged over the images each form counts):",
            "",
            _table([{"form": r["form"], "counts": FORM_MEANINGS.get(r["form"], ""),
                     **{k: v for k, v in r.items() if k != "form"}} for r in forms]),
            "",
            *(f"- {line}" for line in switch_reading(
                matrix, forms, m.wrong_prompt_on_label_val, m.wrong_to_right_foreground_val,
                split=name, excess=m.wrong_prompt_excess_val,
            )),
        ]
    return out


def section_05(m: ThresholdSweep) -> str:
    out = [
        "## 05 · Threshold sweep",
        "",
        "Split sizes:",
        "",
        _split_sizes(m.split_images, m.split_photos),
        "Thresholds chosen on **validation**, scores on **test** (mean per-image IoU over every "
        "prompt of the class):",
        "",
    ]
    rows = [
        {
            "class": c,
            "threshold (val)": m.thresholds_chosen_on_val[c],
            "val IoU at it": m.val_iou_at_val_threshold.get(c),
            "test IoU": m.test_iou_at_val_threshold[c],
            "threshold (test)": m.thresholds_if_tuned_on_test.get(c),
            "val IoU at the test's pick": m.val_iou_at_test_threshold.get(c),
            "test IoU, tuned on test": m.test_iou_if_tuned_on_test[c],
            "inflation": m.inflation_from_tuning_on_test[c],
        }
        for c in m.thresholds_chosen_on_val
    ]
    out.append(_table(rows))
    if m.peeking_readings:
        out += ["", *_bullets(m.peeking_readings)]
    out += stability_lines(m)
    out += [
        "",
        "Per class at those thresholds (iou and dice: means over images; pooled_iou: the true "
        "positives of all images over their true positives, false positives and false "
        "negatives, so large objects weigh more):",
        "",
    ]
    out.append(
        _table(
            m.per_class,
            [
                "split",
                "dataset",
                "images",
                "pairs",
                "threshold",
                "iou",
                "dice",
                "pooled_iou",
                "precision",
                "recall",
            ],
        )
    )
    out += ["", "Per prompt, test (paired: the same images for every prompt of a class):", ""]
    out.append(_table(m.per_prompt_test, ["dataset", "prompt", "images", "iou", "dice"]))
    out += ["", f"Full resolution vs {MODEL_SIZE[1]}x{MODEL_SIZE[0]} (test):", ""]
    out.append(
        _table(
            m.resolution_test,
            ["dataset", "resolution", "images", "threshold", "iou", "dice", "cldice", "bf1"],
        )
    )
    out += [
        "",
        f"Post-processing chosen on validation: {m.postprocess_chosen_on_val} (a method replaces "
        f"'none' only if it gains at least {m.postprocess_margin} IoU on validation: a fixed "
        "rule of the course, not a measurement; the paired intervals after the table show "
        "whether the validation photos resolve each gain).",
        "",
    ]
    out.append(
        _table(
            m.postprocess_ablation,
            ["dataset", "split", "method", "images", "threshold", "iou", "cldice", "bf1"],
        )
    )
    if m.postprocess_gain_val:
        out += [
            "",
            "What the margin does not measure: each method's validation IoU minus 'none''s on "
            "the same images (diff), with a paired interval from resampling the validation "
            "photos:",
            "",
            _table([{"method": r["mode"], **r} for r in m.postprocess_gain_val],
                   ["dataset", "method", "photos", "iou", "diff", "diff_low", "diff_high"]),
            "",
            *_bullets(m.postprocess_gain_readings),
        ]
    return "\n".join(out)


def _bullets(sentences: Iterable[str]) -> list[str]:
    """Recorded sentences as a Markdown list (their numbers are the run's)."""
    return [f"- {s}" for s in sentences] + [""]


def stability_lines(m: ThresholdSweep) -> list[str]:
    """How far the validation choice moves with the validation photos (05), as report lines."""
    if not m.threshold_stability:
        return []
    return [
        "",
        "How much the validation photos decide the threshold: the validation photos resampled "
        f"{m.threshold_stability[0]['resamples']} times, the threshold chosen again on each "
        "sample, and the test IoU each choice gives (interval: the middle "
        f"{m.threshold_stability[0]['level']} of the resamples):",
        "",
        _table(m.threshold_stability, ["dataset", "val_photos", "chosen", "test_iou",
                                       "threshold_low", "threshold_high", "steps",
                                       "test_iou_low", "test_iou_high", "median_threshold",
                                       "median_test_iou", "recommended"]),
        "",
        m.threshold_stability_reading,
        "",
        f"The course's rule: {m.threshold_rule}.",
        "",
    ]


def section_06(m: ModeComparison) -> str:
    modes = [row["mode"] for row in m.comparison]
    out = [
        "## 06 · Zero-shot vs decoder-only vs LoRA vs full fine-tuning",
        "",
        "Split sizes:",
        "",
        _split_sizes(m.split_images, m.split_photos),
        f"Thresholds chosen on {m.thresholds_chosen_on} per mode and class ("
        + "; ".join(f"{mode}: {_thresholds(t)}" for mode, t in m.thresholds.items())
        + f"); {m.epochs} epochs, seed {m.seed}; scores on test at full resolution, every "
        "prompt of each class, no post-processing."
        + (" Mode none is the base model untrained (zero-shot), evaluated the same way."
           if "none" in modes else ""),
        "",
    ]
    out.append(_table(m.comparison))
    if any("tower_lr" in row for row in m.comparison):
        out.append(
            "\ntower_lr: the CLIP towers' learning rate where it differs from lr (full "
            "fine-tuning); lr: everything else that trains.\n"
        )
    if m.full_size_modes:
        out += [
            "",
            "The same modes on the real checkpoint's architecture, counted without its weights: "
            "what each trains and what its checkpoint stores (stored_mb at 4 bytes a weight).",
            "",
            _table(m.full_size_modes),
        ]
    out += _bootstrap_lines(m)
    if m.runtime.get("device") != "cuda":
        out += [
            "",
            "Peak memory is measured per mode on CUDA only (each mode's peak allocated memory), "
            "so this CPU run's table leaves it out: a process's resident peak mixes modes.",
        ]
    out += _listening_lines(m)
    out += _held_out_lines(m)
    return "\n".join(out)


def _bootstrap_lines(m: ModeComparison) -> list[str]:
    """06's intervals over test photos, the paired differences and their verdicts."""
    if not m.test_iou_photo_bootstrap:
        return []
    ref = m.bootstrap_reference
    name = "the zero-shot model's (none)" if ref == "none" else f"{ref}'s"
    out = [
        "",
        "Test mean IoU with intervals (iou_low, iou_high) that hold the middle "
        f"{m.test_iou_photo_bootstrap[0]['level']} of the means from resampling the test "
        f"photos (the same photos for every mode in each round); diff is a mode's mean minus "
        f"{name}, with its paired interval: one that contains 0 means this split cannot tell "
        f"the two apart. The intervals cover the choice of test photos only: each mode was "
        f"trained once (seed {m.seed}).",
        "",
        _table(m.test_iou_photo_bootstrap,
               [c for c in m.test_iou_photo_bootstrap[0] if c != "level"]),
    ]
    if m.test_iou_vs_lora:
        out += ["", "The same resamples, differences from LoRA:", "",
                _table(m.test_iou_vs_lora, ["mode", "dataset", "photos", "diff", "diff_low",
                                            "diff_high"])]
    if m.gain_readings:
        out += ["", *_bullets(m.gain_readings)]
    return out


def _listening_lines(m: ModeComparison) -> list[str]:
    """06's prompt sensitivity: the labelled figure per mode, the four forms, where the wrong
    prompts' pixels land, and the recorded readings."""
    from helpers.evaluate.sensitivity import describe_by_class

    sensitivity = m.prompt_sensitivity_test
    if not sensitivity:
        return []
    out = [
        "",
        "Does each model listen to the prompt? Every test image is also scored with the other "
        "class's prompts; prompt sensitivity is 0 for a model that ignores the prompt and 1 "
        "when only the right prompt marks anything:",
        "",
        _table([
            {"mode": mode, "sensitivity, labelled images": s["all"], "crack images": s["cracks"],
             "taping images": s["taping"], "reading": describe_by_class(s)}
            for mode, s in sensitivity.items()
        ]),
    ]
    if m.prompt_sensitivity_forms:
        out += [
            "",
            "The same in four forms, plus the deployed form's reference (labelled: images whose "
            "label marks something; all: every "
            "image; deployed: each prompt at its own class's threshold, read against "
            "deployed_blind, a prompt-blind copy at those thresholds; on_object: from the "
            "pixels on the label only):",
            "",
            _table(m.prompt_sensitivity_forms),
            "",
            "Where the wrong prompts' pixels land: the share of them that lies on the image's "
            "label, per mode and image class (near 1: the model marks the object whatever it is "
            "asked):",
            "",
            _table(m.wrong_prompt_localisation, missing="marks nothing"),
        ]
    if m.sensitivity_readings:
        out += ["", *_bullets(m.sensitivity_readings)]
    return out


def _held_out_lines(m: ModeComparison) -> list[str]:
    """06's held-out phrasings: test IoU per prompt and mode, the gaps, and the readings."""
    if not m.held_out_prompts_test:
        return []
    table = pd.DataFrame(m.held_out_prompts_test).pivot_table(
        index=["dataset", "held_out", "prompt"], columns="mode", values="iou", sort=False
    )
    return [
        "",
        "Phrasings no training item used, scored on test at each class's threshold chosen on "
        "validation from the training prompts (held_out marks them; mean per-image IoU per "
        "mode), and per mode and class the mean of each set and their gap:",
        "",
        _table(table.reset_index()),
        "",
        _table(m.held_out_gaps),
        "",
        *_bullets(m.held_out_readings),
    ]


def _is_number(value: object) -> bool:
    """A finite number (a value that is missing is null or NaN in the metrics)."""
    return isinstance(value, int | float) and math.isfinite(value)


def section_07(m: FailureAnalysis) -> str:
    out = ["## 07 · Failure analysis (test split, thresholds from validation)", ""]
    out += [
        "Test images: "
        + ", ".join(f"{c} {_size(n, m.test_photos.get(c))}" for c, n in m.test_images.items()),
        "",
        f"Why test images fail (IoU below {m.fail_iou}, or anything predicted on a "
        "crack-free image; default prompt per class): failing images per measured category, "
        "and the share that meets the criterion of a named category (all but 'unexplained'):",
        "",
    ]
    out.append(_table([
        {"dataset": d, **v, "in a named category": m.explained_share.get(d)}
        for d, v in m.taxonomy_counts.items()
    ]))
    if m.conclusion:
        out += ["", m.conclusion]
    if m.best_image_sentences:
        out += ["", *(f"- {sentence}." for sentence in m.best_image_sentences)]
    if m.root_causes:
        out += ["", "Root causes, from those counts (most frequent first):", ""]
        out.append(_table(m.root_causes))
    if m.rectangle_bias:
        out += [
            "",
            "The same taping test predictions (default prompt, threshold chosen on validation) "
            "scored against the rectangle labels and against the true seams, with the predicted "
            "area as a multiple of each label's (median per image; above 1 against the "
            "rectangles, the higher rectangle score comes from over-segmentation, not from "
            "drawing rectangles):",
            "",
        ]
        out.append(_table(m.rectangle_bias, ["scored_against", "images", "iou", "dice", "cldice",
                                              "bf1", "predicted_area_ratio"]))
    q = m.refinement_iou_vs_true_seams or {}
    if all(_is_number(q.get(k)) for k in ("rectangle_iou", "refined_iou")):  # demo data only
        out.append(
            f"\nBox refinement vs true seams: rectangles IoU {q['rectangle_iou']:.3f}, "
            f"refined IoU {q['refined_iou']:.3f} (mean over demo taping images).\n"
        )
    if m.refined_training_effect:
        out += ["", "Training on refined masks, scored on test against the true seams:", ""]
        out.append(
            _table(
                m.refined_training_effect,
                ["trained_on", "threshold", "images", "iou", "dice", "cldice", "bf1"],
            )
        )
    if m.refined_gain:
        out += ["", "The same taping test IoU against the true seams with its interval over "
                "photos, and the refined model's paired gain over the rectangles':", ""]
        out.append(_table(m.refined_gain, ["mode", "photos", "pairs", "iou", "iou_low",
                                           "iou_high", "diff", "diff_low", "diff_high"]))
    if m.refinement_verdict:
        out += ["", " ".join(m.refinement_verdict)]
    return "\n".join(out)


SECTIONS = {
    "01_data_inspection": section_01,
    "02_mask_rendering": section_02,
    "03_joint_dataset": section_03,
    "04_lora_training": section_04,
    "05_threshold_sweep": section_05,
    "06_full_vs_lora": section_06,
    "07_failure_analysis": section_07,
}


def _header(metrics: Mapping[str, NotebookResults], run: str) -> str:
    first = next(iter(metrics.values()))
    exports = getattr(first, "exports", None)
    models = sorted({str(m.model) for m in metrics.values() if hasattr(m, "model")})
    seeds = sorted({str(m.seed) for m in metrics.values() if hasattr(m, "seed")})
    lines = [
        f"# Course report: {run}",
        "",
        f"- profile: **{first.profile}**",
        f"- data: **{first.data}**"
        + (f" ({', '.join(exports.values())})" if exports else ""),
        f"- model: **{', '.join(models) or '?'}**",
        f"- seed: **{', '.join(seeds) or '?'}**",
        f"- notebooks with metrics: {', '.join(metrics)}",
        "",
        "Test scores are at thresholds chosen on validation; splits with fewer than "
        f"{SMALL_SPLIT} photos are flagged in each section's list of split sizes (an export's "
        "augmented copies of one photo count once: they are not independent test cases).",
        "",
    ]
    return "\n".join(lines)


def runtime_rows(metrics: Mapping[str, NotebookResults]) -> list[dict[str, Any]]:
    """Device, GPU, precision and peak memory of every notebook that recorded its runtime."""
    rows = []
    for name, m in metrics.items():
        if not isinstance(m, ModelResults):
            continue
        rt = m.runtime
        peak = m.peak_memory_mb
        rows.append(
            {
                "notebook": name,
                "device": rt.get("device", "?"),
                "GPU": rt.get("gpu") or "-",
                "precision": rt.get("precision", "?"),
                "peak memory (MB)": round(float(peak))
                if peak is not None and math.isfinite(peak)
                else None,  # a NaN is listed under "Values to check"
            }
        )
    return rows


def _runtime_section(metrics: Mapping[str, NotebookResults]) -> str:
    rows = runtime_rows(metrics)
    if not rows:
        return ""
    return "\n".join(
        [
            "Where the notebooks ran (peak memory: allocated GPU memory on CUDA, the process's "
            "peak resident memory on CPU):",
            "",
            _table(rows),
        ]
    )


def cap_note(metrics: Mapping[str, NotebookResults]) -> str:
    """A plain statement that evaluation was capped, or "" when every image was evaluated."""
    capped = {
        name: m.evaluation_cap
        for name, m in metrics.items()
        if isinstance(m, ModelResults) and m.evaluation_cap.get("capped")
    }
    if not capped:
        return ""
    limits = sorted({int(c["max_images_per_split_and_class"]) for c in capped.values()})
    return (
        f"**Evaluation was capped** at {' / '.join(map(str, limits))} image(s) per split and "
        f"class in {', '.join(capped)}: every validation and test score below comes from those "
        "few images only. They show that the pipeline runs; they measure nothing.\n"
    )


# The figures each section discusses, shown inline (every figure is also listed at the end).
KEY_FIGURES: dict[str, tuple[str, ...]] = {
    "02_mask_rendering": ("02_rectangle_vs_seam.png",),
    "03_joint_dataset": ("03_split_sizes.png",),
    "04_lora_training": ("04_training_curves.png", "04_prompt_switch.png"),
    "05_threshold_sweep": ("05_threshold_curves.png", "05_threshold_stability.png"),
    "06_full_vs_lora": ("06_modes.png",),
    "07_failure_analysis": ("07_gallery_cracks.png", "07_gallery_taping.png"),
}


def missing_sections(out_dir: str | Path, metrics: Mapping[str, NotebookResults]) -> dict[str, str]:
    """Each course notebook without results in `out_dir`, and why its section is missing."""
    return {
        name: f"no metrics/{name}.json in {Path(out_dir).name}: that notebook has not run"
        for name in SECTIONS
        if name not in metrics
    }


def bad_values(out_dir: str | Path, metrics: Mapping[str, NotebookResults]) -> list[str]:
    """Every NaN or infinite number in the results, as "metrics/<file>: <field> = nan" (the
    file named inside the run folder `out_dir`)."""
    return [
        f"metrics/{name}.json: {found}"
        for name, m in metrics.items()
        for field, value in m.to_dict().items()
        if value is not None  # an optional field that was not measured
        for found in non_finite_fields(value, field)
    ]


def _checks_section(missing: Mapping[str, str], bad: Sequence[str]) -> str:
    lines = []
    if missing:
        lines += ["**Missing sections:**", ""] + [f"- {n}: {why}" for n, why in missing.items()]
        lines.append("")
    if bad:
        lines += ["**Values to check** (not numbers; their table cells are empty):", ""]
        lines += [f"- {b}" for b in bad] + [""]
    return "\n".join(lines)


def _summary_section(metrics: Mapping[str, NotebookResults]) -> str:
    """The run's summary, written from its numbers (`helpers.course.summaries`)."""
    lines = course_summary(metrics)
    return "## What this run showed\n\n" + "\n".join(f"- {line}" for line in lines) + "\n"


def build_report(out_dir: str | Path, run: str | None = None) -> Path:
    """Write `<out_dir>/report.md` from `<out_dir>/metrics/*.json`; returns its path.

    The metrics are read through `helpers.course.records`, so every number here is one the notebooks
    wrote; nothing is recomputed.
    """
    out_dir = Path(out_dir)
    metrics = read_results(out_dir)
    if not metrics:
        raise FileNotFoundError(f"no notebook metrics in {out_dir / 'metrics'}; run the notebooks")
    missing = missing_sections(out_dir, metrics)
    parts = [_header(metrics, run or out_dir.name), _summary_section(metrics)]
    checks = _checks_section(missing, bad_values(out_dir, metrics))
    parts += [part for part in (checks, cap_note(metrics), _runtime_section(metrics)) if part]
    for name in SECTIONS:
        if name not in metrics:
            parts.append(f"## {name}\n\n_Section missing: {missing[name]}._\n")
            continue
        m = metrics[name]
        parts.append(SECTIONS[name](m))
        parts += [
            f"\n![{fig}](figures/{fig})\n"
            for fig in KEY_FIGURES.get(name, ())
            if (out_dir / "figures" / fig).is_file()
        ]
        parts.append(f"\nFull notebook: [html/{name}.html](html/{name}.html)\n")
    times = out_dir / "metrics" / "run_times.json"
    if times.is_file():
        secs = read_json(times)["seconds"]
        parts.append(
            "## Run times\n\nSeconds of each notebook's latest execution (work it found cached, "
            "such as a finished training run, is not repeated):\n\n"
            + _table([{"notebook": k, "seconds": v} for k, v in secs.items()])
        )
    figures = sorted((out_dir / "figures").glob("*.png")) if (out_dir / "figures").is_dir() else []
    if figures:
        parts.append(
            "## Figures\n\n" + "\n".join(f"- [{f.name}](figures/{f.name})" for f in figures) + "\n"
        )
    return write_text(out_dir / "report.md", "\n".join(parts))


def export_html(out_dir: str | Path) -> list[Path]:
    """HTML of every executed notebook in `<out_dir>/executed/` into `<out_dir>/html/`."""
    from nbconvert import HTMLExporter

    out_dir = Path(out_dir)
    exporter = HTMLExporter()
    written = []
    for nb in sorted((out_dir / "executed").glob("*.ipynb")):
        body, _ = exporter.from_filename(str(nb))
        written.append(write_text(out_dir / "html" / f"{nb.stem}.html", body))
    return written


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.report",
        description=(
            "Gather every notebook's metrics of one run into outputs/<run>/report.md and "
            "export its executed notebooks to outputs/<run>/html/."
        ),
    )
    parser.add_argument(
        "--profile", default="demo",
        help="the run to report: a folder under outputs/ written by make run, make smoke or "
        "helpers.course.runner (default demo)",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    found = sorted(p.parent.parent.name for p in OUTPUTS_DIR.glob("*/metrics/*.json"))
    if not (OUTPUTS_DIR / args.profile / "metrics").is_dir():
        runs = ", ".join(sorted(set(found))) or "none yet"
        print(
            f"error: no run {args.profile!r} in {shown(OUTPUTS_DIR)} (runs with metrics: {runs}); "
            f"run the notebooks first, e.g. make run PROFILE={args.profile}",
            file=sys.stderr,
        )
        return 2
    out_dir = profile_dir(args.profile)
    html = export_html(out_dir)
    try:
        report = build_report(out_dir, args.profile)
        cards = write_model_cards(out_dir)  # the cards now hold the scores of 05 and 06
    except (OSError, ValueError, KeyError, TypeError) as err:  # ResultsError is a ValueError
        # a metrics file off the schema, unreadable or half-written: one line, not a traceback
        print(f"error: cannot build the report of {args.profile!r}: {err}", file=sys.stderr)
        return 2
    print(
        f"wrote {shown(report)}, {len(cards)} model card(s) and {len(html)} HTML notebook(s) in "
        f"{shown(out_dir / 'html')}"
    )
    metrics = read_results(out_dir)
    for name, why in missing_sections(out_dir, metrics).items():
        print(f"note: section {name} missing: {why}", file=sys.stderr)
    bad = bad_values(out_dir, metrics)
    for line in bad:
        print(f"error: not a number: {line}", file=sys.stderr)
    unclean = scan_outputs(out_dir)  # what a student keeps: no machine path, NaN or repr
    for line in unclean:
        print(f"error: {args.profile}/{line}", file=sys.stderr)
    return 1 if bad or unclean else 0


if __name__ == "__main__":
    raise SystemExit(main())
