"""What a training item's target holds: an object, nothing by design, or nothing by accident.

A positive item (an image with a prompt of its class) can still have an empty target: the
image has no labelled object (a crack-free wall is part of the crack export), or the
augmentation's crop moved the object out of the frame. A negative pair's target is empty by
design. Figures and counts name these apart, so an empty positive is never mistaken for a
labelled one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

STATES = ("object", "no object in the image", "object cropped out", "negative pair")


def target_state(item: Mapping[str, Any], frame: pd.DataFrame) -> str:
    """One item's target (`JointSegmentationDataset[i]`), as one of `STATES`.

    `frame` is the dataset's table of images (`dataset.frame`, with `mask_fraction`); a
    target is empty when no pixel of it is above 0 (soft targets included).
    """
    if item["is_negative"]:
        return "negative pair"
    if float(item["labels"].max()) > 0:
        return "object"
    if float(frame.at[item["index"], "mask_fraction"]) == 0:
        return "no object in the image"
    return "object cropped out"


def target_states(dataset) -> pd.Series:
    """Items of the dataset's current epoch per `STATES` (every item is drawn once)."""
    states = [target_state(dataset[i], dataset.frame) for i in range(len(dataset))]
    return pd.Series(states, dtype=object).value_counts().reindex(STATES, fill_value=0)


def item_caption(item: Mapping[str, Any], frame: pd.DataFrame) -> str:
    """A figure title for one item: class, prompt, and what its target holds when empty."""
    state = target_state(item, frame)
    title = f"{item['dataset']}: \"{item['prompt']}\""
    if state == "negative pair":
        return f"{title}\n(negative pair: empty target)"
    if state != "object":
        return f"{title}\n(positive, EMPTY target: {state})"
    return title
