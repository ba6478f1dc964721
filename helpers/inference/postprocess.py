"""Clean-up of thresholded masks before scoring or saving.

Every method takes a binary mask (bool, {0, 1} or {0, 255}) and returns uint8 {0, 255},
the format of the mask PNGs. Apply it at the resolution the mask is scored at (the image's
own), after thresholding.

- "none": the mask unchanged (converted to uint8 {0, 255}).
- "open_close": `cv2.morphologyEx` opening then closing with a square `kernel` x `kernel`
  structuring element (3x3 by default, a common clean-up step). Opening removes
  specks smaller than the kernel; closing fills gaps narrower than it. Beware: opening with
  a 3x3 square also erases any structure thinner than 3 px, e.g. hairline cracks.
- "remove_small": drops 8-connected components with fewer than `min_area` pixels
  (`cv2.connectedComponentsWithStats`); thin but long components survive. By default
  `min_area` is `MIN_AREA_FRACTION` (1e-4) of the image area, at least 1 pixel: 41 px in a
  640x640 image.
"""

from __future__ import annotations

import cv2
import numpy as np

METHODS = ("none", "open_close", "remove_small")
MIN_AREA_FRACTION = 1e-4
# A clean-up must beat "none" by at least this much mean validation IoU to be chosen: a
# smaller win is within what a different image or seed moves, so the simpler method stays.
CHOICE_MARGIN = 0.005



def as_binary(mask: np.ndarray, name: str = "mask") -> np.ndarray:
    """Return `mask` as a 2-D bool array; accepts bool or values in {0, 1} / {0, 255}."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array, got shape {arr.shape}")
    if arr.dtype == bool:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ValueError(f"{name} has unsupported dtype {arr.dtype}")
    bad = (arr != 0) & (arr != 1) & (arr != 255)
    if bad.any():
        value = arr[bad].flat[0]
        raise ValueError(
            f"{name} is not binary: found value {value!r}; expected bool, {{0, 1}} or {{0, 255}}"
        )
    return arr != 0


def choose_method(val_iou: dict[str, float], margin: float = CHOICE_MARGIN) -> str:
    """The method with the best validation IoU, unless it beats "none" by less than `margin`."""
    if "none" not in val_iou:
        raise ValueError(f"the choice needs the score of 'none', got {sorted(val_iou)}")
    best = max(val_iou, key=lambda m: (val_iou[m], m == "none"))
    return best if val_iou[best] - val_iou["none"] >= margin else "none"


def default_min_area(shape: tuple[int, ...]) -> int:
    """`MIN_AREA_FRACTION` of the image area, rounded, at least 1 pixel."""
    return max(1, round(MIN_AREA_FRACTION * shape[0] * shape[1]))


def postprocess(
    mask: np.ndarray, method: str = "none", kernel: int = 3, min_area: int | None = None
) -> np.ndarray:
    """Clean a binary mask with `method` (one of `METHODS`); returns uint8 {0, 255}."""
    if method not in METHODS:
        raise ValueError(f"unknown post-processing method {method!r}; choose from {METHODS}")
    m = as_binary(mask).astype(np.uint8)
    if method == "none":
        return m * np.uint8(255)
    if method == "open_close":
        if kernel < 1:
            raise ValueError(f"kernel must be >= 1, got {kernel}")
        element = np.ones((kernel, kernel), np.uint8)
        opened = cv2.morphologyEx(m, cv2.MORPH_OPEN, element)
        closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, element)
        return closed * np.uint8(255)
    area = default_min_area(m.shape) if min_area is None else int(min_area)
    if area < 0:
        raise ValueError(f"min_area must be >= 0, got {min_area}")
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= area
    keep[0] = False  # label 0 is the background
    return np.where(keep[labels], np.uint8(255), np.uint8(0))
