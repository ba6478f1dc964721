"""BCEDiceLoss: values, weights, empty targets, gradients."""

from __future__ import annotations

import math

import pytest
import torch

from helpers.train.losses import BCEDiceLoss, soft_dice_per_image


def _perfect_logits(targets: torch.Tensor, scale: float = 30.0) -> torch.Tensor:
    return (targets * 2 - 1) * scale


def test_perfect_prediction_gives_near_zero_dice_and_bce() -> None:
    targets = torch.zeros(2, 8, 8)
    targets[0, 2:5, 3:7] = 1
    targets[1, 0:2, :] = 1
    parts = BCEDiceLoss().components(_perfect_logits(targets), targets)
    assert parts["dice"].item() < 1e-6
    assert parts["bce"].item() < 1e-6


def test_empty_target_and_empty_prediction_cost_nothing_but_false_positives_do() -> None:
    targets = torch.zeros(1, 8, 8)
    loss = BCEDiceLoss(bce_weight=0.0, dice_weight=1.0)
    assert loss(torch.full((1, 8, 8), -30.0), targets).item() < 1e-6
    # a confident prediction on an empty target is nearly the worst Dice loss
    assert loss(torch.full((1, 8, 8), 30.0), targets).item() > 0.95


def test_matches_hand_computation() -> None:
    logits = torch.tensor([[[0.0, 2.0], [-1.0, 1.0]]])
    targets = torch.tensor([[[0.0, 1.0], [0.5, 1.0]]])
    p = [1 / (1 + math.exp(-x)) for x in (0.0, 2.0, -1.0, 1.0)]
    t = [0.0, 1.0, 0.5, 1.0]
    pairs = list(zip(p, t, strict=True))
    bce = -sum(ti * math.log(pi) + (1 - ti) * math.log(1 - pi) for pi, ti in pairs) / 4
    dice = (2 * sum(pi * ti for pi, ti in pairs) + 1) / (sum(p) + sum(t) + 1)
    parts = BCEDiceLoss().components(logits, targets)
    assert parts["bce"].item() == pytest.approx(bce, rel=1e-6)
    assert parts["dice"].item() == pytest.approx(1 - dice, rel=1e-6)
    total = BCEDiceLoss(bce_weight=0.5, dice_weight=2.0)(logits, targets).item()
    assert total == pytest.approx(0.5 * bce + 2.0 * (1 - dice), rel=1e-6)


def test_dice_is_averaged_per_image_not_pooled() -> None:
    # one tiny object predicted badly and one large object predicted well: a pooled Dice
    # would hide the small one, the per-image mean does not
    targets = torch.zeros(2, 16, 16)
    targets[0, 0, 0] = 1
    targets[1] = 1
    logits = _perfect_logits(targets)
    logits[0, 0, 0] = -30.0
    parts = BCEDiceLoss(smooth=1e-6).components(logits, targets)
    assert parts["dice"].item() == pytest.approx(0.5, abs=1e-3)
    per_image = soft_dice_per_image(torch.sigmoid(logits), targets, smooth=1e-6)
    assert per_image.tolist() == pytest.approx([0.0, 1.0], abs=1e-3)


def test_weights_scale_the_parts() -> None:
    torch.manual_seed(0)
    logits, targets = torch.randn(3, 6, 6), torch.rand(3, 6, 6)
    parts = BCEDiceLoss().components(logits, targets)
    assert BCEDiceLoss(1.0, 0.0)(logits, targets).item() == pytest.approx(parts["bce"].item())
    assert BCEDiceLoss(0.0, 1.0)(logits, targets).item() == pytest.approx(parts["dice"].item())
    assert BCEDiceLoss(3.0, 0.5)(logits, targets).item() == pytest.approx(
        3.0 * parts["bce"].item() + 0.5 * parts["dice"].item(), rel=1e-6
    )


def test_gradient_is_finite_even_for_extreme_and_low_precision_logits() -> None:
    logits = torch.tensor([[[100.0, -100.0], [0.0, 50.0]]], requires_grad=True)
    targets = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])
    BCEDiceLoss()(logits, targets).backward()
    assert torch.isfinite(logits.grad).all()
    assert logits.grad.abs().sum() > 0
    half = torch.randn(2, 4, 4).bfloat16().requires_grad_()
    loss = BCEDiceLoss()(half, torch.rand(2, 4, 4))
    assert loss.dtype == torch.float32
    loss.backward()
    assert torch.isfinite(half.grad.float()).all()


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="differ"):
        BCEDiceLoss()(torch.zeros(1, 4, 4), torch.zeros(1, 5, 5))
    with pytest.raises(ValueError, match="bce_weight"):
        BCEDiceLoss(bce_weight=-1.0)
    with pytest.raises(ValueError, match="both be 0"):
        BCEDiceLoss(0.0, 0.0)


def test_pos_weight_scales_only_the_foreground_bce() -> None:
    logits = torch.tensor([[[0.5, -1.0], [2.0, 0.0]]])
    targets = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    plain = BCEDiceLoss().components(logits, targets)
    weighted = BCEDiceLoss(pos_weight=3.0).components(logits, targets)
    p = torch.sigmoid(logits)
    fg = -(targets * torch.log(p)).mean()
    bg = -((1 - targets) * torch.log(1 - p)).mean()
    assert plain["bce"].item() == pytest.approx((fg + bg).item(), rel=1e-5)
    assert weighted["bce"].item() == pytest.approx((3 * fg + bg).item(), rel=1e-5)
    assert weighted["dice"].item() == pytest.approx(plain["dice"].item(), rel=1e-6)


def test_pos_weight_makes_missed_foreground_cost_more() -> None:
    targets = torch.zeros(1, 8, 8)
    targets[0, 3, :] = 1  # a thin line
    missed = torch.full((1, 8, 8), -5.0)
    assert BCEDiceLoss(pos_weight=4.0)(missed, targets) > BCEDiceLoss()(missed, targets)


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_pos_weight_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError, match="pos_weight"):
        BCEDiceLoss(pos_weight=bad)


def test_on_an_empty_target_dice_barely_pushes_false_positives_down_and_bce_does() -> None:
    """Why negative pairs need the BCE term: soft Dice saturates once many pixels are on."""
    logits = torch.full((1, 64, 64), 1.0)  # p = 0.73 everywhere, where nothing should be
    target = torch.zeros(1, 64, 64)

    def grad(loss: BCEDiceLoss) -> torch.Tensor:
        x = logits.clone().requires_grad_(True)
        loss(x, target).backward()
        return x.grad

    from_dice = grad(BCEDiceLoss(bce_weight=0.0, dice_weight=1.0)).abs().sum()
    from_bce = grad(BCEDiceLoss(bce_weight=1.0, dice_weight=0.0)).abs().sum()
    assert float(from_dice) < 1e-3 * float(from_bce)
    assert (grad(BCEDiceLoss()) > 0).all()  # the sum still lowers every false positive
