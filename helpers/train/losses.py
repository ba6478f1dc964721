"""Segmentation losses on logits and soft targets: BCE-with-logits plus soft Dice."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_per_image(
    probs: torch.Tensor, targets: torch.Tensor, smooth: float = 1.0
) -> torch.Tensor:
    """Soft Dice coefficient of each image, shape (B,).

    `dice = (2 * sum(p * t) + smooth) / (sum(p) + sum(t) + smooth)`, summed over every pixel
    of one image. The smoothing term makes an empty target with an empty prediction score
    ~1 (so its Dice loss is ~0) instead of 0/0, and an empty target with a confident
    prediction score close to 0.
    """
    if probs.shape != targets.shape:
        raise ValueError(f"probs {tuple(probs.shape)} and targets {tuple(targets.shape)} differ")
    dims = tuple(range(1, probs.ndim))
    intersection = (probs * targets).sum(dim=dims)
    total = probs.sum(dim=dims) + targets.sum(dim=dims)
    return (2.0 * intersection + smooth) / (total + smooth)


class BCEDiceLoss(nn.Module):
    """`bce_weight * BCE(logits, t) + dice_weight * (1 - soft Dice(sigmoid(logits), t))`.

    Inputs are logits and soft targets in [0, 1], both (B, H, W) (any shape with the batch
    first works). BCE is the mean over every pixel of the batch. Dice is computed per image
    (see `soft_dice_per_image`) and then averaged over the batch, so a small crack counts as
    much as a large taped joint and an empty (negative) target is handled without 0/0.
    `pos_weight` multiplies the BCE term of foreground pixels (as in PyTorch's
    `binary_cross_entropy_with_logits`): values > 1 make missing a thin object cost more
    than a false alarm of the same size. Computed in float32 even when the logits come out
    of a bf16/fp16 autocast region.
    """

    def __init__(
        self,
        bce_weight: float = 1.0,
        dice_weight: float = 1.0,
        smooth: float = 1.0,
        pos_weight: float = 1.0,
    ) -> None:
        super().__init__()
        for name, value in (("bce_weight", bce_weight), ("dice_weight", dice_weight)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if bce_weight == 0 and dice_weight == 0:
            raise ValueError("bce_weight and dice_weight cannot both be 0")
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        if not pos_weight > 0:
            raise ValueError(f"pos_weight must be > 0, got {pos_weight}")
        self.bce_weight = float(bce_weight)
        self.dice_weight = float(dice_weight)
        self.smooth = float(smooth)
        self.pos_weight = float(pos_weight)

    def components(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """The weighted `loss` and its unweighted parts `bce` and `dice` (= 1 - mean
        per-image soft Dice)."""
        if logits.shape != targets.shape:
            raise ValueError(
                f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ"
            )
        logits = logits.float()
        targets = targets.float()
        pos_weight = None
        if self.pos_weight != 1.0:
            pos_weight = torch.tensor(self.pos_weight, device=logits.device)
        bce = F.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)
        dice = 1.0 - soft_dice_per_image(torch.sigmoid(logits), targets, self.smooth).mean()
        loss = self.bce_weight * bce + self.dice_weight * dice
        return {"loss": loss, "bce": bce, "dice": dice}

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self.components(logits, targets)["loss"]

    def extra_repr(self) -> str:
        return (
            f"bce_weight={self.bce_weight}, dice_weight={self.dice_weight}, "
            f"smooth={self.smooth}, pos_weight={self.pos_weight}"
        )
