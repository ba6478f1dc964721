"""How much foreground each prompt produces on each class: the prompt as a switch."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import torch

from helpers.data.images import load_rgb
from helpers.inference.segmenter import Segmenter


def foreground_by_prompt(
    segmenter: Segmenter,
    manifest: pd.DataFrame,
    prompts: Sequence[str],
    split: str = "val",
    threshold: float = 0.5,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Per image of `split` and per prompt: the share of pixels predicted as foreground.

    Images go through the `Segmenter` in batches of `batch_size` (all prompts in one decoder
    call); thresholding and the shares are computed on the model's device.
    """
    rows = []
    subset = manifest[manifest["split"] == split]
    if subset.empty:
        raise ValueError(f"no images in split {split!r}")
    items = list(subset.itertuples())
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        maps = segmenter.probability_maps([load_rgb(r.image_path) for r in chunk], prompts)
        # foreground shares are computed on the device; one small copy per batch
        shares = torch.stack(
            [(m >= threshold).sum(dim=(1, 2)).double() / m[0].numel() for m in maps]
        ).cpu()
        for r, per_prompt in zip(chunk, shares.tolist(), strict=True):
            for prompt, share in zip(prompts, per_prompt, strict=True):
                rows.append({"image_class": r.dataset, "prompt": prompt, "foreground": share})
    return pd.DataFrame(rows)


def switch_table(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean foreground share: rows are image classes, columns are prompts."""
    return per_image.pivot_table(
        index="image_class", columns="prompt", values="foreground", aggfunc="mean"
    )
