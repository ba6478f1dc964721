"""Solutions to the exercises of notebook 02 (mask rendering).

Each `exercise_N(course)` computes its answer with the course's helpers, prints a sentence
written from the numbers, and returns the table it read. Run them all on the demo profile:

    python notebooks/solutions/02_mask_rendering.py
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd

from helpers.core.io import read_mask
from helpers.course.sources import prepared_data
from helpers.data.dataset import resize_soft_mask
from helpers.evaluate.failures import refinement_quality

MODEL_SIDE = 352  # exercise 3: the model's square input
SHRINK = 4  # exercise 3: a photo SHRINK times the model's side (e.g. 1408 px) shrinks this much


def exercise_1(course) -> pd.DataFrame:
    """Rectangles and refined ("lines") masks scored against the true seams, per image."""
    manifest = course.prepared_manifest
    refined = prepared_data(course.cfg, box_masks="lines")
    quality = refinement_quality(manifest, refined.manifest)
    if quality.empty:
        print("No true seam masks in this data: the refinement cannot be scored.")
        return quality
    worse = int((quality["refined_iou"] < quality["rectangle_iou"]).sum())
    print(f"Against the true seams, the mean IoU goes from {quality.rectangle_iou.mean():.3f} "
          f"(rectangles) to {quality.refined_iou.mean():.3f} (refined) over {len(quality)} "
          f"images; the refined mask is worse than the rectangle on {worse} of them.")
    return quality


def exercise_2(course) -> pd.DataFrame:
    """Pixel accuracy and foreground IoU of predicting nothing, per class, over the images
    that have foreground."""
    manifest = course.prepared_manifest
    table = manifest.groupby("dataset").agg(
        images=("mask_fraction", "size"),
        images_with_foreground=("mask_fraction", lambda s: int((s > 0).sum())),
        pixel_accuracy=("mask_fraction", lambda s: float((1 - s[s > 0]).mean())),  # as asked
    )
    table["foreground_iou"] = 0.0  # nothing predicted: no overlap wherever there is foreground
    for dataset, row in table.iterrows():
        print(f"{dataset}: predicting nothing scores {row.pixel_accuracy:.2%} pixel accuracy "
              f"and foreground IoU {row.foreground_iou:.1f} on its "
              f"{int(row.images_with_foreground)} images with foreground.")
    return table


def exercise_3(course) -> pd.DataFrame:
    """Foreground kept by nearest-neighbour sampling and by area averaging, resized to the
    model's side and to a side `SHRINK` times smaller (as a photo that much larger would be)."""
    manifest = course.prepared_manifest
    rows = []
    for r in manifest[(manifest.dataset == "cracks") & (manifest.mask_fraction > 0)].itertuples():
        mask = (read_mask(r.mask_path) > 0).astype(np.uint8)
        for side in (MODEL_SIDE, MODEL_SIDE // SHRINK):
            nearest = cv2.resize(mask, (side, side), interpolation=cv2.INTER_NEAREST)
            rows.append({"image": r.file_name, "side": side, "photo_side": mask.shape[1],
                         "nearest_kept": nearest.mean() / mask.mean(),
                         "area_kept": resize_soft_mask(mask, side).mean() / mask.mean()})
    table = pd.DataFrame(rows)
    for side, part in table.groupby("side", sort=False):
        halved = int((part["nearest_kept"] < 0.5).sum())
        print(f"{part.photo_side.median():.0f}-px crack masks at {side} px: nearest-neighbour "
              f"sampling keeps a median {part.nearest_kept.median():.0%} of the foreground share "
              f"({halved} of {len(part)} lose more than half); area averaging keeps "
              f"{part.area_kept.median():.0%}.")
    return table


if __name__ == "__main__":
    from helpers.course.session import run_exercises

    run_exercises(globals())
