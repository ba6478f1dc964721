"""Why the demo trains with `bce_weight` 3, `negative_rate` 1.0 and `lr` 5e-3: a validation sweep.

    python -m helpers.choices --profile demo

`sweep_choices` trains LoRA through the course's own cached path (`trained_model`, into
`outputs/<profile>-choices/models/lora-*`, apart from the notebooks' runs), changing one
setting at a time around the profile's values (`GRID`; the run with every default is shared),
and scores each run on **validation only**: the test rows never reach the sweep. Per class a
threshold is chosen on validation (`choose_thresholds`) and the mean per-image IoU over every
prompt of the class is read there (`summary_at`); val mIoU is the mean of the two classes. Two
false-alarm rates sit beside it, each the share of image-prompt pairs that mark any pixel where
nothing should be marked: empty-label validation images under their own class's prompts, and
every validation image under the other class's prompts (what negative pairs train), each
prompt at its own class's threshold, as `predict` would use it.

The table is written once by the command and kept with the notebooks
(`notebooks/data/demo_choices.csv` and its `.json` of settings); `read_choices` reads it back
and `choices_reading` says in sentences, from its numbers, what it supports and what it does not.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd

from helpers.core.io import atomic_path, read_json, write_json
from helpers.core.paths import NOTEBOOKS_DIR, profile_dir, shown
from helpers.course.profiles import PROFILES, Profile

# The settings compared and the values tried; each profile value is added where it is missing.
GRID: dict[str, tuple[float, ...]] = {
    "bce_weight": (1.0, 3.0),
    "negative_rate": (0.25, 1.0),
    "lr": (1e-3, 5e-3, 2e-2),
}
SUPPORTED = ("demo",)  # the grid is placed around the demo profile's values
SPLIT = "val"  # choices are made on validation; the test split never enters the sweep
DEFAULTS_RUN = "lora-defaults"
COLUMNS = (
    "setting", "value", "default", "val_iou_cracks", "val_iou_taping", "val_miou",
    "false_alarms_empty", "false_alarms_wrong_prompt", "best_epoch", "epochs", "seed", "run",
)
# What a reader should know about a setting beyond its numbers (true by construction).
NOTES: dict[str, str] = {
    "negative_rate": "Negative pairs come on top of the positive items, so a higher rate also "
    "means more optimiser steps per epoch.",
}
LEVEL = 0.01  # val mIoU gaps up to this are read as level: one seed, 42 validation images
CRITERION = (
    "val mIoU: per class, the mean per-image IoU over every prompt of the class at the "
    "threshold chosen for that class on the same validation images, then the mean of the two "
    "classes; false alarms (image-prompt pairs marking any pixel where nothing should be "
    "marked) are read beside it"
)


def choices_path(profile: str = "demo") -> Path:
    """Where the cached table of a profile is kept: `notebooks/data/<profile>_choices.csv`."""
    return NOTEBOOKS_DIR / "data" / f"{profile}_choices.csv"


@dataclass(frozen=True)
class Variant:
    """One training run of the sweep: the profile with at most one setting changed."""

    setting: str  # the changed setting, or "defaults"
    value: float | None  # its value (None for the defaults run)
    name: str  # the run's folder under `outputs/<run>/models/`
    profile: Profile


def _same(a: float, b: float) -> bool:
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)


def run_name(setting: str, value: float) -> str:
    """The folder name of the run that changes `setting` to `value`: `lora-lr-0.02`."""
    return f"lora-{setting}-{value:g}"


def grid_values(profile: Profile, grid: Mapping[str, Sequence[float]] = GRID
                ) -> dict[str, list[float]]:
    """Per setting, the values tried, sorted, with the profile's own value among them."""
    known = {f.name for f in fields(Profile)}
    out: dict[str, list[float]] = {}
    for setting, values in grid.items():
        if setting not in known:
            raise ValueError(f"unknown profile setting {setting!r} in the grid")
        default = float(getattr(profile, setting))
        tried = [float(v) for v in values]
        if not any(_same(v, default) for v in tried):
            tried.append(default)
        out[setting] = sorted(tried)
    return out


def variants(profile: Profile, grid: Mapping[str, Sequence[float]] = GRID) -> list[Variant]:
    """The runs: the profile itself once, then each other value of each setting, one at a time."""
    runs = [Variant("defaults", None, DEFAULTS_RUN, profile)]
    for setting, values in grid_values(profile, grid).items():
        for value in values:
            if not _same(value, getattr(profile, setting)):
                changed = replace(profile, **{setting: value})
                runs.append(Variant(setting, value, run_name(setting, value), changed))
    return runs


def _false_alarm_share(rows: pd.DataFrame) -> float:
    """Share of image-prompt rows that mark any pixel (NaN without rows)."""
    return float(((rows["tp"] + rows["fp"]) > 0).mean()) if len(rows) else float("nan")


def validation_iou(table: pd.DataFrame) -> tuple[dict[str, float], dict[str, float]]:
    """IoU per class on validation at the thresholds chosen there per class, and those
    thresholds (`table`: an `evaluate_model` table; its other splits are ignored)."""
    from helpers.evaluate.sweep import choose_thresholds, summary_at

    chosen = choose_thresholds(table, split=SPLIT, by=["dataset"])
    summary = summary_at(table, chosen, split=SPLIT).set_index("dataset")
    return {cls: float(summary.loc[cls, "iou"]) for cls in ("cracks", "taping")}, chosen


def validation_scores(table: pd.DataFrame, wrong: pd.DataFrame) -> dict[str, float]:
    """IoU per class, mIoU and both false-alarm shares from validation sweep tables.

    `table`: every validation image under its own class's prompts; `wrong`: under the other
    class's prompts (`evaluate_model` tables). Thresholds are chosen per class on `table`.
    """
    from helpers.data.prompts import class_of_prompt
    from helpers.evaluate.sweep import apply_thresholds

    for name, frame in (("table", table), ("wrong", wrong)):
        if set(frame["split"]) - {SPLIT}:
            raise ValueError(f"{name} holds splits other than {SPLIT!r}: the sweep is on "
                             f"validation only")
    iou, chosen = validation_iou(table)
    own = apply_thresholds(table, chosen, split=SPLIT)
    per_prompt = {p: chosen[class_of_prompt(p)] for p in wrong["prompt"].unique()}
    other = apply_thresholds(wrong, per_prompt, split=SPLIT, by=["prompt"])
    return {
        "val_iou_cracks": iou["cracks"],
        "val_iou_taping": iou["taping"],
        "val_miou": (iou["cracks"] + iou["taping"]) / 2,
        "false_alarms_empty": _false_alarm_share(own[(own["tp"] + own["fn"]) == 0]),
        "false_alarms_wrong_prompt": _false_alarm_share(other),
    }


def score_variant(variant: Variant, manifest: pd.DataFrame, run: str,
                  progress: bool = True) -> dict[str, float]:
    """Train (or load) one run through `trained_model` and score it on validation only; with
    the run's best epoch (the checkpoint it keeps, by the loop's validation mIoU)."""
    from helpers.course.runs import trained_model
    from helpers.evaluate.predictions import evaluate_model
    from helpers.evaluate.sensitivity import other_class_prompts

    cfg = variant.profile
    model = trained_model(cfg, "lora", manifest, run, name=variant.name, progress=progress)
    store = profile_dir(run) / "predictions" / variant.name
    segmenter, key = model.segmenter(), model.evaluation_key
    batch = cfg.eval_batch_size or cfg.batch_size
    table, _ = evaluate_model(segmenter, manifest, store, key=key, splits=(SPLIT,),
                              batch_size=batch, progress=progress)
    wrong, _ = evaluate_model(segmenter, manifest, store / f"other-class-prompts-{SPLIT}",
                              key=f"{key}-other-class-{SPLIT}", splits=(SPLIT,),
                              prompts=other_class_prompts(), batch_size=batch, progress=progress)
    return {**validation_scores(table, wrong), "best_epoch": int(model.info["best_epoch"])}


def sweep_choices(
    profile: Profile,
    manifest: pd.DataFrame,
    epochs: int | None = None,
    run: str | None = None,
    grid: Mapping[str, Sequence[float]] = GRID,
    progress: bool = True,
) -> pd.DataFrame:
    """Train LoRA with one setting changed at a time and score every run on validation.

    Each run trains `epochs` epochs (default: the profile's, so the table judges the settings
    the notebooks train with). A row per setting and value tried (`COLUMNS`); the three rows
    at the profile's own values share one run (`run` names it). Runs go to
    `outputs/<run or "<profile>-choices">/` and are reused while their settings are unchanged.
    Only train and validation rows of `manifest` are passed on.
    """
    epochs = profile.epochs if epochs is None else epochs
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    base = replace(profile, epochs=epochs)
    kept = manifest[manifest["split"].isin(["train", SPLIT])].reset_index(drop=True)
    run = run or f"{profile.name}-choices"
    scores = {v.name: score_variant(v, kept, run, progress) for v in variants(base, grid)}
    rows = []
    for setting, values in grid_values(base, grid).items():
        for value in values:
            default = _same(value, getattr(base, setting))
            name = DEFAULTS_RUN if default else run_name(setting, value)
            rows.append({"setting": setting, "value": value, "default": default,
                         **{k: round(v, 4) for k, v in scores[name].items()},
                         "epochs": epochs, "seed": base.seed, "run": name})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def sample_sizes(manifest: pd.DataFrame) -> dict[str, int]:
    """How many validation images, photos and image-prompt pairs the false alarms rest on."""
    from helpers.data.prompts import PROMPTS

    val = manifest[manifest["split"] == SPLIT]
    empty = val[val["mask_fraction"] == 0]
    others = {c: sum(len(p) for o, p in PROMPTS.items() if o != c) for c in PROMPTS}
    return {
        "val_images": len(val),
        "val_photos": int(val["group_id"].nunique()) if "group_id" in val else len(val),
        "empty_label_images": len(empty),
        "empty_label_pairs": int(sum(len(PROMPTS[c]) for c in empty["dataset"])),
        "wrong_prompt_pairs": int(sum(others[c] for c in val["dataset"])),
    }


def write_choices(table: pd.DataFrame, settings: Mapping[str, Any], out: str | Path) -> Path:
    """Write the table as CSV and `settings` as JSON beside it (`.json`), each atomically."""
    out = Path(out)
    with atomic_path(out) as tmp:
        table.to_csv(tmp, index=False)
    write_json(out.with_suffix(".json"), dict(settings))
    return out


def defaults_check(choices: pd.DataFrame, table: pd.DataFrame, best_epoch: int,
                   profile: str, epochs: int, seed: int) -> str:
    """Whether the stored table's defaults row is the run a notebook just trained: the same
    best epoch and validation IoU per class (`table`: that run's `evaluate_model` table, scored
    as `validation_scores` scores). A table from other code or settings is called stale."""
    meta = choices.attrs.get("settings", {})
    d = choices[choices["default"].astype(bool)].iloc[0]
    if (meta.get("profile"), int(d.epochs), int(d.seed)) != (profile, epochs, seed):
        return (f"The choices table holds the {meta.get('profile', 'demo')} profile's runs "
                f"({int(d.epochs)} epochs, seed {int(d.seed)}); this run ({profile}, {epochs} "
                f"epochs, seed {seed}) is not one of them.")
    mine = {c: round(v, 4) for c, v in validation_iou(table)[0].items()}
    stored = {c: float(getattr(d, f"val_iou_{c}")) for c in ("cracks", "taping")}
    if int(d.best_epoch) == best_epoch and all(abs(mine[c] - stored[c]) < 1e-4 for c in mine):
        return (f"The choices table's defaults row is this run: best epoch {best_epoch}, "
                f"validation IoU cracks {mine['cracks']:.4f} and taping {mine['taping']:.4f} in "
                "both (the table's protocol: thresholds chosen on validation, full resolution, "
                "every prompt; not the loop's threshold 0.5 at the model's input size).")
    return (f"The choices table's defaults row is not this run (table: best epoch "
            f"{int(d.best_epoch)}, validation IoU cracks {stored['cracks']:.4f}, taping "
            f"{stored['taping']:.4f}; this run: best epoch {best_epoch}, cracks "
            f"{mine['cracks']:.4f}, taping {mine['taping']:.4f}): the table was made by other "
            "code or settings; `python -m helpers.choices --profile demo` remakes it.")


def read_choices(path: str | Path | None = None) -> pd.DataFrame:
    """The cached table (default: the demo's), its settings JSON in `.attrs["settings"]`."""
    path = Path(path) if path is not None else choices_path()
    if not path.is_file():
        raise FileNotFoundError(f"no choices table at {shown(path)}; write it with "
                                "`python -m helpers.choices --profile demo`")
    table = pd.read_csv(path)
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{shown(path)} lacks columns {missing}; expected {list(COLUMNS)}")
    table = table[list(COLUMNS)]
    meta = path.with_suffix(".json")
    table.attrs["settings"] = read_json(meta) if meta.is_file() else {}
    return table


def _pairs(share: float, total: int | None) -> str:
    """A false-alarm share as "k of n pairs" where n is known, else as a percentage."""
    if share != share:  # NaN: no such pairs
        return "none measured"
    if total:
        return f"{round(share * total)} of {total}"
    return f"{share:.0%}"


def _false_alarm_contrast(default: Any, other: Any, total: int | None) -> str:
    """How the default's wrong-prompt false alarms compare with `other`'s, as a clause."""
    mine, theirs = default.false_alarms_wrong_prompt, other.false_alarms_wrong_prompt
    if mine != mine or theirs != theirs or mine == theirs:
        return ""
    word = "fewer" if mine < theirs else "more"
    return (f"; under the other class's prompts the default marks something on {word} pairs "
            f"({_pairs(mine, total)} against {_pairs(theirs, total)})")


def choices_reading(table: pd.DataFrame, settings: Mapping[str, Any] | None = None) -> str:
    """What the table says, in sentences generated from its numbers, criterion first."""
    settings = dict(table.attrs.get("settings", {}) if settings is None else settings)
    empty_n, wrong_n = settings.get("empty_label_pairs"), settings.get("wrong_prompt_pairs")
    lines = [f"Criterion: {CRITERION}."]
    lines += [_setting_line(setting, rows, empty_n, wrong_n)
              for setting, rows in table.groupby("setting", sort=False)]
    wrong = table["false_alarms_wrong_prompt"].dropna()
    if len(wrong):
        low, high = _pairs(wrong.min(), wrong_n), _pairs(wrong.max(), wrong_n)
        span = low if low == high else f"from {low} to {high}"
        lines.append(f"Under the other class's prompts the runs mark something on {span} "
                     "wrong-prompt pairs.")
    lines.append(_best_epochs_line(table))
    first = table.iloc[0]
    epochs, planned = int(first.epochs), settings.get("profile_epochs")
    length = f"{epochs} epochs" + (
        "" if not planned else " (the profile's)" if planned == epochs
        else f" (the profile trains {planned})"
    )
    sample = ""
    if "val_images" in settings:
        sample = (f" on {settings['val_images']} validation images "
                  f"({settings.get('val_photos', '?')} photos; "
                  f"{settings.get('empty_label_images', '?')} images with an empty label)")
    lines.append(
        f"This is one seed ({int(first.seed)}) and {length}{sample}, with thresholds tuned on "
        "the same images: a difference of a few hundredths may not survive another seed or "
        "other photos, and the test split was never used."
    )
    return "\n".join(lines)


def _setting_line(setting: str, rows: pd.DataFrame, empty_n: int | None,
                  wrong_n: int | None) -> str:
    """One setting's sentence: the default against each value tried, then the verdict."""
    default = rows[rows["default"].astype(bool)]
    if len(default) != 1:
        raise ValueError(f"{setting}: expected one row at the profile's value")
    d = default.iloc[0]
    others = rows[~rows["default"].astype(bool)]
    parts = [
        f"{o.val_miou:.3f} at {o.value:g} (false alarms {_pairs(o.false_alarms_empty, empty_n)}"
        f" empty-label pairs, {_pairs(o.false_alarms_wrong_prompt, wrong_n)} wrong-prompt "
        "pairs)"
        for o in others.itertuples()
    ]
    text = (
        f"{setting} {d.value:g} (the default) scores val mIoU {d.val_miou:.3f} (false alarms "
        f"{_pairs(d.false_alarms_empty, empty_n)} empty-label pairs, "
        f"{_pairs(d.false_alarms_wrong_prompt, wrong_n)} wrong-prompt pairs) against "
        + "; ".join(parts) + "."
    )
    best = rows.loc[rows["val_miou"].idxmax()]
    gap = round(float(best.val_miou) - float(d.val_miou), 4)
    if gap > LEVEL:
        text += (f" On validation the default is not the best: {setting} {best.value:g} "
                 f"scores {gap:.3f} more val mIoU" + _false_alarm_contrast(d, best, wrong_n) + ".")
    elif gap > 0:
        text += (f" On val mIoU the default and {setting} {best.value:g} are level ({gap:.3f}"
                 f" apart; gaps up to {LEVEL:g} are read as level)"
                 + _false_alarm_contrast(d, best, wrong_n) + ".")
    else:
        text += " The default scores the highest val mIoU of these values"
        if len(others):
            runner = others.loc[others["val_miou"].idxmax()]
            below = round(float(d.val_miou) - float(runner.val_miou), 4)
            text += (f", level with {setting} {runner.value:g} by the same rule ({below:.3f} below"
                     f"; gaps up to {LEVEL:g} are read as level)" if below <= LEVEL else
                     f", more than {LEVEL:g} above every other value")
        text += "."
    return text + (" " + NOTES[setting] if setting in NOTES else "")


def _best_epochs_line(table: pd.DataFrame) -> str:
    """Each run's kept epoch, and which runs never beat their first."""
    epochs = int(table.iloc[0].epochs)
    runs = table.drop_duplicates("run")
    names = ["the defaults" if r.default else f"{r.setting} {r.value:g}" for r in runs.itertuples()]
    kept = [int(e) for e in runs["best_epoch"]]
    line = (
        f"Best epochs (the checkpoint each run keeps, by the loop's validation mIoU), for "
        f"{', '.join(names)}: {', '.join(map(str, kept))} of {epochs}; "
        "a run whose best epoch is its last might still gain from more epochs."
    )
    stuck = [n for n, e in zip(names, kept, strict=True) if e == 1 and epochs > 1]
    if stuck:
        line += (f" {', '.join(stuck)} kept {'its' if len(stuck) == 1 else 'their'} first "
                 f"epoch: no later one of the {epochs} scored a higher validation mIoU.")
    return line


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        raise SystemExit(_error(message))


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m helpers.choices",
        description="Train LoRA with one setting changed at a time around the profile's "
        "values (bce_weight, negative_rate, lr), score every run on validation only, and "
        "write the table as CSV with its settings as JSON beside it.",
    )
    p.add_argument("--profile", default="demo",
                   help=f"the profile whose choices are checked: {', '.join(SUPPORTED)} "
                   "(default: demo)")
    p.add_argument("--epochs", type=int,
                   help="epochs per run (default: the profile's, as the notebooks train)")
    p.add_argument("--out",
                   help="the CSV to write (default: notebooks/data/<profile>_choices.csv)")
    return p


def _check_out(out: Path) -> str | None:
    """Why `out` cannot be written (None when it can), before any training starts."""
    if out.is_dir():
        return f"--out {shown(out)} is a folder; name a .csv file"
    if out.suffix != ".csv":
        return f"--out must name a .csv file, got {out.name!r}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        return f"cannot create the folder of --out {shown(out)}: {err.strerror or err}"
    if not os.access(out.parent, os.W_OK):
        return f"cannot write to the folder of --out {shown(out)}"
    return None


def main(argv: list[str] | None = None) -> int:
    """The command line: checks its input first, then runs the sweep and writes the table."""
    args = parser().parse_args(argv)
    if args.profile not in SUPPORTED:
        known = "a known profile" if args.profile in PROFILES else "not a profile"
        return _error(f"--profile {args.profile!r} ({known}) is not supported: the grid is "
                      f"placed around the values of {', '.join(SUPPORTED)}")
    if args.epochs is not None and args.epochs < 1:
        return _error(f"--epochs must be >= 1, got {args.epochs}")
    out = Path(args.out) if args.out else choices_path(args.profile)
    problem = _check_out(out)
    if problem:
        return _error(problem)
    try:
        return _run(args.profile, args.epochs, out, given_out=args.out is not None)
    except (ValueError, OSError) as err:
        return _error(str(err).strip().splitlines()[0] if str(err).strip() else repr(err))


def _run(profile: str, epochs: int | None, out: Path, given_out: bool) -> int:
    from helpers.course.session import open_course

    course = open_course(profile=profile)
    epochs = course.cfg.epochs if epochs is None else epochs
    start = time.perf_counter()
    table = sweep_choices(course.cfg, course.manifest, epochs=epochs)
    command = f"python -m helpers.choices --profile {profile}"
    if epochs != course.cfg.epochs:
        command += f" --epochs {epochs}"
    if given_out:
        command += f" --out {shown(out)}"
    settings = {
        "profile": profile, "epochs": epochs, "profile_epochs": course.cfg.epochs,
        "seed": course.cfg.seed, "mode": "lora", "split": SPLIT,
        "grid": grid_values(course.cfg), "criterion": CRITERION,
        "runs": f"outputs/{profile}-choices/models/", **sample_sizes(course.manifest),
        "command": command,
    }
    write_choices(table, settings, out)
    print(table.to_string(index=False))
    print(f"wrote {shown(out)} and {shown(out.with_suffix('.json'))} "
          f"in {time.perf_counter() - start:.0f} s")
    return 0


def _error(message: str) -> int:
    print(f"python -m helpers.choices: error: {message}", file=sys.stderr)
    return 2
