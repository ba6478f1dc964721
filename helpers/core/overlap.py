"""IoU and Dice of binary masks from their overlap counts: the one definition the course uses.

The counts (true positives, false positives, false negatives) may be Python numbers, NumPy
arrays or torch tensors (per image, per class, ...); the result has their type. A prediction
and a truth that are both empty score 1.0 (nothing to find, nothing found); exactly one empty
scores 0.0. Training validation (torch, on the device), the demo's shapes check and the
full-resolution evaluation (NumPy) all call these.
"""

from __future__ import annotations

from typing import TypeVar

Counts = TypeVar("Counts")


def iou_from_counts(tp: Counts, fp: Counts, fn: Counts) -> Counts:
    """IoU = tp / (tp + fp + fn); 1.0 where all three are 0."""
    empty = (tp + fp + fn) == 0
    return (tp + empty) / (tp + fp + fn + empty)


def dice_from_counts(tp: Counts, fp: Counts, fn: Counts) -> Counts:
    """Dice = 2 tp / (2 tp + fp + fn); 1.0 where all three are 0."""
    empty = (tp + fp + fn) == 0
    return (2 * tp + empty) / (2 * tp + fp + fn + empty)
