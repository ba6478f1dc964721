"""Solutions to the exercises of notebook 01 (data inspection).

Each `exercise_N(course)` computes its answer with the course's helpers, prints a sentence
written from the numbers, and returns the table it read. Run them all on the demo profile:

    python notebooks/solutions/01_data_inspection.py
"""

from __future__ import annotations

import pandas as pd

from helpers.data.describe import annotations_frame, records_frame
from helpers.data.roboflow import read_export
from helpers.data.split import export_leakage, group_split


def _exports(course) -> dict:
    """The course's exports, read once per call (name -> Export)."""
    paths = {"cracks": course.sources.cracks, "taping": course.sources.taping}
    return {name: read_export(path) for name, path in paths.items() if path is not None}


def exercise_1(course) -> pd.DataFrame:
    """Shared photos of the export's own splits, by file stem and by perceptual-hash group."""
    leak = export_leakage(course.prepared_manifest)
    table = leak.pivot_table(index=["dataset", "split_a", "split_b"], columns="key",
                             values="n_shared").astype(int)
    for (dataset, a, b), row in table.iterrows():
        print(f"{dataset} {a} / {b}: {row['source_id']} photos shared by stem, "
              f"{row['group_id']} by group")
    more = int((table["group_id"] > table["source_id"]).sum())
    fewer = int((table["group_id"] < table["source_id"]).sum())
    print(f"The hash finds more shared photos than the stems in {more} of {len(table)} split "
          f"pairs and fewer in {fewer}. A group is a union of stems, so a stem on both sides "
          "always leaves its group on both sides; the count can still fall, when two shared "
          "stems turn out to be one picture and count once.")
    return table


def exercise_2(course) -> pd.DataFrame:
    """What dropping annotations with an empty polygon (instead of using their box) costs."""
    objects = pd.concat([annotations_frame(e, n) for n, e in _exports(course).items()])
    per_image = objects.groupby(["dataset", "file_name"]).agg(
        objects=("kind", "size"), fallbacks=("box_fallback", "sum"))
    table = per_image.groupby("dataset").agg(
        objects=("objects", "sum"), dropped=("fallbacks", "sum"),
        images_losing_every_label=("fallbacks", lambda s: int(
            (s == per_image.loc[s.index, "objects"]).sum())),
    )
    for dataset, row in table.iterrows():
        print(f"{dataset}: the rule would drop {row.dropped} of {row.objects} objects, and "
              f"{row.images_losing_every_label} labelled image(s) would keep no label at all.")
    return table


ELONGATED = 5.0  # exercise 3: a box this many times longer than wide is line-like
OTHER_SEEDS = (0, 1, 2)  # exercise 4: seeds tried beside the course's


def exercise_3(course) -> pd.Series:
    """Share of boxes at least `ELONGATED` times longer than wide, per dataset."""
    factor = ELONGATED
    objects = pd.concat([annotations_frame(e, n) for n, e in _exports(course).items()])
    share = (objects["elongation"] >= factor).groupby(objects["dataset"]).mean()
    for dataset, value in share.items():
        print(f"{dataset}: {value:.0%} of the boxes are at least {factor:g} times longer than "
              "wide.")
    return share


def exercise_4(course) -> pd.DataFrame:
    """Source photos that a random 70/15/15 split by images puts in more than one split."""
    frame = pd.concat([records_frame(e, n) for n, e in _exports(course).items()],
                      ignore_index=True)
    per_image = frame.assign(group_id=frame["dataset"] + ":" + frame["file_name"])
    rows = []
    for seed in (course.cfg.seed, *OTHER_SEEDS):
        split = group_split(per_image, seed=seed)
        spread = frame.assign(split=split).groupby(["dataset", "source_id"])["split"].nunique()
        for dataset, n in (spread > 1).groupby(level="dataset").sum().items():
            rows.append({"seed": seed, "dataset": dataset, "straddling_photos": int(n),
                         "photos": int((spread.loc[dataset] > 0).sum())})
    table = pd.DataFrame(rows)
    for dataset, part in table.groupby("dataset"):
        print(f"{dataset}: a split by images puts {part.straddling_photos.min()} to "
              f"{part.straddling_photos.max()} of {part.photos.iloc[0]} source photos in more "
              f"than one split (seeds {', '.join(str(s) for s in part.seed)}).")
    return table


if __name__ == "__main__":
    from helpers.course.session import run_exercises

    run_exercises(globals())
