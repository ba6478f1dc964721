"""What marking nothing scores: the reference an untrained model's IoU is read against.

An image whose label is empty (a crack-free wall) scores IoU 1 when the prediction is empty
too, so a model that marks nothing at all scores, per class, the share of images with an
empty label. `empty_prediction_scores` measures that with the training loop's own validation
(`helpers.train.validate.evaluate_segmentation`, same resolution and threshold), and
`untrained_reading` says where the untrained model stands against it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    import torch
    from torch import nn

EMPTY_MARGIN = 0.02  # within this of marking nothing: "no better than marking nothing"
WEAK_GAP = 0.1  # above marking nothing by less than this: "slightly above"


def predict_nothing(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """A forward that marks nothing: logits far below any threshold, at the labels' size."""
    import torch

    return torch.full_like(batch["labels"].float(), -30.0)


def empty_prediction_scores(
    model: nn.Module, loader: Iterable[dict[str, Any]], threshold: float, runtime=None
) -> dict[str, float]:
    """Validation IoU per class of an all-empty prediction, scored as the training loop scores
    (`model` only says which device the batches go to)."""
    from helpers.train.validate import evaluate_segmentation

    scores = evaluate_segmentation(model, loader, predict_nothing, threshold, runtime)
    return {k.removeprefix("iou_"): v for k, v in scores.items() if k.startswith("iou_")}


def empty_labels(manifest: pd.DataFrame, split: str) -> dict[str, int]:
    """Per class, the images of `split` whose label marks nothing."""
    rows = manifest[manifest["split"] == split]
    return {str(k): int(v) for k, v in (rows["mask_fraction"] == 0).groupby(rows["dataset"]).sum()
            .items()}


def untrained_reading(
    untrained: Mapping[str, float],
    empty_iou: Mapping[str, float],
    empty_images: Mapping[str, int],
    images: Mapping[str, int],
    threshold: float,
) -> list[str]:
    """Per class: how many images have an empty label, what marking nothing scores, and where
    the untrained model stands against that (within `EMPTY_MARGIN`, above or below)."""
    out = []
    for cls, score in untrained.items():
        nothing, n, k = empty_iou[cls], images[cls], empty_images.get(cls, 0)
        gap = score - nothing
        if abs(gap) <= EMPTY_MARGIN:
            verdict = (f"no better than marking nothing (within {EMPTY_MARGIN:g} of it, the "
                       "course's margin for level)")
        elif gap > 0 and gap < WEAK_GAP:
            verdict = (f"slightly above marking nothing (by {gap:.3f}: more than the "
                       f"{EMPTY_MARGIN:g} margin, less than {WEAK_GAP:g}): it overlaps the "
                       "objects a little, far from finding them")
        elif gap > 0:
            verdict = (f"above marking nothing by {gap:.3f} (at least {WEAK_GAP:g}): it "
                       "already finds some of the objects")
        else:
            verdict = (f"below marking nothing by {-gap:.3f} (more than the {EMPTY_MARGIN:g} "
                       "margin): its false alarms cost more than it finds")
        vanished = round(nothing * n) - k  # labels too thin to survive the resize
        resized = (" (and more labels are too thin to survive the resize to the scoring "
                   "resolution)" if vanished > 0 else "")
        out.append(
            f"{cls}: {k} of {n} validation images have an empty label{resized}; an empty "
            f"prediction scores IoU 1 on those and 0 on the rest, so marking nothing scores "
            f"{nothing:.3f} (threshold {threshold:g}). The untrained model scores {score:.3f}: "
            f"{verdict}."
        )
    return out
