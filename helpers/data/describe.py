"""Tables and measures that describe an export and its masks (notebook 01)."""

from __future__ import annotations

import pandas as pd

from helpers.data.masks import source_id
from helpers.data.roboflow import Export


def records_frame(export: Export, dataset: str) -> pd.DataFrame:
    """One row per image of an export: where it is, its source photo and what is annotated."""
    rows = []
    for rec in export.records:
        kinds = [a.kind for a in rec.annotations]
        rows.append(
            {
                "dataset": dataset,
                "image_path": str(rec.image_path),
                "file_name": rec.file_name,
                "source_split": rec.source_split,
                "source_id": source_id(rec.file_name, rec.extra_name),
                "width": rec.width,
                "height": rec.height,
                "n_objects": len(rec.annotations),
                "n_polygons": kinds.count("polygon"),
                "n_rle": kinds.count("rle"),
                "n_boxes": kinds.count("box"),
                "n_box_fallbacks": sum(bool(a.box_fallback) for a in rec.annotations),
            }
        )
    return pd.DataFrame(rows)


def export_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Per dataset and export split: images, sources, objects and how they are annotated."""
    grouped = frame.groupby(["dataset", "source_split"], sort=True)
    table = grouped.agg(
        images=("file_name", "size"),
        sources=("source_id", "nunique"),
        objects=("n_objects", "sum"),
        polygons=("n_polygons", "sum"),
        boxes=("n_boxes", "sum"),
        empty_segmentation=("n_box_fallbacks", "sum"),
        images_without_objects=("n_objects", lambda s: int((s == 0).sum())),
    )
    sizes = grouped.apply(
        lambda g: ", ".join(sorted({f"{w}x{h}" for w, h in zip(g.width, g.height, strict=True)})),
        include_groups=False,
    )
    table["sizes"] = sizes
    return table.reset_index()


def variants_per_source(frame: pd.DataFrame) -> pd.DataFrame:
    """How many exported images each source photo became, per dataset."""
    counts = frame.groupby(["dataset", "source_id"]).size().rename("variants").reset_index()
    return counts


def annotations_frame(export: Export, dataset: str) -> pd.DataFrame:
    """One row per annotation: its kind, box size relative to the image, and elongation."""
    rows = []
    for rec in export.records:
        for ann in rec.annotations:
            _, _, w, h = ann.bbox
            rows.append(
                {
                    "dataset": dataset,
                    "file_name": rec.file_name,
                    "kind": ann.kind,
                    "box_fallback": bool(ann.box_fallback),
                    "box_fraction": (w * h) / float(rec.width * rec.height),
                    "elongation": max(w, h) / max(min(w, h), 1.0),
                }
            )
    columns = ["dataset", "file_name", "kind", "box_fallback", "box_fraction", "elongation"]
    return pd.DataFrame(rows, columns=columns)
