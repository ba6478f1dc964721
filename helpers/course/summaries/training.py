"""Summary of notebook 04 (LoRA training)."""

from __future__ import annotations

from helpers.course.records import LoraTraining
from helpers.course.summaries.registry import summary_for


@summary_for(LoraTraining)
def summary_04(m: LoraTraining) -> list[str]:
    """What trained; validation IoU before and after against what marking nothing scores; the
    step written out; and the prompt switch on validation, each sentence with its number."""
    from helpers.course.empty_baseline import untrained_reading
    from helpers.course.prompt_switch import switch_reading

    share = f" ({m.trainable_share:.4f} of them)" if m.trainable_share is not None else ""
    out = [
        f"LoRA trained {m.trainable_parameters:,} of {m.total_parameters:,} parameters{share} "
        f"for {m.epochs_run} epochs in {m.train_seconds:.0f} s; the best epoch was "
        f"{m.best_epoch}."
    ]
    for cls, after in m.val_iou_lora.items():
        before = m.val_iou_untrained[cls]
        out.append(
            f"{cls}: validation IoU {before:.3f} untrained, {after:.3f} after LoRA "
            f"({m.val_images_per_class.get(cls, '?')} images, threshold {m.val_threshold:g}, "
            f"{m.image_size} px)."
        )
    if m.val_iou_empty_prediction:
        out += untrained_reading(
            m.val_iou_untrained, m.val_iou_empty_prediction, m.val_empty_label_images,
            m.val_images_per_class, m.val_threshold,
        )
    step = m.written_step
    if step:
        out.append(
            f"One optimisation step written out: {_weighted(m, step)}; the gradient norm "
            f"{step['grad_norm']:.4f} was clipped to at most {step['grad_clip']:g}, and AdamW "
            f"at lr {step['lr']:g} took the loss on that batch to {step['loss_after']:.4f}."
        )
    if m.prompt_sensitivity_forms_val:
        out += switch_reading(
            m.cross_prompt_matrix_val, m.prompt_sensitivity_forms_val,
            m.wrong_prompt_on_label_val, m.wrong_to_right_foreground_val,
            excess=m.wrong_prompt_excess_val,
        )
    return out


def _weighted(m: LoraTraining, step: dict[str, float]) -> str:
    """The step's loss as its weighted sum (the weights where the results record them)."""
    if m.bce_weight is None or m.dice_weight is None:
        return (f"BCE {step['bce']:.4f} and Dice loss {step['dice']:.4f}, weighted by the "
                f"profile, give the loss {step['loss']:.4f}")
    return (f"{m.bce_weight:g} x BCE {step['bce']:.4f} + {m.dice_weight:g} x Dice loss "
            f"{step['dice']:.4f} = loss {step['loss']:.4f}")
