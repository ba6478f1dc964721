"""Prompts training never saw: do the learned classes follow other words for them?

The held-out phrasings are scored on the test split beside the training prompts, at the
thresholds chosen per class on validation from the training prompts only (the threshold a
deployed model would use), so a held-out prompt gets no tuning of its own. Only the test
split needs the held-out prompts (`helpers.evaluate.protocol` adds them to the one extra
pass over test that also scores the other class's prompts).

What the table can show: whether a phrasing the model never trained on marks as well as the
training phrasings (`describe_held_out`, criterion `CLOSE`). That says the model follows the
meaning only when it listens to the prompt at all: a prompt-blind model scores every
phrasing alike, so its closeness says nothing about words (the reading says which it is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

from helpers.core.numbers import fixed, signed
from helpers.data.prompts import PROMPTS, class_images
from helpers.evaluate.sensitivity import BLIND_BELOW, sensitivity_band
from helpers.evaluate.sweep import apply_thresholds, choose_thresholds

HELD_OUT_PROMPTS: dict[str, list[str]] = {
    "cracks": ["wall crack", "hairline fracture"],
    "taping": ["drywall tape joint", "joint compound"],
}

COLUMNS = ["dataset", "prompt", "held_out", "threshold", "images", "iou"]
CLOSE = 0.05  # held-out phrasings within this much mean IoU of the training prompts: "close"


def check_held_out(
    held_out: Mapping[str, Sequence[str]], trained: Mapping[str, Sequence[str]] = PROMPTS
) -> None:
    """Fail when a held-out prompt is one training used, or names a class training lacks."""
    seen = {" ".join(p.split()).lower() for options in trained.values() for p in options}
    for cls, options in held_out.items():
        if cls not in trained:
            raise ValueError(f"held-out class {cls!r} is not one of {sorted(trained)}")
        used = [p for p in options if " ".join(p.split()).lower() in seen]
        if used:
            raise ValueError(f"held-out prompts {used} are training prompts")


def held_out_scores(
    table: pd.DataFrame,
    held_out: Mapping[str, Sequence[str]] = HELD_OUT_PROMPTS,
    trained: Mapping[str, Sequence[str]] = PROMPTS,
    split: str = "test",
) -> pd.DataFrame:
    """Mean IoU on `split` per class and prompt, training and held-out prompts side by side.

    `table` is a sweep table (`evaluate_model`) holding the training prompts on val and
    `split` and the held-out prompts on `split`. Thresholds are chosen per class on val from
    the training prompts' rows only (`choose_thresholds`) and applied to every prompt of the
    class. Columns: dataset, prompt, held_out, threshold, images, iou; training prompts first.
    """
    check_held_out(held_out, trained)
    unseen = {p for options in held_out.values() for p in options}
    known = unseen | {p for options in trained.values() for p in options}
    table = table[table["prompt"].isin(known)]
    missing = sorted(unseen - set(table.loc[table["split"] == split, "prompt"]))
    if missing:
        raise ValueError(f"the table has no {split} rows for the held-out prompts {missing}")
    chosen = choose_thresholds(table[~table["prompt"].isin(unseen)], split="val")
    scored = apply_thresholds(table, chosen, split=split)
    out = (
        scored.groupby(["dataset", "prompt"], sort=False)
        .agg(threshold=("threshold", "first"), images=("image_id", "nunique"), iou=("iou", "mean"))
        .reset_index()
    )
    out.insert(2, "held_out", out["prompt"].isin(unseen))
    prompts = {cls: [*trained[cls], *held_out.get(cls, [])] for cls in trained}
    order = {p: i for i, p in enumerate(p for cls in prompts.values() for p in cls)}
    out = out.iloc[out["prompt"].map(order).argsort(kind="stable")]
    return out[COLUMNS].reset_index(drop=True)


def held_out_gaps(scores: pd.DataFrame) -> pd.DataFrame:
    """Per mode and class (`scores` has a `mode` column): the mean IoU of the training
    prompts, of the held-out prompts, and `gap` = held-out minus training."""
    means = scores.pivot_table(index=["mode", "dataset"], columns="held_out", values="iou",
                               aggfunc="mean", sort=False)
    out = pd.DataFrame({"training_prompts": means[False], "held_out_prompts": means[True]})
    out["gap"] = out["held_out_prompts"] - out["training_prompts"]
    return out.reset_index()


def _closeness(gap: float, close: float) -> str:
    return "close" if abs(gap) <= close else "lower" if gap < 0 else "higher"


def describe_held_out(
    scores: pd.DataFrame, sensitivity: Mapping[str, float | Mapping[str, float]],
    close: float = CLOSE,
    blind_below: float = BLIND_BELOW,
) -> list[str]:
    """One sentence per mode: do its held-out phrasings score within `close` mean IoU of its
    training prompts, class by class (naming the weakest held-out phrasing where they score
    lower), and does that mean anything (its prompt sensitivity, `sensitivity[mode]`, at or
    above `blind_below`)? `sensitivity[mode]` is one figure, or one per image class with "all":
    then a class on whose images the model is prompt-blind gets no verdict of closeness."""
    out = []
    gaps = held_out_gaps(scores)
    for mode, part in gaps.groupby("mode", sort=False):
        unseen = scores[(scores["mode"] == mode) & scores["held_out"]]
        per_class, lower = [], []
        for r in part.itertuples():
            reading = _closeness(r.gap, close)
            if reading == "lower":
                weakest = unseen[unseen["dataset"] == r.dataset].sort_values("iou").iloc[0]
                reading += f"; weakest '{weakest['prompt']}' {weakest['iou']:.3f}"
                lower.append(r.dataset)
            per_class.append(f"{r.dataset} {r.held_out_prompts:.3f} against "
                             f"{r.training_prompts:.3f} ({signed(r.gap)}: {reading})")
        s, per_image_class = sensitivity.get(mode), {}
        if isinstance(s, Mapping):  # per image class and "all"
            per_image_class, s = s, s.get("all")
        if s is None:
            listens = ""
        elif abs(s) < blind_below:
            listens = (f" It is prompt-blind (sensitivity {fixed(s)}, within {blind_below:g} "
                       "of 0), so any phrasing scores alike and closeness says nothing about "
                       "the words.")
        else:
            deaf = [c for c in part["dataset"] if c in per_image_class
                    and abs(per_image_class[c]) < blind_below]  # blind on this class's images
            followed = [c for c in part["dataset"] if c not in lower and c not in deaf]
            name, criterion = sensitivity_band(s)
            listens = (f" With its training prompts it is {name} (sensitivity {fixed(s)}, "
                       f"{criterion})")
            if followed:
                listens += (f": on {' and '.join(followed)} the held-out words mark that class's "
                            "images as its training prompts do (they were not tried on the other "
                            "class's images, so this does not show that they tell the classes "
                            "apart)")
            lower = [c for c in lower if c not in deaf]
            if lower:
                listens += (f"{';' if followed else ':'} on {' and '.join(lower)} it does not "
                            "carry over to the held-out words as well as to its training ones")
            if deaf:
                listens += (f"{';' if followed or lower else ':'} on "
                            + " and ".join(f"{class_images(c)} (sensitivity "
                                           f"{fixed(per_image_class[c])})" for c in deaf)
                            + " it is prompt-blind, so there closeness says nothing about the "
                            "words")
            listens += "."
        out.append(f"{mode}: held-out phrasings score mean test IoU {'; '.join(per_class)} "
                   f"(close: within {close} of the training prompts' mean).{listens}")
    return out
