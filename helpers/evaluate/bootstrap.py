"""How far a test score could move with other photos: a bootstrap over photos.

A mean IoU over a test split is one draw: other photos of the same walls would give another
number. Resampling the split's *photos* (near-duplicate groups, `group_id`) with replacement
and recomputing the mean each time shows how far. Photos, not images, are resampled, because an
export's augmented copies of one photo are not independent cases: resampling copies would
pretend the split is larger than it is.

Every model is resampled on the same photos in each round (a paired bootstrap), so the
difference between two models on the same images gets its own interval, usually narrower
than either model's: the photos that are hard for one model tend to be hard for the other.

The mean is the one `summary_at` reports: over image-prompt pairs, at the chosen thresholds.
Intervals are percentile intervals (Efron & Tibshirani, 1993).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from helpers.core.numbers import signed, signed_interval

N_RESAMPLES = 2000
LEVEL = 0.9  # a 90 % interval


def photo_picks(rng: np.random.Generator, n_photos: int, n_resamples: int) -> np.ndarray:
    """(n_resamples, n_photos) photo indices drawn with replacement: one bootstrap sample of
    the photos per row (resampling photos, not images, for the reason above)."""
    if n_photos < 1:
        raise ValueError("no photos to resample")
    return rng.integers(0, n_photos, size=(n_resamples, n_photos))


def photo_bootstrap(
    scores: Mapping[str, pd.DataFrame],
    photo_of: Mapping[str, str],
    reference: str | None = None,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> pd.DataFrame:
    """Per model and class: mean IoU, its interval over photos, and the paired difference.

    `scores` maps a model name to its scored pairs (columns image_id, dataset, iou; e.g.
    `apply_thresholds(table, chosen, split="test")`), all on the same images. `photo_of` maps
    an image id to its photo (group id). With `reference`, every row also gets the model's
    difference from the reference model's mean (`diff`) and its interval (`diff_low`,
    `diff_high`). Deterministic for a seed.
    """
    if not scores:
        raise ValueError("no scores to resample")
    if not 0 < level < 1:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    if reference is not None and reference not in scores:
        raise KeyError(f"reference {reference!r} is not one of the models {sorted(scores)}")
    tails = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    rng = np.random.default_rng(seed)
    classes = sorted(set().union(*(set(s["dataset"]) for s in scores.values())))
    rows = []
    for cls in classes:
        sums, counts = {}, {}
        photos = None
        for name, frame in scores.items():
            part = frame[frame["dataset"] == cls]
            missing = sorted(set(part["image_id"]) - set(photo_of))
            if missing:
                raise KeyError(f"image {missing[0]!r} has no photo (group id)")
            by_photo = part.groupby(part["image_id"].map(photo_of))["iou"].agg(["sum", "count"])
            if photos is None:
                photos = by_photo.index
            elif not by_photo.index.equals(photos):
                raise ValueError(f"{name!r} was scored on other {cls} photos than the others")
            sums[name], counts[name] = by_photo["sum"].to_numpy(), by_photo["count"].to_numpy()
        picks = photo_picks(rng, len(photos), n_resamples)
        means = {n: sums[n][picks].sum(1) / counts[n][picks].sum(1) for n in scores}
        for name in scores:
            low, high = np.percentile(means[name], tails)
            row = {
                "mode": name, "dataset": cls, "photos": len(photos),
                "pairs": int(counts[name].sum()),
                "iou": float(sums[name].sum() / counts[name].sum()),
                "iou_low": float(low), "iou_high": float(high), "level": level,
            }
            if reference is not None:
                diff = means[name] - means[reference]
                d_low, d_high = np.percentile(diff, tails)
                row.update({
                    "diff": row["iou"] - float(sums[reference].sum() / counts[reference].sum()),
                    "diff_low": float(d_low), "diff_high": float(d_high),
                })
            rows.append(row)
    return pd.DataFrame(rows)


def gain_verdict(low: float, high: float, better: str, worse: str, same: str) -> str:
    """`better` when the whole interval of a difference lies above 0, `worse` when below 0,
    else `same` (the interval contains 0: these photos cannot tell the two apart)."""
    return better if low > 0 else worse if high < 0 else same


def describe_gains(
    boot: pd.DataFrame, reference: str, what: str = "test IoU", seeds: str = "",
    small: int = 20,
) -> list[str]:
    """One sentence per model and class of `photo_bootstrap`'s table (with `reference`): the
    paired difference from the reference, its interval, the photos it was resampled over, and
    the verdict by the interval (above / below / not distinguishable). `seeds` says how the
    models were trained (e.g. "each mode trained once, seed 42"): the interval covers the
    choice of photos only, and the sentence says so. Under `small` photos it adds that the
    interval itself is rough (a few photos allow few distinct resamples)."""
    if "diff" not in boot:
        raise ValueError("the bootstrap table has no differences: pass reference= to it")
    out = []
    for r in boot[boot["mode"] != reference].itertuples():
        pct = f"{r.level:.0%}"
        verdict = gain_verdict(
            r.diff_low, r.diff_high, f"above {reference} on these photos",
            f"below {reference} on these photos", f"not distinguishable from {reference}",
        )
        scope = "the interval covers the choice of photos only"
        scope += f"; {seeds}, so another seed could move it" if seeds else ""
        rough = f"; only {r.photos} photos: the interval itself is rough" * (r.photos < small)
        out.append(
            f"{r.mode} on {r.dataset}: {what} {signed(r.diff)} against {reference}, {pct} interval "
            f"{signed_interval(r.diff_low, r.diff_high)} over {r.photos} photos: {verdict} "
            f"(the criterion: the interval lies wholly above or below 0; {scope}{rough})."
        )
    return out
