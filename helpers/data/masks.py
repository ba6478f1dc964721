"""Render the objects of one image as a binary mask, and name the source photo of an image.

Conventions (COCO's): pixel (col, row) covers [col, col + 1) x [row, row + 1).
- Polygons and RLE go through pycocotools (`frPyObjects`, `merge`, `decode`); a polygon square
  with integer corners (x0, y0)-(x1, y1) fills columns x0..x1-1 and rows y0..y1-1.
- A box (x, y, w, h) fills columns floor(x)..ceil(x + w) - 1 and rows floor(y)..ceil(y + h) - 1,
  clipped to the image: every pixel the box touches is in the mask.
- Several objects are OR-ed. The result is uint8 with values {0, 255}.
- An object that covers no pixel of the image is not drawn; `mask_for_image` says so in its note.

Geometry is checked before pycocotools sees it (its C code crashes the process on some
values): a polygon coordinate farther than `FAR_OUTSIDE` image sizes outside the image, an
uncompressed RLE whose run lengths do not add up to the image, or a compressed RLE that is not
ASCII raises `ValueError` naming the object. A decoded RLE is checked against the export's own
`area` and `bbox` when it gives them: one that disagrees (e.g. garbage counts that decode to
nearly the whole image), or one pycocotools cannot decode, is replaced by its box, or dropped
when it has none, with a note.

Orientation: masks are rendered at the annotation frame (the JSON's width/height). When the
image on disk, after its EXIF orientation is applied (what `load_rgb` returns), has that same
size, the mask is used as is (Roboflow's case: it bakes orientation into the pixels). When only
the stored (un-rotated) size matches, the annotations were drawn on the stored pixels, so
`mask_for_image` turns the mask by the same EXIF transpose and says so. A 180-degree or mirror
orientation keeps the size and cannot be told apart: the annotations are taken to follow the
displayed image. Any other size disagreement raises `MaskSizeError` (the image is not used).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from helpers.data.images import ImageInfo, image_info, orient_like_exif
from helpers.data.roboflow import FAR_OUTSIDE, Annotation, ImageRecord, far_outside

# A decoded RLE agrees with the export's `area` within this fraction (plus RLE_SLACK pixels),
# and has at most this fraction of its pixels outside the export's `bbox` (grown by RLE_SLACK).
RLE_TOLERANCE = 0.1
RLE_SLACK = 2
_ROBOFLOW_NAME = re.compile(r"_(?:jpe?g|png|bmp|webp|tiff?|gif)\.rf\.", re.IGNORECASE)


class MaskSizeError(ValueError):
    """The annotation frame and the image on disk disagree in a way that cannot be resolved."""


def box_pixels(
    bbox: tuple[float, float, float, float], width: int, height: int
) -> tuple[int, int, int, int]:
    """Pixel bounds (col0, row0, col1, row1), end-exclusive, of a box clipped to the image."""
    x, y, w, h = bbox
    col0 = min(max(math.floor(x), 0), width)
    row0 = min(max(math.floor(y), 0), height)
    col1 = min(max(math.ceil(x + w), 0), width)
    row1 = min(max(math.ceil(y + h), 0), height)
    return col0, row0, max(col1, col0), max(row1, row0)


def check_geometry(ann: Annotation, height: int, width: int) -> None:
    """`ValueError` naming the object when its geometry must not reach pycocotools."""
    what = ann.label or "an object"
    if ann.kind == "polygon":
        for coords in ann.polygons:
            if far_outside(coords, width, height):
                raise ValueError(
                    f"{what}: polygon coordinates lie more than {FAR_OUTSIDE:g} image size(s) "
                    f"outside the {width}x{height} image"
                )
    if ann.kind == "rle":
        counts = (ann.rle or {}).get("counts")
        if isinstance(counts, list):
            if not all(isinstance(c, int) and c >= 0 for c in counts):
                raise ValueError(f"{what}: RLE counts are not non-negative whole numbers")
            if sum(counts) != height * width:
                raise ValueError(
                    f"{what}: RLE runs cover {sum(counts)} pixels, the image has {height * width}"
                )
        elif not (isinstance(counts, str) and counts.isascii()):
            raise ValueError(f"{what}: RLE counts are neither a list nor an ASCII string")


def implausible_rle(ann: Annotation, part: np.ndarray) -> str | None:
    """Why a decoded RLE disagrees with the export's own area or bbox; None when it agrees
    (or the export gives neither)."""
    n = int(np.count_nonzero(part))
    if ann.area is not None and abs(n - ann.area) > RLE_TOLERANCE * ann.area + RLE_SLACK:
        return f"decodes to {n} pixels, the export says its area is {ann.area:g}"
    x, y, w, h = ann.bbox
    if n and w > 0 and h > 0:
        col0, row0, col1, row1 = box_pixels(
            (x - RLE_SLACK, y - RLE_SLACK, w + 2 * RLE_SLACK, h + 2 * RLE_SLACK),
            part.shape[1],
            part.shape[0],
        )
        outside = n - int(np.count_nonzero(part[row0:row1, col0:col1]))
        if outside > RLE_TOLERANCE * n:
            return f"{outside} of its {n} pixels lie outside the export's bbox {list(ann.bbox)}"
    return None


def _annotation_mask(ann: Annotation, height: int, width: int) -> np.ndarray:
    check_geometry(ann, height, width)
    if ann.kind == "polygon":
        rles = mask_utils.frPyObjects(ann.polygons, height, width)
        return mask_utils.decode(mask_utils.merge(rles))
    if ann.kind == "rle":
        rle = dict(ann.rle or {})
        if isinstance(rle.get("counts"), list):  # uncompressed (iscrowd) RLE
            rle = mask_utils.frPyObjects(rle, height, width)
        elif isinstance(rle.get("counts"), str):
            rle["counts"] = rle["counts"].encode("ascii")
        return mask_utils.decode(rle)
    if ann.kind == "box":
        out = np.zeros((height, width), dtype=np.uint8)
        col0, row0, col1, row1 = box_pixels(ann.bbox, width, height)
        out[row0:row1, col0:col1] = 1
        return out
    raise ValueError(f"unknown annotation kind {ann.kind!r}")


def render_mask_and_notes(record: ImageRecord) -> tuple[np.ndarray, list[str]]:
    """The union of the record's objects as uint8 {0, 255}, shape (height, width), and a note
    for each object that covers no pixel of the image."""
    height, width = record.height, record.width
    out = np.zeros((height, width), dtype=np.uint8)
    notes = []
    for i, ann in enumerate(record.annotations):
        why = None
        try:
            part = _annotation_mask(ann, height, width)
        except ValueError as exc:
            if ann.kind != "rle":
                raise
            part, why = np.zeros_like(out), f"does not decode ({exc})"
        if part.shape != out.shape:
            raise MaskSizeError(
                f"{record.image_path}: object mask {part.shape} differs from {out.shape}"
            )
        why = why or (implausible_rle(ann, part) if ann.kind == "rle" else None)
        if why:
            label = ann.label or f"object {i}"
            if ann.bbox[2] > 0 and ann.bbox[3] > 0:
                box = Annotation(kind="box", bbox=ann.bbox, box_fallback=True, label=label)
                part = _annotation_mask(box, height, width)
                notes.append(f"{label}: RLE {why}; its box is used instead")
            else:
                notes.append(f"{label}: RLE {why}; not drawn")
                continue
        if not part.any():
            notes.append(f"{ann.label or f'object {i}'} covers no pixel of the image; not drawn")
        out |= part.astype(np.uint8)
    return np.where(out > 0, 255, 0).astype(np.uint8), notes


def mask_for_image(
    record: ImageRecord, info: ImageInfo | None = None
) -> tuple[np.ndarray, str | None]:
    """Render the mask lined up with `load_rgb(record.image_path)`, and a note when it was turned.

    See the module docstring for the orientation rule; `MaskSizeError` names the file when the
    sizes cannot be reconciled.
    """
    info = info or image_info(record.image_path)
    frame = (record.width, record.height)
    if info.size != frame and (info.raw_width, info.raw_height) != frame:
        raise _size_error(record, info)
    mask, notes = render_mask_and_notes(record)
    if info.size == frame:
        return mask, "; ".join(notes) or None
    notes.append(
        f"annotations follow the stored pixels ({frame[0]}x{frame[1]}) but EXIF orientation "
        f"{info.orientation} turns the image to {info.size[0]}x{info.size[1]}; "
        "mask turned the same way"
    )
    return orient_like_exif(mask, info.orientation), "; ".join(notes)


def _size_error(record: ImageRecord, info: ImageInfo) -> MaskSizeError:
    frame = (record.width, record.height)
    return MaskSizeError(
        f"{record.image_path}: image is {info.size[0]}x{info.size[1]} but its annotations were "
        f"made on {frame[0]}x{frame[1]}"
    )


def source_id(file_name: str, extra_name: str | None = None) -> str:
    """The source photo an image came from.

    Roboflow names variants `<source>_jpg.rf.<hash>.jpg` (also `_png.rf.`, `_jpeg.rf.`, any
    case): the part before that marker. Otherwise the stem of the original name Roboflow kept
    in `extra.name`, otherwise the file's own stem.
    """
    name = Path(file_name).name
    match = _ROBOFLOW_NAME.search(name)
    if match and match.start() > 0:
        return name[: match.start()]
    if extra_name:
        return Path(extra_name).stem
    return Path(name).stem
