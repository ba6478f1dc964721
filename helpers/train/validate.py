"""Validation during training: per-class IoU and Dice at the training resolution."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

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
    """Per-image IoU and Dice of boolean (B, H, W) masks; both empty counts as 1.0."""
    dims = (1, 2)
    inter = (pred & truth).sum(dims).double()
    p, t = pred.sum(dims).double(), truth.sum(dims).double()
    union = p + t - inter
    empty = union == 0
    iou = torch.where(empty, torch.ones_like(inter), inter / union.clamp_min(1))
    dice = torch.where(empty, torch.ones_like(inter), 2 * inter / (p + t).clamp_min(1))
    return iou, dice


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
    `runtime` gives the autocast precision (None: fp32).
    Returns keys `iou_<class>`, `dice_<class>`, `miou`, `mdice` and (with a criterion) `loss`.
    """
    was_training = model.training
    model.eval()
    device = model_device(model)
    ious: dict[str, list[float]] = {}
    dices: dict[str, list[float]] = {}
    loss_sum, n_scored = 0.0, 0
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
                ious.setdefault(name, []).append(i)
                dices.setdefault(name, []).append(d)
            n_scored += len(names)
    finally:
        model.train(was_training)
    if n_scored == 0:
        raise ValueError("the validation set has no positive (non-negative) images to score")
    out: dict[str, float] = {}
    if criterion is not None:
        out["loss"] = loss_sum / n_scored
    for name in sorted(ious):
        out[f"iou_{name}"] = sum(ious[name]) / len(ious[name])
        out[f"dice_{name}"] = sum(dices[name]) / len(dices[name])
    out["miou"] = sum(out[f"iou_{n}"] for n in ious) / len(ious)
    out["mdice"] = sum(out[f"dice_{n}"] for n in dices) / len(dices)
    return out
