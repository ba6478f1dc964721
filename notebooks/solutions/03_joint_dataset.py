"""Solutions to the exercises of notebook 03 (the joint dataset).

Each `exercise_N(course)` computes its answer with the course's helpers, prints a sentence
written from the numbers, and returns the table it read. Run them all on the demo profile:

    python notebooks/solutions/03_joint_dataset.py
"""

from __future__ import annotations

import pandas as pd

from helpers.data.dataset import JointSegmentationDataset
from helpers.data.items import target_states
from helpers.data.split import group_sources, group_split, split_sizes
from helpers.inference.loading import load_processor

DISTANCES = (None, 0, 12, 40)  # exercise 1: hash distances in bits of 256 (None: stems only)
SEEDS = (0, 1, 2, 3, 4)  # exercise 2
EPOCHS = 8  # exercise 3
NEGATIVE_RATE = 0.25  # exercise 4


def exercise_1(course) -> pd.DataFrame:
    """Groups per dataset at several hash distances, beside the source stems."""
    manifest = course.prepared_manifest
    stems = manifest.groupby("dataset")["source_id"].nunique()
    rows = {}
    for d in DISTANCES:
        groups = group_sources(manifest, phash_distance=d)
        rows["stems only" if d is None else f"{d} bits"] = groups.groupby(
            manifest["dataset"]).nunique()
    table = pd.DataFrame(rows).assign(source_stems=stems)
    for dataset, row in table.iterrows():
        joined = [k for k in rows if row[k] < row["source_stems"]]
        print(f"{dataset}: {row['source_stems']} stems; groups "
              + ", ".join(f"{row[k]} at {k}" for k in rows)
              + (f"; differently named files first join at {joined[0]}." if joined
                 else "; no distance tried joins two stems."))
    return table


def _span(values: pd.Series) -> str:
    """"exactly 9" when every value is 9, else "7 to 9"."""
    low, high = int(values.min()), int(values.max())
    return f"exactly {low}" if low == high else f"{low} to {high}"


def exercise_2(course) -> pd.DataFrame:
    """Test images and photos per class for several seeds, and for a 60/20/20 split."""
    manifest = course.prepared_manifest
    rows = []
    for seed, fractions in [(s, (0.7, 0.15, 0.15)) for s in SEEDS] + [
            (course.cfg.seed, (0.6, 0.2, 0.2))]:
        sizes = split_sizes(manifest.assign(split=group_split(manifest, seed, fractions)))
        for cls in sizes["images"].columns:
            rows.append({"seed": seed, "fractions": "/".join(f"{f:g}" for f in fractions),
                         "dataset": cls, "test_images": int(sizes.loc["test", ("images", cls)]),
                         "test_photos": int(sizes.loc["test", ("photos", cls)])})
    table = pd.DataFrame(rows)
    by_seed = table[table["fractions"] == "0.7/0.15/0.15"]
    for cls, part in by_seed.groupby("dataset"):
        print(f"{cls}: over {len(part)} seeds the test split holds {_span(part.test_photos)} "
              f"photos ({_span(part.test_images)} images).")
    return table


def _train_dataset(course, augment: bool = True, negative_rate: float | None = None):
    cfg = course.cfg
    processor = load_processor(cfg.model)
    rate = cfg.negative_rate if negative_rate is None else negative_rate
    return JointSegmentationDataset(course.prepared_manifest, "train", processor.image_processor,
                                    size=cfg.image_size, augment=augment, negative_rate=rate,
                                    seed=cfg.seed)


def exercise_3(course) -> pd.Series:
    """Distinct phrasings each training image is shown over `EPOCHS` epochs."""
    ds = _train_dataset(course)
    seen: dict[int, set[str]] = {i: set() for i in range(len(ds.frame))}
    for epoch in range(EPOCHS):
        ds.set_epoch(epoch)
        for i in seen:
            seen[i].add(ds.pair(i)[0])
    counts = pd.Series({i: len(p) for i, p in seen.items()}, name="distinct_prompts")
    print(f"Over {EPOCHS} epochs a training image sees {counts.mean():.1f} distinct phrasings on "
          f"average (at least {counts.min()}, at most {counts.max()}).")
    return counts


def exercise_4(course) -> pd.DataFrame:
    """Epoch 0's items by what their target holds, with and without augmentation."""
    table = pd.DataFrame({
        f"augment={augment}": target_states(_train_dataset(course, augment, NEGATIVE_RATE))
        for augment in (True, False)
    })
    on = table["augment=True"]
    print(f"negative_rate {NEGATIVE_RATE:g}: {on['negative pair']} negative pairs; the crop "
          f"empties {on['object cropped out']} positive targets "
          f"({table.loc['object cropped out', 'augment=False']} without augmentation), and "
          f"{on['no object in the image']} positive items come from images with no object.")
    return table


if __name__ == "__main__":
    from helpers.course.session import run_exercises

    run_exercises(globals())
