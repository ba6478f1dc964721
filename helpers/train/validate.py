"""Validation during training: per-class IoU and Dice at the training resolution."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from helpers.core.distributed import gather
from helpers.core.overlap import dice_from_counts, iou_from_counts
from helpers.core.progress import bar
from helpers.core.runtime import Runtime, model_device, to_device
from helpers.data.augment import finish_batch

ForwardFn = Callable[[nn.Module, dict[str, Any]], torch.Tensor]


def default_forward(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """`helpers.model.forward.segment` on a collated batch (gradients reach the towers)."""
    from helpers.model.forward import segment

    return segment(model, batch["pixel_values"], batch["input_ids"], batch["attention_mask"])


# Small per-item numbers that are read on the CPU (moving them would make the CPU wait).
CPU_KEYS = ("augment", "image_mean", "image_std")


def device_batch(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """A collated batch on `device`, augmented and normalised there (`finish_batch`)."""
    moved = to_device({k: v for k, v in batch.items() if k not in CPU_KEYS}, device)
    return finish_batch({**moved, **{k: batch[k] for k in CPU_KEYS if k in batch}})


def match_size(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logits as (B, H, W) at the labels' size (bilinear resize when they differ)."""
    if logits.ndim == 2:  # old transformers squeeze batch-size-1 logits
        logits = logits.unsqueeze(0)
    if logits.ndim == 4 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(
            logits.unsqueeze(1).float(), size=labels.shape[-2:], mode="bilinear",
            align_corners=False,
        )[:, 0]
    return logits


def binary_scores(pred: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image IoU and Dice of boolean (B, H, W) masks (`helpers.core.overlap`)."""
    tp = (pred & truth).sum((1, 2)).double()
    fp, fn = pred.sum((1, 2)).double() - tp, truth.sum((1, 2)).double() - tp
    return iou_from_counts(tp, fp, fn), dice_from_counts(tp, fp, fn)


@torch.no_grad()  # not inference_mode: cached text embeddings may be reused in training
def evaluate_segmentation(
    model: nn.Module,
    loader: Iterable[dict[str, Any]],
    forward_fn: ForwardFn,
    threshold: float = 0.5,
    runtime: Runtime | None = None,
    criterion: nn.Module | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Validation scores at the training resolution, on the model's device.

    Prediction: `sigmoid(logits) >= threshold`; truth: soft label `>= 0.5`. Per image IoU
    and Dice (an image whose prediction and truth are both empty scores 1.0), averaged per
    class (`batch["datasets"]`, e.g. "cracks", "taping"). `miou` / `mdice` are the mean
    over classes of those per-class means (no background class). Negative pairs
    (`is_negative`) are skipped. `loss` is the mean criterion value over the scored images.
    `runtime` gives the autocast precision (None: fp32). Under torchrun each rank scores its
    shard of the loader and the sums are merged, so every rank returns the same scores.
    Returns keys `iou_<class>`, `dice_<class>`, `miou`, `mdice` and (with a criterion) `loss`.
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    sums: dict[str, list[float]] = {}  # class -> [IoU sum, Dice sum, images]
    loss_sum = 0.0
    try:
        for batch in bar(loader, desc="validate", leave=False, enabled=progress):
            keep = ~torch.as_tensor(batch["is_negative"]).bool() if "is_negative" in batch else None
            if keep is not None and not bool(keep.any()):
                continue
            batch = device_batch(batch, device)
            with runtime.autocast() if runtime is not None else nullcontext():
                logits = forward_fn(model, batch)
            labels = batch["labels"].float()
            logits = match_size(logits, labels).float()
            names = list(batch["datasets"])
            if keep is not None:
                keep_dev = keep.to(logits.device)
                logits, labels = logits[keep_dev], labels[keep_dev]
                names = [n for n, k in zip(names, keep.tolist(), strict=True) if k]
            if criterion is not None:
                loss_sum += float(criterion(logits, labels)) * len(names)
            iou, dice = binary_scores(torch.sigmoid(logits) >= threshold, labels >= 0.5)
            for name, i, d in zip(names, iou.tolist(), dice.tolist(), strict=True):
                total = sums.setdefault(name, [0.0, 0.0, 0])
                total[0], total[1], total[2] = total[0] + i, total[1] + d, total[2] + 1
    finally:
        model.train(was_training)
    return _means(gather((sums, loss_sum)), criterion is not None)


def _means(per_rank: list[tuple[dict[str, list[float]], float]], with_loss: bool) -> dict:
    """Per-class and overall means of every rank's sums (the same numbers on every rank)."""
    sums: dict[str, list[float]] = {}
    for rank_sums, _ in per_rank:
        for name, values in rank_sums.items():
            sums[name] = [a + b for a, b in zip(sums.get(name, [0.0, 0.0, 0]), values, strict=True)]
    n_scored = sum(n for _, _, n in sums.values())
    if n_scored == 0:
        raise ValueError("the validation set has no positive (non-negative) images to score")
    out: dict[str, float] = {}
    if with_loss:
        out["loss"] = sum(loss for _, loss in per_rank) / n_scored
    for name in sorted(sums):
        out[f"iou_{name}"] = sums[name][0] / sums[name][2]
        out[f"dice_{name}"] = sums[name][1] / sums[name][2]
    out["miou"] = sum(out[f"iou_{n}"] for n in sums) / len(sums)
    out["mdice"] = sum(out[f"dice_{n}"] for n in sums) / len(sums)
    return out
