"""Notebook 06's tables and readings: the modes side by side, the zero-shot base model among
them, and what the prompt-sensitivity forms say about each.

Every sentence here is written from the numbers it is given and states its criterion, so it
stays true on any profile and seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from helpers.core.numbers import fixed, rounded
from helpers.data.prompts import class_images
from helpers.evaluate.sensitivity import BLIND_BELOW, describe_sensitivity

ON_OBJECT = 0.5  # a wrong prompt with at least this share of its pixels on the label finds it


def checkpoint_mb(run: Any) -> float:
    """What a mode saves beyond the base model, in MB: the run's own figure where it has one
    (the zero-shot base model saves nothing), else its best checkpoint folder's size."""
    from helpers.course.runs import folder_size_mb

    own = getattr(run, "checkpoint_mb", None)
    return float(own) if own is not None else folder_size_mb(run.checkpoint)


def mode_row(run: Any, per_class: pd.DataFrame, cuda: bool) -> dict[str, Any]:
    """One mode's row of the comparison: what trains, learning rates, checkpoint size, time per
    epoch (None without training), peak memory (on CUDA only), best epoch, and val/test IoU and
    Dice per class from `per_class` (`summary_at` rows with split, dataset and mode)."""
    log = run.log
    trained = not log.empty
    row: dict[str, Any] = {
        "mode": run.mode, "trainable_parameters": int(run.info["parameters"]["trainable"]),
        "lr": run.info["train_config"]["lr"], "tower_lr": run.info["train_config"]["tower_lr"],
        "checkpoint_mb": checkpoint_mb(run),
        "seconds_per_epoch": round(float(log.seconds.mean()), 1) if trained else None,
    }
    if cuda:
        row["peak_memory_mb"] = round(float(log.peak_mem_mb.max()), 0) if trained else None
    row["best_epoch"] = run.info["best_epoch"]
    for r in per_class[per_class["mode"] == run.mode].itertuples():
        row[f"{r.split}_iou_{r.dataset}"] = round(float(r.iou), 4)
        row[f"{r.split}_dice_{r.dataset}"] = round(float(r.dice), 4)
    return row


def mode_comparison(runs: Mapping[str, Any], per_class: pd.DataFrame, cuda: bool) -> pd.DataFrame:
    """`mode_row` of every run, indexed by mode, in the order of `runs`."""
    rows = [mode_row(run, per_class, cuda) for run in runs.values()]
    # object columns: a count stays an integer beside a missing value (None, null in JSON)
    return pd.DataFrame(rows, dtype=object).set_index("mode")


def _where_wrong(share: float, ratio: float | None = None) -> str:
    """Where one share of the wrong prompts' pixels lies, read against `ON_OBJECT`; with
    `ratio` (wrong over right foreground) under the first ratio cut-off, the wrong prompt
    marks almost nothing, and what little it marks is what is said."""
    from helpers.course.prompt_switch import RATIO_WORDS

    if share < ON_OBJECT:
        return "mostly off the object"
    if ratio is not None and ratio < RATIO_WORDS[0][0]:
        return "the little it marks is the object itself"
    return "it finds the object whatever it is asked"


def _reading_of_forms(mode: str, forms: pd.DataFrame, shares: Mapping[str, float],
                      ratios: Mapping[str, float] | None = None) -> str:
    """One sentence on one mode's sensitivity forms and wrong-prompt localisation (`shares`:
    per image class and "all"; `ratios`: wrong over right foreground per image class)."""
    ratios = ratios or {}
    labelled, every = forms.loc["labelled", "all"], forms.loc["all", "all"]
    deployed, blind = forms.loc["deployed", "all"], forms.loc["deployed_blind", "all"]
    on_object = forms.loc["on_object", "all"]
    beyond = deployed - blind >= BLIND_BELOW
    classes = {c: v for c, v in shares.items() if c != "all" and not pd.isna(v)}
    if pd.isna(shares.get("all", float("nan"))):
        where = "the wrong prompts mark nothing"
    elif classes:
        where = ("of the wrong prompts' pixels, " + "; ".join(
            f"on {class_images(c)} {v:.0%} lie on the image's label "
            f"({_where_wrong(v, ratios.get(c))})"
            for c, v in classes.items()) + f" (cut-off {ON_OBJECT:.0%})")
    else:
        where = (f"{shares['all']:.0%} of the wrong prompts' pixels lie on the image's label "
                 f"({_where_wrong(shares['all'])}; cut-off {ON_OBJECT:.0%})")
    return (
        f"{mode}: sensitivity {fixed(labelled)} on labelled images "
        f"({describe_sensitivity(labelled)}), {fixed(every)} on all images (false alarms on empty "
        f"walls count); deployed at each class's own threshold {fixed(deployed)} against "
        f"{fixed(blind)} for a prompt-blind copy at the same thresholds ("
        + ("the prompt separates the masks beyond what the thresholds do" if beyond
           else "no more than the thresholds alone separate")
        + f"; criterion: at least {BLIND_BELOW} above it); on the object itself {fixed(on_object)} "
        f"({describe_sensitivity(on_object)}); {where}."
    )


def _ratio_clause(matrix: pd.DataFrame) -> str:
    """How much the wrong prompt marks beside the right one, per image class, from a
    cross-prompt matrix (mean foreground shares), in `prompt_switch`'s words and cut-offs."""
    from helpers.course.prompt_switch import RATIO_WORDS, foreground_ratios, ratio_words

    ratios = foreground_ratios(matrix.to_dict("records"))
    if not ratios:
        return ""
    words = [f"on {class_images(c)} {r:.3f} times as much ("
             + ratio_words(r) + ")" for c, r in ratios.items()]
    cuts = ", ".join(f"{c:g}" for c, _ in RATIO_WORDS[:-1])
    return (" By mean foreground share, the wrong prompt marks " + "; ".join(words)
            + f" as the right one (cut-offs {cuts}).")


def sensitivity_readings(
    forms: Mapping[str, pd.DataFrame], localisation: Mapping[str, Mapping[str, float]],
    matrices: Mapping[str, pd.DataFrame] | None = None,
) -> list[str]:
    """One sentence per mode from its `sensitivity_forms` table and its
    `wrong_prompt_localisation` (criteria: `BLIND_BELOW`, `ON_OBJECT`), and with `matrices`
    (each mode's `cross_prompt_matrix`) how much the wrong prompt marks beside the right one:
    a per-image mean can read prompt-aware while a few images carry large false alarms."""
    from helpers.course.prompt_switch import foreground_ratios

    out = []
    for mode, table in forms.items():
        matrix = (matrices or {}).get(mode)
        ratios = foreground_ratios(matrix.to_dict("records")) if matrix is not None else {}
        out.append(_reading_of_forms(mode, table, localisation[mode], ratios)
                   + (_ratio_clause(matrix) if matrix is not None else ""))
    return out


def blind_reading(mode: str, sensitivity: float, cosine: Mapping[str, float]) -> str:
    """Why a model below `BLIND_BELOW` ignores the prompt, read from its text tower's cosine
    similarities of the course prompts (`prompt_embedding_similarity`): whether prompts of the
    other class are as close as prompts of the same class (within 0.01)."""
    within, across = cosine["within"], cosine["across"]
    if across >= within - 0.01:
        why = (f"its text tower gives prompts of the other class embeddings as close (cosine "
               f"{across:.3f}) as prompts of the same class ({within:.3f}), so the decoder has "
               "nothing to tell the classes apart by")
    else:
        why = (f"its text tower does separate the classes (cosine {across:.3f} across, "
               f"{within:.3f} within), so it is the decoder that does not use the difference")
    frozen = {"none": "; nothing is trained in this mode",
              "decoder": "; the text tower is frozen in this mode, so training cannot change that"}
    return (f"{mode} is prompt-blind (sensitivity {fixed(sensitivity, 4)}, within "
            f"{BLIND_BELOW:g} of 0): "
            f"at one threshold it marks nearly the same pixels whatever it is asked, so its IoU "
            f"does not come from the prompt; {why}{frozen.get(mode, '')}.")


def long_forms(forms: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The forms of every mode as one table: a row per mode and form."""
    return pd.concat(forms, names=["mode"]).reset_index()


def readable(frame: pd.DataFrame, digits: int = 3, missing: str = "-") -> pd.DataFrame:
    """`frame` for display: numbers rounded to `digits`, a missing value written as `missing`
    (a word a reader can read, not NaN), counts left as they are."""
    return rounded(frame, digits).astype(object).where(frame.notna(), missing)


def long_localisation(localisation: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """The wrong prompts' share on the label, a row per mode (NaN where they mark nothing)."""
    return pd.DataFrame.from_dict(localisation, orient="index").rename_axis("mode").reset_index()
