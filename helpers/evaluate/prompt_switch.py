"""How much foreground each prompt produces on each class: the prompt as a switch."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from helpers.data.images import load_rgb


def foreground_by_prompt(
    segmenter,
    manifest: pd.DataFrame,
    prompts: Sequence[str],
    split: str = "val",
    threshold: float = 0.5,
    batch_size: int = 8,
) -> pd.DataFrame:
    """Per image of `split` and per prompt: the share of pixels predicted as foreground."""
    rows = []
    subset = manifest[manifest["split"] == split]
    if subset.empty:
        raise ValueError(f"no images in split {split!r}")
    items = list(subset.itertuples())
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        probs = segmenter.probabilities([load_rgb(r.image_path) for r in chunk], prompts)
        for r, per_prompt in zip(chunk, probs, strict=True):
            for prompt, p in zip(prompts, per_prompt, strict=True):
                rows.append(
                    {
                        "image_class": r.dataset,
                        "prompt": prompt,
                        "foreground": float(np.mean(p >= threshold)),
                    }
                )
    return pd.DataFrame(rows)


def switch_table(per_image: pd.DataFrame) -> pd.DataFrame:
    """Mean foreground share: rows are image classes, columns are prompts."""
    return per_image.pivot_table(
        index="image_class", columns="prompt", values="foreground", aggfunc="mean"
    )
