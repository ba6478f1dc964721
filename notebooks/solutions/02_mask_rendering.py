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
    """Pixel accuracy and foreground IoU of predicting nothing, per class."""
    manifest = course.prepared_manifest
    table = manifest.groupby("dataset").agg(
        images=("mask_fraction", "size"),
        images_with_foreground=("mask_fraction", lambda s: int((s > 0).sum())),
        pixel_accuracy=("mask_fraction", lambda s: float((1 - s).mean())),
    )
    table["foreground_iou"] = 0.0  # nothing predicted: no overlap wherever there is foreground
    for dataset, row in table.iterrows():
        print(f"{dataset}: predicting nothing scores {row.pixel_accuracy:.2%} pixel accuracy "
              f"and foreground IoU {row.foreground_iou:.1f} on its "
              f"{row.images_with_foreground} images with foreground.")
    return table


def exercise_3(course) -> pd.DataFrame:
    """Foreground kept at 352x352 by nearest-neighbour sampling and by area averaging."""
    manifest = course.prepared_manifest
    rows = []
    for r in manifest[(manifest.dataset == "cracks") & (manifest.mask_fraction > 0)].itertuples():
        mask = (read_mask(r.mask_path) > 0).astype(np.uint8)
        nearest = cv2.resize(mask, (MODEL_SIDE, MODEL_SIDE), interpolation=cv2.INTER_NEAREST)
        soft = resize_soft_mask(mask, MODEL_SIDE)
        rows.append({"image": r.file_name, "share": mask.mean(),
                     "nearest_kept": nearest.mean() / mask.mean(),
                     "area_kept": soft.mean() / mask.mean()})
    table = pd.DataFrame(rows)
    halved = int((table["nearest_kept"] < 0.5).sum())
    print(f"Of {len(table)} crack masks, nearest-neighbour sampling keeps a median "
          f"{table.nearest_kept.median():.0%} of the foreground share ({halved} lose more than "
          f"half); area averaging keeps a median {table.area_kept.median():.0%}.")
    return table


if __name__ == "__main__":
    from helpers.course.session import open_course

    demo = open_course(profile="demo")
    for exercise in (exercise_1, exercise_2, exercise_3):
        print(f"-- {exercise.__name__}")
        exercise(demo)
