"""Summary of notebook 04 (LoRA training)."""

from __future__ import annotations

from helpers.course.records import LoraTraining
from helpers.course.summaries.registry import summary_for


@summary_for(LoraTraining)
def summary_04(m: LoraTraining) -> list[str]:
    """What trained, and validation IoU before and after, at the training threshold."""
    share = m.trainable_parameters / m.total_parameters
    out = [
        f"LoRA trained {m.trainable_parameters:,} of {m.total_parameters:,} parameters "
        f"({share:.2%}) for {m.epochs_run} epochs in {m.train_seconds:.0f} s; the best epoch "
        f"was {m.best_epoch}."
    ]
    for cls, after in m.val_iou_lora.items():
        before = m.val_iou_untrained[cls]
        out.append(
            f"{cls}: validation IoU {before:.3f} untrained, {after:.3f} after LoRA "
            f"({after - before:+.3f}; {m.val_images_per_class.get(cls, '?')} images, "
            f"threshold {m.val_threshold:g}, {m.image_size} px)."
        )
    return out
