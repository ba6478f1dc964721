"""How much the chosen threshold depends on which photos happened to be in validation.

`choose_thresholds` picks, per class, the threshold with the best mean validation IoU. With
few validation photos that choice is itself a draw: other photos of the same walls could pick
another threshold, and the test IoU would move with it. `threshold_stability` measures this:
it resamples each class's validation *photos* (`group_id`, as `photo_bootstrap` does for the
test split) with replacement, re-chooses the threshold on every sample with
`choose_thresholds`, and records the chosen threshold and the test IoU it gives.

The rule the course recommends when validation is too small to choose (the bootstrap choices
spread over more than one step of the sweep): take the **median of the bootstrap choices**
(snapped to the sweep's grid) instead of the single best threshold. It pools the choices of
every resample rather than hanging on the one sample validation happens to be; its test IoU is
measured by the same function, beside the single choice's, so a notebook shows both rather
than asserting the rule helps. `against_saved` says whether the thresholds a notebook scores
at are the ones `predict` uses (saved beside the model by notebook 05's rule).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from helpers.core.numbers import signed
from helpers.evaluate.bootstrap import LEVEL, photo_picks
from helpers.evaluate.sweep import choose_thresholds, threshold_curve

N_RESAMPLES = 200
RULE = (
    "when the bootstrap choices of a class spread over more than one sweep step, use the "
    "median of the bootstrap choices (snapped to the sweep grid) instead of the single best "
    "validation threshold"
)


def _snap(value: float, grid: np.ndarray) -> float:
    """The grid value nearest `value` (the lower one on a tie)."""
    return float(grid[np.argmin(np.abs(grid - value) + 1e-9 * grid)])


def threshold_stability(
    table: pd.DataFrame,
    photo_of: Mapping[str, str],
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
    metric: str = "iou",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, draws) of re-choosing each class's threshold on resampled validation photos.

    `table` is a per-image sweep table (`helpers.evaluate.sweep`; splits "val" and "test",
    one row per image, prompt and threshold); `photo_of` maps an image id to its photo
    (group id). `draws` has a row per class and resample: the threshold chosen on that sample
    and the test IoU (mean over test image-prompt pairs, `mean_scores`) at it. `summary` has a
    row per class: val_photos; `chosen` (on all validation photos) and its `test_iou`; the
    bootstrap choices' median, `threshold_low`/`threshold_high` (the `level` percentile
    interval) and `threshold_std`; the interval and std of the test IoU over resamples;
    `steps` (how many sweep steps the interval spans); `median_threshold` (the `RULE`'s
    choice) and its `median_test_iou`; `recommended` (the threshold the rule gives: the single
    choice when the interval spans at most one step, else the median). Deterministic for a seed.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be at least 1, got {n_resamples}")
    val = table[table["split"] == "val"]
    missing = sorted(set(val["image_id"]) - set(photo_of))
    if missing:
        raise KeyError(f"image {missing[0]!r} has no photo (group id)")
    chosen = choose_thresholds(table, split="val", metric=metric)
    test_curve = threshold_curve(table, split="test").set_index(["dataset", "threshold"])["iou"]
    grid = np.sort(table["threshold"].astype(float).unique())
    step = float(np.min(np.diff(grid))) if len(grid) > 1 else 1.0
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    rng = np.random.default_rng(seed)
    draws, summary = [], []
    for cls in sorted(chosen):
        part = val[val["dataset"] == cls]
        mine, n_photos = _resampled_choices(part, photo_of, rng, n_resamples, metric, test_curve)
        draws += mine.to_dict("records")
        # the interval's ends on the sweep grid: the chosen thresholds are grid values
        t_low = np.percentile(mine["threshold"], tails[0], method="lower")
        t_high = np.percentile(mine["threshold"], tails[1], method="higher")
        i_low, i_high = np.percentile(mine["test_iou"], tails)
        median = _snap(float(np.median(mine["threshold"])), grid)
        steps = int(round((t_high - t_low) / step))
        summary.append({
            "dataset": cls, "val_photos": n_photos, "resamples": n_resamples,
            "chosen": chosen[cls], "test_iou": float(test_curve.loc[(cls, chosen[cls])]),
            "threshold_median": float(np.median(mine["threshold"])),
            "threshold_low": float(t_low), "threshold_high": float(t_high),
            "threshold_std": float(mine["threshold"].std(ddof=0)), "steps": steps,
            "test_iou_low": float(i_low), "test_iou_high": float(i_high),
            "test_iou_std": float(mine["test_iou"].std(ddof=0)),
            "median_threshold": median, "median_test_iou": float(test_curve.loc[(cls, median)]),
            "recommended": chosen[cls] if steps <= 1 else median, "level": level,
        })
    return pd.DataFrame(summary), pd.DataFrame(draws)


def _resampled_choices(
    part: pd.DataFrame, photo_of: Mapping[str, str], rng: np.random.Generator,
    n_resamples: int, metric: str, test_curve: pd.Series,
) -> tuple[pd.DataFrame, int]:
    """One class's draws (the threshold chosen on each resample of its validation photos and
    the test IoU there) and its number of validation photos."""
    cls = part["dataset"].iloc[0]
    # row positions of each photo's rows; a photo drawn twice has its rows twice, so it
    # weighs twice in the mean `choose_thresholds` maximises
    positions = part.reset_index(drop=True).groupby(
        part["image_id"].map(photo_of).to_numpy(), sort=True
    ).indices
    photos = sorted(positions)
    draws = []
    for i, row in enumerate(photo_picks(rng, len(photos), n_resamples)):
        sample = part.iloc[np.concatenate([positions[photos[j]] for j in row])]
        t = choose_thresholds(sample, split="val", metric=metric)[cls]
        draws.append({"dataset": cls, "resample": i, "threshold": t,
                      "test_iou": float(test_curve.loc[(cls, t)])})
    return pd.DataFrame(draws), len(photos)


def describe_stability(summary: pd.DataFrame) -> str:
    """One sentence per class, written from `threshold_stability`'s summary."""
    out = []
    for r in summary.itertuples():
        pct = round(100 * r.level)
        spread = (
            f"every resample of its {r.val_photos} validation photos chose {r.chosen:.2f}"
            if r.steps == 0
            else f"resampling its {r.val_photos} validation photos moves the choice over "
            f"{r.threshold_low:.2f}-{r.threshold_high:.2f} ({pct} % of resamples), and the "
            f"test IoU over {r.test_iou_low:.3f}-{r.test_iou_high:.3f}"
        )
        if r.steps <= 1:
            advice = ("validation is large enough to choose (the choices stay within one sweep "
                      "step)")
        elif np.isclose(r.median_threshold, r.chosen):
            advice = (f"the choices spread over {r.steps} sweep steps, more than one, so the rule "
                      f"applies, and its median of the bootstrap choices is the single choice "
                      f"itself, {r.chosen:.2f} (test IoU {r.test_iou:.3f})")
        else:
            advice = (f"the choices spread over {r.steps} sweep steps, more than one, so by the "
                      f"rule (median of the bootstrap choices) use {r.median_threshold:.2f}, "
                      f"test IoU {r.median_test_iou:.3f} against {r.test_iou:.3f} at the single "
                      f"choice {r.chosen:.2f}")
        out.append(f"{r.dataset}: {spread}; {advice}.")
    return " ".join(out)


FLAT = 0.01  # validation IoU of two thresholds less than this apart: the curve is flat there


def describe_peeking(
    chosen: Mapping[str, float],
    peeked: Mapping[str, float],
    val_at_chosen: Mapping[str, float],
    val_at_peeked: Mapping[str, float],
    inflation: Mapping[str, float],
    val_photos: Mapping[str, int],
    flat: float = FLAT,
) -> list[str]:
    """One sentence per class: the threshold validation picks and the one test would pick,
    how far apart validation scores them (flat below `flat`), and the inflation."""
    out = []
    for cls, t in chosen.items():
        if np.isclose(t, peeked[cls]):
            out.append(f"{cls}: validation and test pick the same threshold, {t:.2f}, so "
                       "choosing on test adds nothing here.")
            continue
        gap = val_at_chosen[cls] - val_at_peeked[cls]
        reading = (
            f"the validation curve is flat there (less than {flat} apart), so which of the two "
            "wins depends on which photos validation holds (the stability check measures how much)"
            if gap < flat
            else f"validation prefers its own pick by at least {flat}, so the two splits "
            "disagree about the best threshold"
        )
        out.append(
            f"{cls}: validation picks {t:.2f} (validation IoU {val_at_chosen[cls]:.3f}); test "
            f"would pick {peeked[cls]:.2f}, which validation scores {val_at_peeked[cls]:.3f}, "
            f"{gap:.3f} lower over {val_photos[cls]} validation photos: {reading}. Choosing on "
            f"test would have reported {signed(inflation[cls])} more."
        )
    return out


def against_saved(chosen: Mapping[str, float], folder) -> str:
    """Whether `chosen` (the single validation choice per class) are the thresholds saved
    beside the model in `folder` (notebook 05's rule, which `predict` applies), in a sentence."""
    from helpers.inference.segmenter import SETTINGS_FILE, PredictSettings

    saved = PredictSettings.read(folder).threshold
    if not saved:
        return (f"No thresholds are saved beside this model yet ({SETTINGS_FILE}, written by "
                "notebook 05), so predict would apply 0.5.")
    differ = {c: t for c, t in chosen.items() if c in saved and abs(saved[c] - t) > 1e-9}
    listed = ", ".join(f"{c} {saved[c]:.2f}" for c in sorted(saved))
    if not differ:
        return (f"These are also the thresholds predict applies (saved by notebook 05's rule: "
                f"{listed}).")
    return (
        "predict applies notebook 05's rule instead: " + "; ".join(
            f"{c} {saved[c]:.2f} (here {t:.2f})" for c, t in sorted(differ.items()))
        + ". What follows analyses the single validation choice, the protocol notebook 06 "
        "scores every mode by."
    )
