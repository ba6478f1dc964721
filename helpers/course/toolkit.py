"""Everything the course notebooks call, importable from one place and listed here by name.

    from helpers.course.toolkit import open_course, trained_model, choose_thresholds

A notebook imports exactly the names it uses, in one statement, and this table says where
each one lives (its home module, grouped by layer as in README.md's package map); nothing is
defined here. A name is imported from its home only when asked for, so a notebook loads only
the modules of the names it imports (one that reads exports never loads transformers).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

HOMES: dict[str, tuple[str, ...]] = {
    # core
    "helpers.core.io": ("read_json", "read_mask"),
    "helpers.core.paths": ("shown",),
    # data
    "helpers.data.dataset": ("JointSegmentationDataset", "make_collate"),
    "helpers.data.describe": (
        "annotations_frame", "export_summary", "records_frame", "variants_per_source",
    ),
    "helpers.data.images": ("load_rgb",),
    "helpers.data.items": ("item_caption", "target_states"),
    "helpers.data.prompts": ("DEFAULT_PROMPT", "PROMPTS", "class_of_prompt"),
    "helpers.data.roboflow": ("coco_categories", "read_export"),
    "helpers.data.split": ("SMALL_SPLIT", "export_leakage", "split_sizes"),
    # model
    "helpers.model.architecture": ("full_size_config",),
    "helpers.model.forward": ("segment",),
    "helpers.model.modes": ("apply_mode", "count_parameters", "mode_sizes"),
    "peft": ("LoraConfig",),
    # train
    "helpers.train.gradcheck": ("gradient_report",),
    "helpers.train.losses": ("BCEDiceLoss",),
    "helpers.train.step": ("make_optimizer",),
    "helpers.train.validate": (
        "default_forward", "device_batch", "evaluate_segmentation", "match_size",
    ),
    # demo
    "helpers.demo.tiny_model": ("ensure_tiny_model",),
    # inference
    "helpers.inference.loading": ("load_model", "load_processor"),
    "helpers.inference.mask_files": ("PredictSettings",),
    "helpers.inference.postprocess": ("CHOICE_MARGIN", "METHODS", "choose_method"),
    # evaluate
    "helpers.evaluate.bootstrap": ("LEVEL", "N_RESAMPLES", "describe_gains", "photo_bootstrap"),
    "helpers.evaluate.curves": ("curve_readings",),
    "helpers.evaluate.failures": (
        "FAIL_IOU", "cause_sentence", "failure_conclusion", "failure_counts", "gallery_picks",
        "refinement_quality", "root_cause_table", "taxonomy",
        "best_and_worst", "best_image_sentences", "gallery_gaps", "hidden_passes",
        "refinement_gain", "refinement_verdict",
    ),
    "helpers.evaluate.metrics": ("iou", "mean_scores"),
    "helpers.evaluate.predictions": (
        "evaluate_model", "image_id", "probability_path", "read_probability",
    ),
    "helpers.evaluate.held_out": (
        "CLOSE", "HELD_OUT_PROMPTS", "describe_held_out", "held_out_gaps", "held_out_scores",
    ),
    "helpers.evaluate.protocol": ("evaluate_protocol",),
    "helpers.evaluate.sensitivity": (
        "BLIND_BELOW", "FORMS", "cross_prompt_scores", "describe_by_class", "per_image_sensitivity",
        "prompt_embedding_similarity", "sensitivity_forms", "wrong_prompt_localisation",
    ),
    "helpers.evaluate.stability": (
        "RULE", "against_saved", "describe_peeking", "describe_stability", "threshold_stability",
    ),
    "helpers.evaluate.stored": ("stored_scores",),
    "helpers.evaluate.sweep": (
        "apply_thresholds", "choose_thresholds", "edge_choices", "summary_at", "threshold_curve",
    ),
    # course
    "helpers.course.records": (
        "DataInspection", "MaskRendering", "JointDataset", "LoraTraining", "ThresholdSweep",
        "ModeComparison", "FailureAnalysis",
    ),
    "helpers.course.runs": (
        "datasets", "folder_size_mb", "lora_settings", "train_config", "trained_model",
    ),
    "helpers.course.architecture": ("architecture_figure",),
    "helpers.course.choices": ("choices_reading", "defaults_check", "read_choices"),
    "helpers.course.empty_baseline": (
        "empty_labels", "empty_prediction_scores", "untrained_reading",
    ),
    "helpers.course.listings": ("forward_listings",),
    "helpers.course.prompt_switch": (
        "distinct_photos", "figure_reading", "negative_pair_foreground", "prompt_switch_scores",
        "reading_cut_offs", "switch_figure", "switch_reading", "switch_stats",
    ),
    "helpers.course.explorer": ("explore", "prompt_explorer"),
    "helpers.course.galleries": ("prediction_gallery",),
    "helpers.course.session": ("open_course",),
    "helpers.course.smoke_cap": ("evaluation_manifest",),
    "helpers.course.sources": ("prepared_data",),
    "helpers.course.summaries": ("course_summary", "show_summary"),
    "helpers.course.zero_shot": ("zero_shot_model",),
    "helpers.course.comparison": (
        "blind_reading", "long_forms", "long_localisation", "mode_comparison", "readable",
        "sensitivity_readings",
    ),
    "helpers.course.evaluation_figures": ("modes_figure", "stability_figure"),
    "helpers.course.viz": (
        "CLASS_COLOURS", "CLASS_PALETTE", "bootstrap_bars", "denormalise", "draw_annotations",
        "evenly_spaced", "image_grid", "integer_ticks", "overlay", "probability_grid",
        "save_figure",
        "split_sizes_figure", "with_shown_paths",
    ),
}

HOME: dict[str, str] = {name: module for module, names in HOMES.items() for name in names}
__all__ = sorted(HOME)


def __getattr__(name: str) -> Any:
    """Import `name` from its home module on first use."""
    if name not in HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(HOME[name]), name)
    globals()[name] = value  # the next lookup finds it directly
    return value


def __dir__() -> list[str]:
    return __all__
