"""A capped evaluation set: at most `profile.eval_max_images` images per split and class.

    manifest = evaluation_manifest(prepared_data(cfg).manifest, cfg)
    metrics["evaluation_cap"] = evaluation_cap(full_manifest, manifest, cfg)

Training rows are all kept; validation and test keep a deterministic choice (seeded by the
profile's seed; labelled images first), so every notebook of a run scores the same images and
the training runs they share keep one fingerprint. A profile without a cap changes nothing.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from helpers.course.profiles import Profile

EVAL_SPLITS = ("val", "test")


def _cap_of(profile: Profile) -> int | None:
    cap = profile.eval_max_images
    if cap is None:
        return None
    if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
        raise ValueError(f"eval_max_images must be an int >= 1 or None, got {cap!r}")
    return cap


def evaluation_manifest(manifest: pd.DataFrame, profile: Profile) -> pd.DataFrame:
    """`manifest` with at most `profile.eval_max_images` val/test images per class.

    Within a split and class, images with objects come first, then the rest, each group in an
    order drawn with the profile's seed; the kept rows stay in manifest order.
    """
    cap = _cap_of(profile)
    if cap is None:
        return manifest
    missing = {"split", "dataset"} - set(manifest.columns)
    if missing:
        raise ValueError(f"manifest lacks column(s) {sorted(missing)} needed to cap evaluation")
    rank = np.random.default_rng(profile.seed).permutation(len(manifest))
    labelled = (
        manifest["n_objects"].to_numpy() > 0
        if "n_objects" in manifest.columns
        else np.ones(len(manifest), dtype=bool)
    )
    order = pd.DataFrame(
        {
            "split": manifest["split"].to_numpy(),
            "dataset": manifest["dataset"].to_numpy(),
            "unlabelled": ~labelled,
            "rank": rank,
        }
    )
    evaluated = order["split"].isin(EVAL_SPLITS)
    chosen = (
        order[evaluated]
        .sort_values(["unlabelled", "rank"])
        .groupby(["split", "dataset"], sort=False)
        .head(cap)
        .index
    )
    keep = ~evaluated.to_numpy()
    keep[np.asarray(chosen)] = True
    return manifest[keep].reset_index(drop=True)


def _counts(manifest: pd.DataFrame) -> dict[str, dict[str, int]]:
    rows = manifest[manifest["split"].isin(EVAL_SPLITS)]
    sizes = rows.groupby(["split", "dataset"]).size()
    out: dict[str, dict[str, int]] = {}
    for (split, dataset), n in sizes.items():
        out.setdefault(str(split), {})[str(dataset)] = int(n)
    return out


def evaluation_cap(full: pd.DataFrame, evaluated: pd.DataFrame, profile: Profile) -> dict[str, Any]:
    """What a metrics file records about the cap: its value, and images evaluated vs available."""
    available, kept = _counts(full), _counts(evaluated)
    return {
        "max_images_per_split_and_class": _cap_of(profile),
        "capped": kept != available,
        "evaluated": kept,
        "available": available,
    }
