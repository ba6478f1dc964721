"""Mask rendering, pixel-exact against hand-made cases, and source ids of Roboflow names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from export_builders import render_mask
from PIL import Image
from pycocotools import mask as mask_utils

from helpers.data.images import load_rgb
from helpers.data.masks import MaskSizeError, mask_for_image, source_id
from helpers.data.roboflow import Annotation, ImageRecord


def record(annotations: list[Annotation], width: int = 10, height: int = 8) -> ImageRecord:
    return ImageRecord(Path("x.jpg"), "x.jpg", "train", width, height, annotations)


def poly(*parts: list[float]) -> Annotation:
    return Annotation(kind="polygon", bbox=(0, 0, 0, 0), polygons=[list(p) for p in parts])


def box(x: float, y: float, w: float, h: float) -> Annotation:
    return Annotation(kind="box", bbox=(x, y, w, h))


def test_polygon_square_fills_exactly_its_pixels():
    # corners (2, 1)-(6, 4): columns 2..5, rows 1..3 -> 4 x 3 = 12 pixels
    mask = render_mask(record([poly([2, 1, 6, 1, 6, 4, 2, 4])]))
    expected = np.zeros((8, 10), np.uint8)
    expected[1:4, 2:6] = 255
    assert mask.dtype == np.uint8 and mask.shape == (8, 10)
    np.testing.assert_array_equal(mask, expected)


def test_every_polygon_part_is_filled():
    mask = render_mask(record([poly([0, 0, 2, 0, 2, 2, 0, 2], [6, 5, 9, 5, 9, 8, 6, 8])]))
    expected = np.zeros((8, 10), np.uint8)
    expected[0:2, 0:2] = 255
    expected[5:8, 6:9] = 255
    np.testing.assert_array_equal(mask, expected)


def test_uncompressed_rle_decodes_column_major():
    # 3 x 4 image, counts run down the columns: 1 off, 2 on (column 0 rows 1-2), 4 off,
    # 1 on (column 2 row 1), 4 off
    rle = {"size": [3, 4], "counts": [1, 2, 4, 1, 4]}
    mask = render_mask(record([Annotation("rle", (0, 0, 4, 3), rle=rle)], width=4, height=3))
    expected = np.array([[0, 0, 0, 0], [255, 0, 255, 0], [255, 0, 0, 0]], np.uint8)
    np.testing.assert_array_equal(mask, expected)


def test_compressed_rle_as_text_decodes():
    truth = np.zeros((5, 6), np.uint8)
    truth[1:4, 2] = 1
    truth[4, 5] = 1
    rle = mask_utils.encode(np.asfortranarray(truth))
    rle["counts"] = rle["counts"].decode("ascii")  # as a JSON file stores it
    mask = render_mask(record([Annotation("rle", (0, 0, 6, 5), rle=rle)], width=6, height=5))
    np.testing.assert_array_equal(mask, truth * 255)


def test_box_uses_floor_and_ceil():
    # x 1.5..4.5 -> columns 1..4; y 2.2..3.2 -> rows 2..3
    mask = render_mask(record([box(1.5, 2.2, 3.0, 1.0)]))
    expected = np.zeros((8, 10), np.uint8)
    expected[2:4, 1:5] = 255
    np.testing.assert_array_equal(mask, expected)


def test_box_partly_outside_is_clipped():
    mask = render_mask(record([box(-3, -2, 6, 5), box(8, 6, 10, 10)]))
    expected = np.zeros((8, 10), np.uint8)
    expected[0:3, 0:3] = 255
    expected[6:8, 8:10] = 255
    np.testing.assert_array_equal(mask, expected)


def test_overlapping_objects_are_ored():
    # square columns 0..3 x rows 0..3 (16 px) and box columns 2..5 x rows 2..5 (16 px),
    # overlapping in 2 x 2 = 4 px -> 28 px
    mask = render_mask(record([poly([0, 0, 4, 0, 4, 4, 0, 4]), box(2, 2, 4, 4)]))
    assert set(np.unique(mask)) == {0, 255}
    assert np.count_nonzero(mask) == 28
    assert mask[3, 3] == 255 and mask[0, 5] == 0 and mask[5, 0] == 0


def test_no_objects_gives_an_empty_mask():
    mask = render_mask(record([]))
    assert mask.shape == (8, 10) and not mask.any()


@pytest.mark.parametrize(
    ("file_name", "extra", "expected"),
    [
        ("IMG_8224_JPG_jpg.rf.e48f9983e55b64f86609fae0cd0be1f3.jpg", None, "IMG_8224_JPG"),
        ("304-dat_png_jpg.rf.d91e58e8.jpg", "304-dat_png.jpg", "304-dat_png"),
        ("wall_PNG.RF.0123abcd.png", None, "wall"),
        ("photo_jpeg.rf.ff00.jpg", None, "photo"),
        ("a1b2c3.jpg", "original name.jpg", "original name"),
        ("plain.photo.png", None, "plain.photo"),
    ],
)
def test_source_id(file_name: str, extra: str | None, expected: str):
    assert source_id(file_name, extra) == expected


def _rotated_jpeg(path: Path) -> None:
    """Stored 64 x 32 with a white 16 x 16 block at the top left; EXIF orientation 6."""
    arr = np.zeros((32, 64, 3), np.uint8)
    arr[0:16, 0:16] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(arr).save(path, exif=exif, quality=95)


def test_mask_drawn_on_stored_pixels_is_turned_like_the_image(tmp_path: Path):
    path = tmp_path / "turned.jpg"
    _rotated_jpeg(path)
    rec = ImageRecord(path, path.name, "train", 64, 32, [box(0, 0, 16, 16)])
    mask, note = mask_for_image(rec)
    image = load_rgb(path)
    assert image.shape == (64, 32, 3) and mask.shape == (64, 32)
    assert note and "orientation 6" in note
    np.testing.assert_array_equal(mask > 0, image.mean(axis=2) > 128)


def test_mask_drawn_on_displayed_image_is_kept(tmp_path: Path):
    path = tmp_path / "turned.jpg"
    _rotated_jpeg(path)
    # after orientation 6 the block sits at the top right of the 32 x 64 picture
    rec = ImageRecord(path, path.name, "train", 32, 64, [box(16, 0, 16, 16)])
    mask, note = mask_for_image(rec)
    assert note is None
    np.testing.assert_array_equal(mask > 0, load_rgb(path).mean(axis=2) > 128)


def test_unexplained_size_mismatch_names_the_file(tmp_path: Path):
    path = tmp_path / "small.jpg"
    Image.new("RGB", (20, 10)).save(path)
    rec = ImageRecord(path, path.name, "train", 40, 20, [box(0, 0, 4, 4)])
    with pytest.raises(MaskSizeError, match="small.jpg"):
        mask_for_image(rec)


def test_an_object_that_covers_no_pixel_is_named_in_the_note(tmp_path: Path):
    path = tmp_path / "s.png"
    Image.fromarray(np.zeros((8, 10, 3), np.uint8)).save(path)
    sliver = Annotation(
        kind="polygon", bbox=(0, 0, 0, 0), polygons=[[2, 2, 2.2, 2, 2.2, 2.2]], label="line 4"
    )
    rec = ImageRecord(path, "s.png", "train", 10, 8, [sliver, box(0, 0, 2, 2)])
    mask, note = mask_for_image(rec)
    assert np.count_nonzero(mask) == 4
    assert note == "line 4 covers no pixel of the image; not drawn"
