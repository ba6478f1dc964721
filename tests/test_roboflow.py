"""Reading COCO and YOLOv8-seg exports, on tiny built exports and on the real ones."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from export_builders import (
    make_coco_export,
    make_yolo_export,
    render_mask,
    rf_name,
    square,
    write_coco_split,
)
from pycocotools import mask as mask_utils

from helpers.data.masks import source_id
from helpers.data.roboflow import ExportError, detect_format, read_export
from helpers.data.split import export_leakage


def test_detect_format(tmp_path: Path):
    coco = make_coco_export(tmp_path / "coco", {"train": ["a"]})
    yolo = make_yolo_export(tmp_path / "yolo", {"a.jpg": "0 0.1 0.1 0.5 0.1 0.5 0.5\n"})
    assert detect_format(coco) == "coco"
    assert detect_format(yolo) == "yolov8"
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ExportError, match="_annotations.coco.json.*data.yaml") as err:
        detect_format(tmp_path / "empty")
    assert "empty" in str(err.value)
    with pytest.raises(ExportError, match="not found"):
        detect_format(tmp_path / "nowhere")


def test_coco_reads_every_split_and_every_kind(tmp_path: Path):
    root = tmp_path / "export"
    truth = np.zeros((16, 16), np.uint8)
    truth[3:9, 5] = 1
    rle = mask_utils.encode(np.asfortranarray(truth))
    rle["counts"] = rle["counts"].decode("ascii")
    images = [{"file_name": rf_name(f"s{i}", i), "width": 16, "height": 16} for i in range(4)]
    write_coco_split(
        root / "train",
        images,
        [
            {
                "image_id": 0,
                "bbox": [0, 0, 8, 8],
                "segmentation": [square(0, 0, 2, 2), square(4, 4, 8, 8)],
            },
            {"image_id": 1, "bbox": [5, 3, 1, 6], "segmentation": rle, "iscrowd": 1},
            {
                "image_id": 2,
                "bbox": [0, 0, 16, 16],
                "segmentation": {"size": [16, 16], "counts": [16 * 15, 16]},
                "iscrowd": 1,
            },
            {"image_id": 3, "bbox": [2, 3, 4, 5], "segmentation": []},
        ],
    )
    write_coco_split(root / "valid", [{"file_name": "v.jpg", "width": 16, "height": 16}], [])
    export = read_export(root)
    assert export.format == "coco" and export.problems == []
    by_name = {r.file_name: r for r in export.records}
    assert Counter(r.source_split for r in export.records) == {"train": 4, "valid": 1}
    first = by_name[images[0]["file_name"]].annotations[0]
    assert first.kind == "polygon" and len(first.polygons) == 2
    assert np.count_nonzero(render_mask(by_name[images[0]["file_name"]])) == 4 + 16
    np.testing.assert_array_equal(render_mask(by_name[images[1]["file_name"]]) > 0, truth > 0)
    last_column = render_mask(by_name[images[2]["file_name"]])
    assert np.count_nonzero(last_column) == 16 and last_column[:, 15].all()
    fallback = by_name[images[3]["file_name"]].annotations[0]
    assert fallback.kind == "box" and fallback.box_fallback
    assert by_name["v.jpg"].annotations == []


def test_placeholder_category_is_ignored_and_a_single_category_counts(tmp_path: Path):
    img = [{"file_name": "a.jpg", "width": 16, "height": 16}]
    write_coco_split(
        tmp_path / "rf" / "train",
        [dict(img[0])],
        [
            {"image_id": 0, "category_id": 1, "bbox": [0, 0, 4, 4], "segmentation": []},
            {"image_id": 0, "category_id": 0, "bbox": [8, 8, 4, 4], "segmentation": []},
        ],
    )
    export = read_export(tmp_path / "rf")
    assert len(export.records[0].annotations) == 1
    assert any("placeholder category 0" in p.reason for p in export.problems)

    single = [{"id": 0, "name": "crack", "supercategory": "none"}]
    write_coco_split(
        tmp_path / "one" / "train",
        [dict(img[0])],
        [
            {"image_id": 0, "category_id": 0, "bbox": [8, 8, 4, 4], "segmentation": []},
        ],
        categories=single,
    )
    assert len(read_export(tmp_path / "one").records[0].annotations) == 1


def test_yolo_polygons_boxes_and_image_size(tmp_path: Path):
    root = make_yolo_export(
        tmp_path / "yolo",
        {
            "a.jpg": "0 0.25 0.5 0.75 0.5 0.75 1.0 0.25 1.0\n0 0.5 0.25 0.5 0.5\n",
            "b.jpg": "",
        },
        size=(40, 20),
    )
    (root / "valid" / "labels" / "b.txt").unlink()  # no label file: an image without objects
    export = read_export(root)
    assert export.problems == []
    recs = {r.file_name: r for r in export.records}
    a = recs["a.jpg"]
    assert (a.width, a.height) == (40, 20)
    assert a.annotations[0].kind == "polygon"
    assert a.annotations[0].polygons[0] == [10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0]
    assert a.annotations[1].kind == "box" and not a.annotations[1].box_fallback
    assert a.annotations[1].bbox == (10.0, 0.0, 20.0, 10.0)
    expected = np.zeros((20, 40), np.uint8)
    expected[10:20, 10:30] = 255  # polygon
    expected[0:10, 10:30] = 255  # box cx .5 cy .25 w .5 h .5
    np.testing.assert_array_equal(render_mask(a), expected)
    assert recs["b.jpg"].annotations == []


# --------------------------------------------------------------------------- real exports


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.mark.realdata
def test_real_exports_are_detected(shared_roboflow: Path):
    assert detect_format(shared_roboflow / "cracks.v1i.coco") == "coco"
    assert detect_format(shared_roboflow / "cracks.v1i.yolov8") == "yolov8"
    assert detect_format(shared_roboflow / "drywall-join-detect.v2i.coco") == "coco"


@pytest.mark.realdata
def test_real_drywall_export_is_boxes_only(shared_roboflow: Path):
    export = read_export(shared_roboflow / "drywall-join-detect.v2i.coco")
    assert export.problems == []
    counts = Counter(r.source_split for r in export.records)
    assert counts == {"train": 820, "valid": 202}
    anns = [a for r in export.records for a in r.annotations]
    assert len(anns) == 1111 + 250
    assert all(a.kind == "box" and a.box_fallback for a in anns)
    # the export's own split leaks: 82 of the 86 source photos of valid are also in train
    df = pd.DataFrame(
        {
            "dataset": "taping",
            "source_split": [r.source_split for r in export.records],
            "source_id": [source_id(r.file_name, r.extra_name) for r in export.records],
        }
    )
    row = export_leakage(df).iloc[0]
    assert (row.split_a, row.split_b, row.n_b, row.n_shared) == ("train", "valid", 86, 82)


@pytest.mark.realdata
def test_real_crack_coco_and_yolo_masks_agree(shared_roboflow: Path):
    """Same images (matched by bytes), two annotation formats: masks agree at IoU >= 0.95."""
    coco = read_export(shared_roboflow / "cracks.v1i.coco")
    yolo = read_export(shared_roboflow / "cracks.v1i.yolov8")
    assert coco.problems == [] and yolo.problems == []
    assert len(coco.records) == len(yolo.records) == 205
    assert sum(a.box_fallback for r in coco.records for a in r.annotations) == 3
    yolo_by_md5 = {_md5(r.image_path): r for r in yolo.records}
    assert len(yolo_by_md5) == 205
    ious = []
    for rec in coco.records:
        other = yolo_by_md5[_md5(rec.image_path)]
        assert rec.file_name != other.file_name  # different Roboflow hashes, same bytes
        a, b = render_mask(rec) > 0, render_mask(other) > 0
        union = np.count_nonzero(a | b)
        ious.append(np.count_nonzero(a & b) / union if union else 1.0)
    assert min(ious) >= 0.95, sorted(ious)[:5]


def test_coco_categories_name_the_placeholder_and_count_its_use(tmp_path):
    from export_builders import make_coco_export, make_yolo_export

    from helpers.data.roboflow import coco_categories

    root = make_coco_export(tmp_path / "coco", {"train": ["a", "b"], "valid": ["c"]})
    rows = coco_categories(root)
    assert [(r["split"], r["id"], r["placeholder"], r["annotations"]) for r in rows] == [
        ("train", 0, True, 0),
        ("train", 1, False, 2),
        ("valid", 0, True, 0),
        ("valid", 1, False, 1),
    ]
    yolo = make_yolo_export(tmp_path / "yolo", {"x.jpg": "0 0.5 0.5 0.2 0.2"})
    assert coco_categories(yolo) == []
