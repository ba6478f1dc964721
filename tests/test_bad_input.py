"""Bad input: awkward images and broken exports give clear errors or problems, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from export_builders import make_yolo_export, square, write_coco_split, write_image
from PIL import Image

from helpers.data.images import ImageReadError, image_size, load_rgb
from helpers.data.roboflow import ExportError, read_coco_split, read_export

# --------------------------------------------------------------------------- images


def _truncated_jpeg(path: Path) -> Path:
    write_image(path, 64, 48)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_truncated_jpeg_raises_naming_the_file(tmp_path: Path):
    path = _truncated_jpeg(tmp_path / "cut.jpg")
    with pytest.raises(ImageReadError, match="cut.jpg") as err:
        load_rgb(path)
    assert isinstance(err.value, ValueError) and err.value.path == path


def test_corrupt_and_missing_files_raise_naming_the_file(tmp_path: Path):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(ImageReadError, match="junk.jpg"):
        load_rgb(junk)
    with pytest.raises(ImageReadError, match="junk.jpg"):
        image_size(junk)
    with pytest.raises(ImageReadError, match="gone.png.*not found"):
        load_rgb(tmp_path / "gone.png")


def test_grayscale_becomes_three_equal_channels(tmp_path: Path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    Image.fromarray(arr, mode="L").save(tmp_path / "g.png")
    rgb = load_rgb(tmp_path / "g.png")
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(rgb[:, :, c], arr)


def test_rgba_is_composited_on_white(tmp_path: Path):
    arr = np.zeros((2, 2, 4), np.uint8)
    arr[0, 0] = (255, 0, 0, 255)  # opaque red
    arr[0, 1] = (0, 0, 255, 0)  # fully transparent
    arr[1, 0] = (0, 0, 0, 128)  # half transparent black
    Image.fromarray(arr, mode="RGBA").save(tmp_path / "a.png")
    rgb = load_rgb(tmp_path / "a.png")
    assert rgb.shape == (2, 2, 3)
    assert tuple(rgb[0, 0]) == (255, 0, 0)
    assert tuple(rgb[0, 1]) == (255, 255, 255)
    assert all(abs(int(v) - 127) <= 1 for v in rgb[1, 0])


def test_sixteen_bit_png_is_scaled_to_eight_bits(tmp_path: Path):
    arr = np.array([[0, 257 * 128], [65535, 257 * 10]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as im:
        assert im.mode.startswith("I")  # really stored as 16-bit
    rgb = load_rgb(tmp_path / "deep.png")
    np.testing.assert_array_equal(rgb[:, :, 0], [[0, 128], [255, 10]])


def test_palette_image_is_expanded(tmp_path: Path):
    im = Image.new("P", (3, 2))
    im.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    im.putpixel((1, 0), 1)
    im.save(tmp_path / "p.png")
    rgb = load_rgb(tmp_path / "p.png")
    assert tuple(rgb[0, 1]) == (10, 200, 30) and tuple(rgb[0, 0]) == (0, 0, 0)


def test_exif_rotated_jpeg_is_turned_and_sized_from_the_header(tmp_path: Path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :10] = 255  # bright left quarter in stored pixels
    exif = Image.Exif()
    exif[0x0112] = 8  # display rotated 90 degrees counter-clockwise
    Image.fromarray(arr).save(tmp_path / "r.jpg", exif=exif, quality=95)
    rgb = load_rgb(tmp_path / "r.jpg")
    assert rgb.shape == (40, 20, 3)
    assert image_size(tmp_path / "r.jpg") == (20, 40)
    assert rgb[35:, :, 0].mean() > 200 and rgb[:25, :, 0].mean() < 50  # left moved to bottom


def test_non_ascii_file_name_loads(tmp_path: Path):
    path = write_image(tmp_path / "fissure_été_裂缝.png", 8, 6)
    assert load_rgb(path).shape == (6, 8, 3)


# --------------------------------------------------------------------------- COCO exports


def _reasons(problems) -> str:
    return " | ".join(f"{p.file}: {p.reason}" for p in problems)


def test_json_naming_a_missing_image_skips_only_that_image(tmp_path: Path):
    split = tmp_path / "ex" / "train"
    images = [{"file_name": f"{n}.jpg", "width": 16, "height": 16} for n in ("a", "b", "c")]
    write_coco_split(
        split, images, [{"image_id": i, "bbox": [1, 1, 4, 4], "segmentation": []} for i in range(3)]
    )
    (split / "b.jpg").unlink()
    export = read_export(tmp_path / "ex")
    assert sorted(r.file_name for r in export.records) == ["a.jpg", "c.jpg"]
    assert len(export.problems) == 1 and export.problems[0].file.endswith("b.jpg")
    assert "missing" in export.problems[0].reason


def test_malformed_json_names_the_file(tmp_path: Path):
    split = tmp_path / "ex" / "train"
    split.mkdir(parents=True)
    (split / "_annotations.coco.json").write_text('{"images": [', encoding="utf-8")
    with pytest.raises(ExportError, match=r"train/_annotations.coco.json.*malformed JSON"):
        read_coco_split(split)
    with pytest.raises(ExportError, match="no split"):
        read_export(tmp_path / "ex")


def test_malformed_split_is_a_problem_and_other_splits_load(tmp_path: Path):
    root = tmp_path / "ex"
    write_coco_split(root / "train", [{"file_name": "a.jpg", "width": 8, "height": 8}], [])
    (root / "valid").mkdir()
    (root / "valid" / "_annotations.coco.json").write_text("{oops", encoding="utf-8")
    export = read_export(root)
    assert [r.file_name for r in export.records] == ["a.jpg"]
    assert len(export.problems) == 1 and "valid" in export.problems[0].file
    assert "malformed JSON" in export.problems[0].reason


def test_short_polygon_parts_are_dropped_then_box_used(tmp_path: Path):
    root = tmp_path / "ex"
    write_coco_split(
        root / "train",
        [
            {"file_name": "a.jpg", "width": 16, "height": 16},
            {"file_name": "b.jpg", "width": 16, "height": 16},
        ],
        [
            {
                "image_id": 0,
                "bbox": [0, 0, 8, 8],
                "segmentation": [[1, 1, 5, 5], square(0, 0, 8, 8)],
            },
            {"image_id": 1, "bbox": [2, 2, 3, 3], "segmentation": [[1, 1, 5, 5]]},
        ],
    )
    export = read_export(root)
    recs = {r.file_name: r for r in export.records}
    a = recs["a.jpg"].annotations[0]
    assert a.kind == "polygon" and a.polygons == [square(0, 0, 8, 8)]
    b = recs["b.jpg"].annotations[0]
    assert b.kind == "box" and b.box_fallback and b.bbox == (2, 2, 3, 3)
    text = _reasons(export.problems)
    assert text.count("2 point(s) (< 3)") == 2 and "box used instead" in text


def test_boxes_are_clipped_and_zero_area_boxes_ignored(tmp_path: Path):
    root = tmp_path / "ex"
    write_coco_split(
        root / "train",
        [{"file_name": "a.jpg", "width": 16, "height": 12}],
        [
            {"image_id": 0, "bbox": [10, -4, 10, 8], "segmentation": []},
            {"image_id": 0, "bbox": [3, 3, 0, 5], "segmentation": []},
            {"image_id": 0, "bbox": [30, 30, 5, 5], "segmentation": []},
        ],
    )
    export = read_export(root)
    anns = export.records[0].annotations
    assert [a.bbox for a in anns] == [(10.0, 0.0, 6.0, 4.0)]
    text = _reasons(export.problems)
    assert "zero-area box" in text and "outside the image" in text


def test_annotation_with_unknown_image_id_is_a_problem(tmp_path: Path):
    root = tmp_path / "ex"
    write_coco_split(
        root / "train",
        [{"file_name": "a.jpg", "width": 8, "height": 8}],
        [
            {"image_id": 0, "bbox": [1, 1, 2, 2], "segmentation": []},
            {"image_id": 99, "bbox": [1, 1, 2, 2], "segmentation": []},
        ],
    )
    export = read_export(root)
    assert len(export.records[0].annotations) == 1
    assert len(export.problems) == 1 and "unknown image id 99" in export.problems[0].reason


def test_non_ascii_names_in_json_are_found(tmp_path: Path):
    root = tmp_path / "ex"
    name = "mur_fissuré_裂缝_jpg.rf.0123.jpg"
    write_coco_split(
        root / "train",
        [{"file_name": name, "width": 8, "height": 8}],
        [{"image_id": 0, "bbox": [1, 1, 2, 2], "segmentation": []}],
    )
    raw = (root / "train" / "_annotations.coco.json").read_bytes()
    assert "裂缝".encode() in raw  # stored as UTF-8, not escaped
    export = read_export(root)
    assert export.problems == [] and export.records[0].file_name == name


def test_image_not_in_json_is_a_problem(tmp_path: Path):
    root = tmp_path / "ex"
    write_coco_split(root / "train", [{"file_name": "a.jpg", "width": 8, "height": 8}], [])
    write_image(root / "train" / "stray.jpg", 8, 8)
    export = read_export(root)
    assert [r.file_name for r in export.records] == ["a.jpg"]
    assert export.problems[0].file.endswith("stray.jpg")


def test_coco_file_of_the_wrong_shape_names_the_file(tmp_path: Path):
    split = tmp_path / "ex" / "train"
    split.mkdir(parents=True)
    (split / "_annotations.coco.json").write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(ExportError, match="_annotations.coco.json: not a COCO file"):
        read_coco_split(split)


# --------------------------------------------------------------------------- YOLOv8 exports


def test_bad_yolo_lines_are_problems_and_good_lines_are_kept(tmp_path: Path):
    root = make_yolo_export(
        tmp_path / "y",
        {
            "a.jpg": "0 0.1 0.1 0.5 0.1 0.5 0.5\n0 abc 0.2\n0 0.1 0.1\n0 0.5 0.5 0 0.3\n",
        },
    )
    (root / "valid" / "labels" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    export = read_export(root)
    anns = export.records[0].annotations
    assert len(anns) == 1 and anns[0].kind == "polygon"
    text = _reasons(export.problems)
    assert "line 2: not numbers" in text
    assert "line 3: polygon part 0 has 1 point(s)" in text
    assert "line 4: zero-area box" in text
    assert "orphan.txt: label file without an image" in text


def test_yolo_unreadable_image_is_skipped(tmp_path: Path):
    root = make_yolo_export(tmp_path / "y", {"a.jpg": "", "b.jpg": ""})
    (root / "valid" / "images" / "b.jpg").write_bytes(b"garbage")
    export = read_export(root)
    assert [r.file_name for r in export.records] == ["a.jpg"]
    assert export.problems[0].file.endswith("b.jpg")
