"""Corrupt labels are problems, the object is not drawn, the rest of the export is kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from export_builders import make_yolo_export, square, write_coco_split

from helpers.data.preparation import prepare_datasets, read_manifest
from helpers.data.roboflow import read_export


def _reasons(problems) -> str:
    return "\n".join(f"{p.file}: {p.reason}" for p in problems)


def _coco(root: Path, annotations: list[dict]) -> Path:
    write_coco_split(
        root / "train",
        [
            {"file_name": "a.jpg", "width": 16, "height": 16},
            {"file_name": "b.jpg", "width": 16, "height": 16},
        ],
        annotations,
    )
    return root


def test_coco_category_id_that_the_export_does_not_list_is_not_drawn(tmp_path: Path):
    root = _coco(
        tmp_path / "ex",
        [
            {"image_id": 0, "category_id": 7, "bbox": [0, 0, 8, 8], "segmentation": []},
            {"image_id": 0, "bbox": [8, 8, 4, 4], "segmentation": []},
            {"image_id": 1, "bbox": [1, 1, 2, 2], "segmentation": []},
        ],
    )
    export = read_export(root)
    recs = {r.file_name: r for r in export.records}
    assert [a.bbox for a in recs["a.jpg"].annotations] == [(8.0, 8.0, 4.0, 4.0)]
    assert len(recs["b.jpg"].annotations) == 1
    assert len(export.problems) == 1
    assert export.problems[0].file.endswith("a.jpg")
    assert "category id 7" in export.problems[0].reason


def test_coco_polygon_outside_the_image_or_without_area_is_a_problem(tmp_path: Path):
    root = _coco(
        tmp_path / "ex",
        [
            {"image_id": 0, "bbox": [], "segmentation": [square(40, 40, 50, 50)]},
            {"image_id": 0, "bbox": [], "segmentation": [[1, 1, 5, 5, 9, 9]]},  # a line
            {"image_id": 1, "bbox": [0, 0, 4, 4], "segmentation": [square(0, 0, 4, 4)]},
        ],
    )
    export = read_export(root)
    recs = {r.file_name: r for r in export.records}
    assert recs["a.jpg"].annotations == []
    assert len(recs["b.jpg"].annotations) == 1
    text = _reasons(export.problems)
    assert "lies outside the image" in text and "has no area" in text


def test_yolo_class_id_outside_nc_is_not_drawn(tmp_path: Path):
    root = make_yolo_export(
        tmp_path / "y",
        {"a.jpg": "3 0.5 0.5 0.2 0.2\n0 0.25 0.25 0.1 0.1\n", "b.jpg": "0.5 0.5 0.5 0.2 0.2\n"},
    )
    export = read_export(root)
    recs = {r.file_name: r for r in export.records}
    assert len(recs["a.jpg"].annotations) == 1 and recs["b.jpg"].annotations == []
    text = _reasons(export.problems)
    assert "line 1: class id 3 is unknown (data.yaml has 1 classes" in text
    assert "b.txt: line 1: class id 0.5 is unknown" in text


def test_yolo_coordinates_above_one_are_refused_small_overshoot_is_clipped(tmp_path: Path):
    root = make_yolo_export(
        tmp_path / "y",
        {
            # pixel coordinates written where fractions belong: would cover a quarter image
            "a.jpg": "0 20 10 20 10\n0 2 2 30 2 30 15\n",
            # a rounding overshoot of 0.004 is kept and clipped
            "b.jpg": "0 0.5 0.5 1.004 0.4\n",
        },
    )
    export = read_export(root)
    recs = {r.file_name: r for r in export.records}
    assert recs["a.jpg"].annotations == []
    assert [a.bbox for a in recs["b.jpg"].annotations] == [(0.0, 6.0, 40.0, 8.0)]
    text = _reasons(export.problems)
    assert text.count("coordinates outside [0, 1]") == 2 and "b.txt" not in text


def test_yolo_polygon_without_area_is_a_problem(tmp_path: Path):
    root = make_yolo_export(tmp_path / "y", {"a.jpg": "0 0.1 0.1 0.5 0.5 0.9 0.9\n"})
    export = read_export(root)
    assert export.records[0].annotations == []
    assert "line 1: polygon part 0 has no area" in _reasons(export.problems)


def test_prepare_lists_label_problems_and_keeps_the_rest(tmp_path: Path):
    cracks = make_yolo_export(
        tmp_path / "y",
        {"a.jpg": "0 20 10 20 10\n0 0.25 0.5 0.5 1.0\n", "b.jpg": "5 0.5 0.5 1 1\n"},
    )
    out = tmp_path / "out"
    prepared = prepare_datasets(cracks, None, out)
    df = read_manifest(out / "manifest.csv")
    assert sorted(df["file_name"]) == ["a.jpg", "b.jpg"]
    fractions = dict(zip(df["file_name"], df["mask_fraction"], strict=True))
    assert fractions == {"a.jpg": 0.5, "b.jpg": 0.0}  # only the good box of a.jpg is drawn
    problems = (out / "problems.csv").read_text(encoding="utf-8")
    assert "coordinates outside [0, 1]" in problems and "class id 5 is unknown" in problems
    assert len(prepared.problems) == 2
    assert np.isclose(df["mask_fraction"].sum(), 0.5)


def test_ids_of_odd_json_types_are_problems_not_a_lost_split(tmp_path: Path):
    root = _coco(
        tmp_path / "ex",
        [
            {"image_id": [0], "bbox": [0, 0, 8, 8], "segmentation": []},
            {"image_id": 0, "category_id": {"id": 1}, "bbox": [0, 0, 8, 8], "segmentation": []},
            {"image_id": 1, "bbox": [1, 1, 2, 2], "segmentation": {"size": "x"}},
            {"image_id": 1, "bbox": [1, 1, 2, 2], "segmentation": []},
        ],
    )
    export = read_export(root)
    recs = {r.file_name: r for r in export.records}
    assert recs["a.jpg"].annotations == [] and len(recs["b.jpg"].annotations) == 2
    text = _reasons(export.problems)
    assert "unknown image id [0]" in text and "category id {'id': 1}" in text
