"""Which trainable weights actually receive a gradient: the stock forward vs the course's."""

from __future__ import annotations

from typing import Any

import pandas as pd
import torch
from torch import nn

from helpers.core.runtime import model_device
from helpers.model.forward import segment, unwrap
from helpers.model.modes import part_of
from helpers.train.losses import BCEDiceLoss
from helpers.train.validate import device_batch

FORWARDS = ("stock", "course")


def gradient_report(
    model: nn.Module, batch: dict[str, Any], forward: str = "course"
) -> pd.DataFrame:
    """One backward pass of BCE+Dice; per model part, trainable tensors and how many of them
    received a nonzero gradient (`with_gradient`).

    On the very first step LoRA's A matrices get an exactly zero gradient because B starts
    at zero; the trap is different: there the towers' tensors get no gradient (None).

    forward "stock": `CLIPSegForImageSegmentation.forward`, which runs both CLIP towers under
    `torch.no_grad()`; "course": `helpers.model.forward.segment`, which does not. The batch
    goes to the model's device first.
    """
    if forward not in FORWARDS:
        raise ValueError(f"unknown forward {forward!r}; choose one of {FORWARDS}")
    batch = device_batch(batch, model_device(model))
    model.zero_grad(set_to_none=True)
    was_training = model.training
    model.train()
    if forward == "stock":
        logits = unwrap(model)(
            pixel_values=batch["pixel_values"],
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
        ).logits
        if logits.dim() == 2:
            logits = logits.unsqueeze(0)
    else:
        logits = segment(model, batch["pixel_values"], batch["input_ids"], batch["attention_mask"])
    labels = torch.nn.functional.interpolate(
        batch["labels"][:, None].float(), size=logits.shape[-2:], mode="area"
    )[:, 0]
    BCEDiceLoss()(logits, labels).backward()
    rows: dict[str, dict[str, int]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        row = rows.setdefault(
            part_of(name), {"trainable_tensors": 0, "with_gradient": 0, "trainable_parameters": 0}
        )
        row["trainable_tensors"] += 1
        row["trainable_parameters"] += param.numel()
        if param.grad is not None and bool(param.grad.abs().sum() > 0):
            row["with_gradient"] += 1
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    table = pd.DataFrame.from_dict(rows, orient="index").rename_axis("part").reset_index()
    table.insert(0, "forward", forward)
    return table
