"""What each notebook measures, as typed results: the schema of `outputs/<run>/metrics/*.json`.

    ThresholdSweep.record(course, mode=mode, ...)  # outputs/<run>/metrics/05_threshold_sweep.json
    results = ThresholdSweep(profile=cfg.name, data=src.name, ...)
    results.write(out_name)                      # the same, every field given
    ThresholdSweep.read(out_dir)                 # back, checked against this schema

Notebooks fill these classes; `helpers.course.course_report` reads them back through the same
classes, so a key that a notebook renamed or forgot is a one-line error naming the file,
never a silently missing row. A file that is not complete JSON (truncated, half-written) is
a `ResultsError` naming it; `non_finite_fields` names every NaN or infinite number. Tables
are lists of records (one dict per row), as `DataFrame.to_dict("records")` gives them;
per-class values are dicts keyed by class ("cracks", "taping").
"""

from __future__ import annotations

import json
import math
import os
import types
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from helpers.core.io import read_json, write_json
from helpers.core.paths import shown

if TYPE_CHECKING:
    from helpers.course.session import Course

Records = list[dict[str, Any]]
PerClass = dict[str, Any]
PerSplit = dict[str, dict[str, int]]  # split -> class -> images

R = TypeVar("R", bound="NotebookResults")


class ResultsError(ValueError):
    """A metrics file that does not follow the schema (one-line message naming the file)."""


def non_finite_fields(value: Any, where: str = "", nulls: bool = True) -> list[str]:
    """The key paths (e.g. `test['cracks']['iou']`) of every NaN or infinite number in a value
    read from JSON, with the value: `["peak_memory_mb = nan"]`. With `nulls`, a null among the
    numbers of a dict (a score per class, say) counts too, since strict JSON writes a NaN as
    null; the rows of a table (a list of records) may hold nulls where a column does not apply."""
    if isinstance(value, float) and not math.isfinite(value):
        return [f"{where or 'value'} = {value}"]
    found: list[str] = []
    if isinstance(value, dict):
        present = [v for v in value.values() if v is not None]
        numbers = bool(present) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in present
        )
        for key, item in value.items():
            path = f"{where}[{key!r}]" if where else str(key)
            if item is None and nulls and numbers:  # a hole among numbers: a missing number
                found.append(f"{path} = null")
            else:
                found += non_finite_fields(item, path, nulls)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += non_finite_fields(item, f"{where}[{i}]", nulls=False)
    return found


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def type_problem(value: Any, hint: Any, where: str) -> str | None:
    """Why `value` (read from JSON) is not of type `hint`, naming the key path; None if it is.

    Handles the types the schema uses: str, int, float (an int is a float; a bool is neither),
    None, Any, unions, and dicts and lists of those.
    """
    if hint is Any:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if all(type_problem(value, option, where) for option in options):
            return f"{where} is {type(value).__name__}, not {_type_name(hint)}"
        return None
    if hint is type(None):
        return None if value is None else f"{where} is {type(value).__name__}, not None"
    if origin is dict:
        if not isinstance(value, dict):
            return f"{where} is {type(value).__name__}, not a dict"
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        for key, item in value.items():
            problem = type_problem(key, key_hint, f"{where} key") or type_problem(
                item, value_hint, f"{where}[{key!r}]"
            )
            if problem:
                return problem
        return None
    if origin is list:
        if not isinstance(value, list):
            return f"{where} is {type(value).__name__}, not a list"
        (item_hint,) = typing.get_args(hint) or (Any,)
        for index, item in enumerate(value):
            problem = type_problem(item, item_hint, f"{where}[{index}]")
            if problem:
                return problem
        return None
    if hint is float and value is None:
        return None  # a missing number: strict JSON writes NaN as null (`write_json`)
    allowed = {float: (int, float), int: (int,), str: (str,)}.get(hint, (hint,))
    if isinstance(value, bool) and bool not in allowed or not isinstance(value, allowed):
        return f"{where} is {type(value).__name__}, not {_type_name(hint)}"
    return None


def plain(value: Any, hint: Any = Any) -> Any:
    """`value` as the schema's type `hint` stores it: a DataFrame as records (one dict per row)
    for a table, else as a dict of rows (`{index: {column: value}}`); a Series as a dict; a path
    as a string; a NumPy scalar as a Python number; the values of a dict likewise. An empty
    table or Series for a field that may be None (nothing measured) is stored as None."""
    import numpy as np
    import pandas as pd

    optional = type(None) in typing.get_args(hint)
    if isinstance(value, (pd.DataFrame, pd.Series)) and value.empty and optional:
        return None
    if isinstance(value, pd.DataFrame):
        table = typing.get_origin(hint) is list or Records in typing.get_args(hint)
        return value.to_dict(orient="records" if table else "index")
    if isinstance(value, pd.Series):
        return value.to_dict()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return shown(value)  # relative to the repository: no machine path in a metrics file
    if isinstance(value, dict) and typing.get_origin(hint) is dict:
        value_hint = typing.get_args(hint)[1]
        return {k: plain(v, value_hint) for k, v in value.items()}
    return value


def missing_as_nan(value: Any, hint: Any) -> Any:
    """`value` (read from JSON, checked) with null where `hint` wants a float read back as NaN,
    the missing number it was written from; in dicts and lists of floats too."""
    if hint is float:
        return float("nan") if value is None else value
    origin = typing.get_origin(hint)
    if origin is dict and isinstance(value, dict):
        value_hint = (typing.get_args(hint) or (Any, Any))[1]
        return {k: missing_as_nan(v, value_hint) for k, v in value.items()}
    if origin is list and isinstance(value, list):
        (item_hint,) = typing.get_args(hint) or (Any,)
        return [missing_as_nan(v, item_hint) for v in value]
    return value


@dataclass(kw_only=True)
class NotebookResults:
    """Fields every notebook records: which profile and which data."""

    NAME: ClassVar[str] = ""
    profile: str
    data: str
    # "What this run showed": sentences written from the fields below when the notebook
    # records (helpers.course.summaries); the report prints them as recorded
    summary_sentences: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, as written to JSON."""
        return asdict(self)

    def write(self, run: str) -> Path:
        """Write `outputs/<run>/metrics/<NAME>.json` atomically; returns the path."""
        from helpers.core.paths import profile_dir

        return self.write_in(profile_dir(run))

    def write_in(self, out_dir: str | os.PathLike[str]) -> Path:
        """Write `<out_dir>/metrics/<NAME>.json` atomically (checked first); returns the path."""
        self.from_dict(self.to_dict())
        return write_json(self.path(out_dir), self.to_dict())

    @classmethod
    def from_dict(cls: type[R], data: dict[str, Any], source: str = "") -> R:
        """Check `data` against the schema and build the results."""
        names = {f.name for f in fields(cls)}
        required = {
            f.name for f in fields(cls)
            if f.default is MISSING and f.default_factory is MISSING
        }
        where = source or cls.NAME
        unknown, missing = sorted(set(data) - names), sorted(required - set(data))
        if unknown or missing:
            raise ResultsError(
                f"{where} does not match the {cls.__name__} schema (missing {missing}, unknown "
                f"{unknown}); re-run notebook {cls.NAME} to rewrite it"
            )
        hints = typing.get_type_hints(cls)
        for name, value in data.items():
            problem = type_problem(value, hints[name], name)
            if problem:
                raise ResultsError(
                    f"{where} does not match the {cls.__name__} schema ({problem}); re-run "
                    f"notebook {cls.NAME} to rewrite it"
                )
        return cls(**{name: missing_as_nan(value, hints[name]) for name, value in data.items()})

    @classmethod
    def record(cls: type[R], course: Course, **values: Any) -> R:
        """Write this notebook's results for `course`, and say where.

        The fields every run shares come from the course unless given: `profile` and `data`,
        every field named like a profile setting (`model`, `seed`, `image_size`, ...), and for
        a notebook that runs a model its `runtime`, `peak_memory_mb` and `evaluation_cap`.
        Values may be given as pandas and NumPy objects (`plain` stores them as JSON types).
        """
        shared: dict[str, Callable[[], Any]] = {
            "profile": lambda: course.cfg.name,
            "data": lambda: course.sources.name,
            "runtime": lambda: course.runtime.describe(),
            "peak_memory_mb": course.peak_memory_mb,
            "evaluation_cap": course.evaluation_cap,
        }
        names = {f.name for f in fields(cls)}
        for name in names - set(values):
            if name in shared:
                values[name] = shared[name]()
            elif hasattr(course.cfg, name):
                values[name] = getattr(course.cfg, name)
        hints = typing.get_type_hints(cls)
        results = cls(**{k: plain(v, hints.get(k, Any)) for k, v in values.items()})
        from helpers.course.summaries import SUMMARIES, written_summary  # they read this module

        if not results.summary_sentences and type(results) in SUMMARIES:
            results.summary_sentences = written_summary(results)
        path = results.write(course.out_name)
        print("wrote", shown(path))  # outputs/<run>/metrics/<NAME>.json, from the repository
        return results

    @classmethod
    def path(cls, out_dir: str | os.PathLike[str]) -> Path:
        """Where this notebook's results live under a run folder."""
        return Path(out_dir) / "metrics" / f"{cls.NAME}.json"

    @classmethod
    def read(cls: type[R], out_dir: str | os.PathLike[str]) -> R | None:
        """The results stored under `out_dir` (a run folder), or None if not written yet."""
        path = cls.path(out_dir)
        if not path.is_file():
            return None
        try:
            data = read_json(path)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ResultsError(
                f"{path} is not complete JSON ({exc}): truncated or half-written; re-run "
                f"notebook {cls.NAME} to rewrite it"
            ) from exc
        if not isinstance(data, dict):
            raise ResultsError(f"{path} holds a {type(data).__name__}, not a JSON object")
        return cls.from_dict(data, str(path))



@dataclass(kw_only=True)
class ModelResults(NotebookResults):
    """Fields of every notebook that runs a model: where it ran and what it evaluated."""

    model: str
    seed: int
    runtime: dict[str, Any]  # helpers.core.runtime.Runtime.describe()
    peak_memory_mb: float
    evaluation_cap: dict[str, Any]  # helpers.course.smoke_cap.evaluation_cap()


@dataclass(kw_only=True)
class DataInspection(NotebookResults):
    """01: what the exports hold and how their own splits leak."""

    NAME: ClassVar[str] = "01_data_inspection"
    exports: dict[str, str]
    summary: Records
    problems: int
    leakage: Records
    median_variants_per_source: PerClass = field(default_factory=dict)


@dataclass(kw_only=True)
class MaskRendering(NotebookResults):
    """02: rendered masks per class, and the rectangle labels against the true seams."""

    NAME: ClassVar[str] = "02_mask_rendering"
    images: PerClass
    objects: PerClass
    box_fallbacks: PerClass
    mean_mask_fraction: PerClass
    images_without_foreground: PerClass = field(default_factory=dict)
    problems: int = 0
    rectangle_vs_true_seam_iou: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class JointDataset(NotebookResults):
    """03: the leakage-free split, prompts and negative pairs."""

    NAME: ClassVar[str] = "03_joint_dataset"
    seed: int
    split_images: dict[str, dict[str, int]]  # class -> split -> images
    split_photos: dict[str, dict[str, int]] = field(default_factory=dict)  # class, split -> photos
    groups_in_several_splits: int
    negative_rate: float
    negatives_epoch0: int
    image_size: int
    groups: PerClass = field(default_factory=dict)
    source_stems: PerClass = field(default_factory=dict)
    export_leakage: Records = field(default_factory=list)
    split_leakage: Records = field(default_factory=list)
    prompts: dict[str, list[str]] = field(default_factory=dict)
    # epoch 0's items by what their target holds (helpers.data.items.STATES): "object", "no
    # object in the image", "object cropped out", "negative pair"
    item_targets_epoch0: dict[str, int] = field(default_factory=dict)


@dataclass(kw_only=True)
class LoraTraining(ModelResults):
    """04: the gradient trap, LoRA training and the prompt switch on validation."""

    NAME: ClassVar[str] = "04_lora_training"
    split: str = "val"
    image_size: int  # validation images are scored at this square size
    val_threshold: float  # probability threshold of the validation scores
    val_images: int
    val_images_per_class: PerClass
    val_photos_per_class: PerClass = field(default_factory=dict)  # near-duplicate groups
    trainable_parameters: int
    total_parameters: int
    gradient_trap: Records
    val_iou_untrained: PerClass
    val_iou_lora: PerClass
    best_epoch: int
    epochs_run: int
    train_seconds: float
    thresholds_chosen_on_val: PerClass
    prompt_sensitivity_val: PerClass  # class -> sensitivity, and "all"
    cross_prompt_matrix_val: Records
    checkpoint: str
    tiny_pretraining_held_out_iou: dict[str, float] | None = None  # per shape; demo only
    trainable_share: float | None = None  # trainable_parameters / total_parameters
    val_empty_label_images: PerClass = field(default_factory=dict)  # val images, empty label
    val_iou_empty_prediction: PerClass = field(default_factory=dict)  # what marking nothing scores
    written_step: dict[str, float] = field(default_factory=dict)  # the step written out: loss...
    bce_weight: float | None = None  # the loss weights of that step (the profile's)
    dice_weight: float | None = None
    prompt_sensitivity_forms_val: Records = field(default_factory=list)  # sensitivity_forms rows
    wrong_prompt_on_label_val: PerClass = field(default_factory=dict)  # share of W on the label
    wrong_to_right_foreground_val: PerClass = field(default_factory=dict)  # matrix: W / R share
    wrong_prompt_excess_val: Records = field(default_factory=list)  # where W > R, per class
    reading_cut_offs: dict[str, Any] = field(default_factory=dict)  # the readings' criteria


@dataclass(kw_only=True)
class ThresholdSweep(ModelResults):
    """05: thresholds chosen on validation, scored on test; post-processing; resolution."""

    NAME: ClassVar[str] = "05_threshold_sweep"
    mode: str
    image_size: int  # the model's square input (resolution_test's "model" is MODEL_SIZE, 352)
    split_images: PerSplit
    split_photos: PerSplit = field(default_factory=dict)  # near-duplicate groups (group_id)
    small_split_threshold: int  # fewer photos than this: flagged as too small to trust
    thresholds_chosen_on_val: PerClass
    thresholds_if_tuned_on_test: PerClass
    test_iou_at_val_threshold: PerClass
    test_iou_if_tuned_on_test: PerClass
    inflation_from_tuning_on_test: PerClass
    per_class: Records
    per_prompt_test: Records
    resolution_test: Records
    postprocess_ablation: Records
    postprocess_chosen_on_val: PerClass
    postprocess_margin: float
    test_iou_no_postprocess: PerClass
    test_iou_predict_defaults: PerClass
    final_scores: Records
    predict_settings: str
    curve_readings: list[str] = field(default_factory=list)  # what the curves do, per class
    val_iou_at_val_threshold: PerClass = field(default_factory=dict)
    val_iou_at_test_threshold: PerClass = field(default_factory=dict)  # the test's pick, on val
    peeking_readings: list[str] = field(default_factory=list)  # val's pick against test's
    postprocess_gain_val: Records = field(default_factory=list)  # photo bootstrap vs "none"
    postprocess_gain_readings: list[str] = field(default_factory=list)
    threshold_stability: Records = field(default_factory=list)  # per class: resampled val photos
    threshold_stability_reading: str = ""
    threshold_rule: str = ""  # what the course does when validation is too small to choose
    thresholds_for_predict: PerClass = field(default_factory=dict)  # the rule's, per class


@dataclass(kw_only=True)
class ModeComparison(ModelResults):
    """06: the zero-shot base model, decoder-only, LoRA and full fine-tuning under one
    protocol."""

    NAME: ClassVar[str] = "06_full_vs_lora"
    epochs: int
    split_images: PerSplit
    split_photos: PerSplit = field(default_factory=dict)  # near-duplicate groups (group_id)
    thresholds_chosen_on: str
    thresholds: dict[str, PerClass]  # mode -> class -> threshold
    comparison: Records
    per_class: Records
    per_prompt_test: Records
    prompt_sensitivity_test: dict[str, PerClass]  # mode -> class / "all" -> sensitivity
    cross_prompt_matrix_test: dict[str, Records]
    test_iou_photo_bootstrap: Records = field(default_factory=list)  # intervals over photos
    bootstrap_reference: str = "lora"  # the mode test_iou_photo_bootstrap's diff is taken from
    test_iou_vs_lora: Records = field(default_factory=list)  # paired differences from LoRA
    gain_readings: list[str] = field(default_factory=list)  # verdicts, photos and seed stated
    full_size_modes: Records = field(default_factory=list)  # mode_sizes of the real architecture
    prompt_sensitivity_forms: Records = field(default_factory=list)  # mode, form, per class
    wrong_prompt_localisation: Records = field(default_factory=list)  # share on the label
    sensitivity_readings: list[str] = field(default_factory=list)
    held_out_prompts_test: Records = field(default_factory=list)  # mode, dataset, prompt, iou
    held_out_gaps: Records = field(default_factory=list)  # held-out minus training prompts
    held_out_readings: list[str] = field(default_factory=list)


@dataclass(kw_only=True)
class FailureAnalysis(ModelResults):
    """07: why test images fail, by measured category, and what box labels cost."""

    NAME: ClassVar[str] = "07_failure_analysis"
    mode: str
    split: str = "test"
    thresholds_chosen_on_val: PerClass
    test_images: PerClass
    test_photos: PerClass = field(default_factory=dict)  # near-duplicate groups behind them
    fail_iou: float
    taxonomy_counts: dict[str, dict[str, int]]
    explained_share: PerClass
    root_causes: Records
    rectangle_bias: Records | None = None
    refinement_iou_vs_true_seams: dict[str, float] | None = None
    refined_training_effect: Records | None = None
    best_test_iou: PerClass = field(default_factory=dict)  # best labelled image per class
    best_image_sentences: list[str] = field(default_factory=list)  # each against fail_iou
    conclusion: str = ""  # failure_conclusion: what the counts mean
    failure_gallery: Records = field(default_factory=list)  # the failures shown, one per photo
    refine_method: str | None = None
    # the refined model's gain over the rectangles' on the true seams, paired photo bootstrap
    refined_gain: Records | None = None
    refinement_verdict: list[str] = field(default_factory=list)  # the gain, criterion, caveats
    refined_run: str | None = None  # the refined model's folder under models/ (its card reads this)
    refined_thresholds_chosen_on_val: PerClass = field(default_factory=dict)


RESULTS: dict[str, type[NotebookResults]] = {
    cls.NAME: cls
    for cls in (
        DataInspection, MaskRendering, JointDataset, LoraTraining, ThresholdSweep,
        ModeComparison, FailureAnalysis,
    )
}


def read_results(out_dir: str | os.PathLike[str]) -> dict[str, NotebookResults]:
    """Every notebook's results stored under a run folder, in course order."""
    found = {name: cls.read(out_dir) for name, cls in RESULTS.items()}
    return {name: r for name, r in found.items() if r is not None}
