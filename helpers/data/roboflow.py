"""Read Roboflow exports (COCO and YOLOv8-seg) into one record type per image.

Both readers return an `Export`: one `ImageRecord` per usable image and one `Problem` per thing
that could not be used as it stood (missing image, malformed JSON, polygon too short, empty box,
annotation pointing to an unknown image...). A problem never stops the rest of the export from
loading; what it cost is written in its `reason`.

Labels are checked, and an object that fails a check is not drawn (a problem says why): a COCO
category id that the export's `categories` do not list; a YOLO class id that is not a whole
number below `nc` (or the length of `names`) in data.yaml; YOLO coordinates outside [0, 1] by
more than COORD_TOLERANCE (values within it are clipped); a polygon or box with no area, or
lying wholly outside the image; a polygon coordinate farther outside the image than
FAR_OUTSIDE image sizes (pycocotools' C renderer crashes the process on such values).

Tolerated: a UTF-8 byte-order mark at the start of a JSON, YAML or label file; a width or
height written as a whole float (640.0). Two COCO image entries naming the same file are
merged, their annotations kept together (a problem row says so). A `file_name` that leads
outside its split folder (`../test/x.jpg`) is refused: a split never reads another's images.

Coordinates are pixels of the image as stored in the export. Roboflow bakes the EXIF
orientation into the pixels, so for its exports stored and displayed orientation agree;
`helpers.data.masks.mask_for_image` handles the rare file where they do not.
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from helpers.data.images import ImageReadError, image_size, is_image_file

COCO_FILE = "_annotations.coco.json"
YOLO_FILE = "data.yaml"
SPLIT_ORDER = ("train", "valid", "val", "test")
# How far outside [0, 1] a YOLO coordinate may be before the object is refused (rounding slack).
COORD_TOLERANCE = 0.01
# How far outside the image (in image widths/heights) a polygon coordinate may lie before the
# part is refused: a polygon may overshoot an edge a little, never by thousands of sizes.
FAR_OUTSIDE = 1.0


class ExportError(ValueError):
    """An export (or one of its files) that cannot be read at all."""


@dataclass
class Annotation:
    """One object: a polygon (every part), an RLE, or a box."""

    kind: str  # "polygon" | "rle" | "box"
    bbox: tuple[float, float, float, float]  # x, y, w, h in pixels
    polygons: list[list[float]] = field(default_factory=list)  # flat [x1, y1, x2, y2, ...]
    rle: dict | None = None  # COCO RLE (counts/size) when kind == "rle"
    box_fallback: bool = False  # True when the segmentation was unusable and the box is used
    area: float | None = None  # the export's own pixel area of the object, when it gives one
    label: str = ""  # where it came from, for messages ("annotation 7", "line 3")


@dataclass
class ImageRecord:
    """One image of an export with its objects; width/height are the annotation frame."""

    image_path: Path
    file_name: str
    source_split: str
    width: int
    height: int
    annotations: list[Annotation] = field(default_factory=list)
    extra_name: str | None = None


@dataclass
class Problem:
    """Something in an export that was skipped or repaired, and why."""

    file: str
    reason: str


@dataclass
class Export:
    """Every split of one export."""

    root: Path
    format: str  # "coco" | "yolov8"
    records: list[ImageRecord]
    problems: list[Problem]


# --------------------------------------------------------------------------- format detection


def _split_key(name: str) -> tuple[int, str]:
    return (SPLIT_ORDER.index(name) if name in SPLIT_ORDER else len(SPLIT_ORDER), name)


def _coco_splits(root: Path) -> list[Path]:
    dirs = [p for p in root.iterdir() if p.is_dir() and (p / COCO_FILE).is_file()]
    return sorted(dirs, key=lambda p: _split_key(p.name))


def _yolo_splits(root: Path) -> list[Path]:
    dirs = [
        p
        for p in root.iterdir()
        if p.is_dir() and (p / "images").is_dir() and (p / "labels").is_dir()
    ]
    return sorted(dirs, key=lambda p: _split_key(p.name))


def detect_format(root: str | Path) -> str:
    """ "coco" or "yolov8", from the export's layout; a clear error when it is neither."""
    root = Path(root)
    if not root.is_dir():
        raise ExportError(f"export folder not found: {root}")
    if _coco_splits(root):
        return "coco"
    if (root / YOLO_FILE).is_file() and _yolo_splits(root):
        return "yolov8"
    raise ExportError(
        f"{root} is not a Roboflow export: looked for <split>/{COCO_FILE} (COCO) and for "
        f"{YOLO_FILE} with <split>/images and <split>/labels (YOLOv8-seg), found neither"
    )


def read_export(root: str | Path) -> Export:
    """Read every split present in a COCO or YOLOv8-seg export."""
    root = Path(root)
    fmt = detect_format(root)
    records: list[ImageRecord] = []
    problems: list[Problem] = []
    splits = _coco_splits(root) if fmt == "coco" else _yolo_splits(root)
    reader = read_coco_split if fmt == "coco" else read_yolo_split
    failed = []
    for split_dir in splits:
        try:
            recs, probs = reader(split_dir)
        except Exception as exc:  # one unreadable split never costs the others
            text = str(exc) if isinstance(exc, ExportError) else f"{type(exc).__name__}: {exc}"
            problems.append(Problem(str(split_dir), f"split not loaded: {text}"))
            failed.append(split_dir.name)
            continue
        records.extend(recs)
        problems.extend(probs)
    if failed and len(failed) == len(splits):
        raise ExportError(
            f"no split of {root} could be read: " + "; ".join(p.reason for p in problems)
        )
    return Export(root=root, format=fmt, records=records, problems=problems)


# --------------------------------------------------------------------------- shared checks


def _find_file(folder: Path, name: str) -> Path | None:
    """The file `name` in `folder`, also under the other Unicode normal form of its name."""
    for form in (None, "NFC", "NFD"):
        candidate = folder / (unicodedata.normalize(form, name) if form else name)
        if candidate.is_file():
            return candidate
    return None


def _finite(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)


def clip_box(
    bbox: tuple[float, float, float, float], width: int, height: int
) -> tuple[float, float, float, float] | None:
    """Clip an (x, y, w, h) box to the image; None when nothing of it is left inside."""
    x, y, w, h = bbox
    x0, y0 = max(0.0, x), max(0.0, y)
    x1, y1 = min(float(width), x + w), min(float(height), y + h)
    if x1 <= x0 or y1 <= y0:
        return None
    return (x0, y0, x1 - x0, y1 - y0)


def polygon_area(coords: list[float]) -> float:
    """Area (shoelace) of a flat polygon [x1, y1, x2, y2, ...]."""
    xs, ys = coords[0::2], coords[1::2]
    n = len(xs)
    return abs(sum(xs[i] * ys[(i + 1) % n] - xs[(i + 1) % n] * ys[i] for i in range(n))) / 2


def _polygon_parts(
    parts: list[Any],
    file: str,
    what: str,
    problems: list[Problem],
    size: tuple[int, int] | None = None,
) -> list[list[float]]:
    """Keep the polygon parts with at least 3 finite points, some area, some of it inside the
    image (`size` = width, height) and nothing far outside it; record a problem for the rest."""
    kept = []
    for i, part in enumerate(parts):
        if not isinstance(part, list) or not _finite(part):
            problems.append(Problem(file, f"{what}: polygon part {i} is not a list of numbers"))
            continue
        coords = [float(v) for v in part]
        if len(coords) % 2:
            problems.append(Problem(file, f"{what}: polygon part {i} has an odd coordinate count"))
            coords = coords[:-1]
        if len(coords) < 6:
            problems.append(
                Problem(file, f"{what}: polygon part {i} has {len(coords) // 2} point(s) (< 3)")
            )
            continue
        if polygon_area(coords) <= 0:
            problems.append(Problem(file, f"{what}: polygon part {i} has no area; dropped"))
            continue
        if size is not None and clip_box(_bounds(coords), *size) is None:
            problems.append(
                Problem(file, f"{what}: polygon part {i} lies outside the image; dropped")
            )
            continue
        if size is not None and far_outside(coords, *size):
            problems.append(
                Problem(
                    file,
                    f"{what}: polygon part {i} has coordinates far outside the "
                    f"{size[0]}x{size[1]} image (from {min(coords):g} to {max(coords):g}); "
                    "dropped",
                )
            )
            continue
        kept.append(coords)
    return kept


def far_outside(coords: list[float], width: int, height: int) -> bool:
    """True when a flat polygon has a coordinate more than FAR_OUTSIDE image sizes outside the
    image (such values crash pycocotools' renderer)."""
    xs, ys = coords[0::2], coords[1::2]
    mx, my = FAR_OUTSIDE * width, FAR_OUTSIDE * height
    return (
        min(xs) < -mx or max(xs) > width + mx or min(ys) < -my or max(ys) > height + my
    )


def _bounds(coords: list[float]) -> tuple[float, float, float, float]:
    xs, ys = coords[0::2], coords[1::2]
    return (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))


def _box_annotation(
    bbox: Any,
    width: int,
    height: int,
    file: str,
    what: str,
    problems: list[Problem],
    fallback: bool,
) -> Annotation | None:
    """A box annotation clipped to the image, or None (with a problem) when it has no area."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not _finite(list(bbox)):
        problems.append(Problem(file, f"{what}: no usable box ({bbox!r}); ignored"))
        return None
    x, y, w, h = (float(v) for v in bbox)
    if w <= 0 or h <= 0:
        problems.append(Problem(file, f"{what}: zero-area box {bbox!r}; ignored"))
        return None
    clipped = clip_box((x, y, w, h), width, height)
    if clipped is None:
        problems.append(Problem(file, f"{what}: box {bbox!r} lies outside the image; ignored"))
        return None
    return Annotation(kind="box", bbox=clipped, box_fallback=fallback, label=what)


# --------------------------------------------------------------------------- COCO


def _key(value: Any) -> Any:
    """A JSON value usable as a dict key or set member (lists and objects as their JSON text)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def _placeholder_ids(categories: list[dict]) -> set[Any]:
    """Roboflow's supercategory placeholders: categories named as another one's supercategory."""
    supers = [
        (_key(c.get("supercategory")), _key(c.get("id"))) for c in categories if isinstance(c, dict)
    ]
    ids = set()
    for c in categories:
        if not isinstance(c, dict):
            continue
        cid = _key(c.get("id"))
        if any(name == _key(c.get("name")) and other != cid for name, other in supers):
            ids.add(cid)
    return ids


def coco_categories(root: str | Path) -> list[dict[str, Any]]:
    """The categories of each split of a COCO export, one row per split and category: split,
    id, name, supercategory, `placeholder` (Roboflow's project-named supercategory entry, which
    the reader ignores) and `annotations` (how many annotations use it). [] for YOLO exports."""
    rows = []
    for json_path in sorted(Path(root).glob(f"*/{COCO_FILE}")):
        data = _load_json(json_path)
        categories = [c for c in data.get("categories") or [] if isinstance(c, dict)]
        placeholders = _placeholder_ids(categories)
        used = Counter(
            _key(ann.get("category_id"))
            for ann in data.get("annotations") or []
            if isinstance(ann, dict)
        )
        for c in categories:
            rows.append({
                "split": json_path.parent.name, "id": c.get("id"), "name": c.get("name"),
                "supercategory": c.get("supercategory"),
                "placeholder": _key(c.get("id")) in placeholders,
                "annotations": used.get(_key(c.get("id")), 0),
            })
    return rows


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))  # a byte-order mark is skipped
    except UnicodeDecodeError as exc:
        raise ExportError(f"{path}: not UTF-8 text ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise ExportError(f"{path}: malformed JSON ({exc})") from exc
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise ExportError(f"{path}: not a COCO file (no 'images' list)")
    if not isinstance(data.get("annotations", []), list):
        raise ExportError(f"{path}: 'annotations' is not a list")
    return data


def _coco_annotation(
    ann: dict, rec: ImageRecord, file: str, problems: list[Problem]
) -> Annotation | None:
    what = f"annotation {ann.get('id', '?')}"
    seg = ann.get("segmentation")
    bbox = ann.get("bbox")
    box_ok = isinstance(bbox, (list, tuple)) and len(bbox) == 4 and _finite(list(bbox))
    full_bbox = tuple(float(v) for v in bbox) if box_ok else (0.0, 0.0, 0.0, 0.0)
    area = ann.get("area")
    area = float(area) if _finite([area]) and area > 0 else None
    if isinstance(seg, dict):  # RLE, compressed (counts str) or uncompressed (counts list)
        size = seg.get("size")
        if list(size or []) != [rec.height, rec.width] or "counts" not in seg:
            problems.append(
                Problem(
                    file,
                    f"{what}: RLE size {size} differs from image "
                    f"{[rec.height, rec.width]}; box used instead",
                )
            )
        else:
            return Annotation(kind="rle", bbox=full_bbox, rle=dict(seg), label=what, area=area)
    elif isinstance(seg, list) and seg:
        parts = _polygon_parts(seg, file, what, problems, (rec.width, rec.height))
        if parts:
            return Annotation(kind="polygon", bbox=full_bbox, polygons=parts, label=what)
        problems.append(Problem(file, f"{what}: no polygon part left; box used instead"))
    elif seg not in (None, []):
        problems.append(Problem(file, f"{what}: unknown segmentation {type(seg).__name__}"))
    return _box_annotation(bbox, rec.width, rec.height, file, what, problems, fallback=True)


def _whole(value: Any) -> int | None:
    """A positive whole number given as an int or as a float like 640.0; else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if value > 0 else None


def _inside(split_dir: Path, name: str) -> bool:
    """True when `name` names a file inside `split_dir` (no absolute path, no way out)."""
    if Path(name).is_absolute():
        return False
    return (split_dir / name).resolve().is_relative_to(split_dir.resolve())


def read_coco_split(split_dir: Path) -> tuple[list[ImageRecord], list[Problem]]:
    """Read one `<split>/_annotations.coco.json`; bad JSON raises `ExportError` naming the file."""
    json_path = split_dir / COCO_FILE
    data = _load_json(json_path)
    problems: list[Problem] = []
    categories = data.get("categories") or []
    if not isinstance(categories, list):
        problems.append(Problem(str(json_path), "'categories' is not a list; ignored"))
        categories = []
    placeholders = _placeholder_ids(categories)
    known = {_key(c.get("id")) for c in categories if isinstance(c, dict)}
    if not known:
        problems.append(Problem(str(json_path), "no categories listed; category ids not checked"))
    by_id: dict[Any, ImageRecord] = {}
    by_name: dict[str, tuple[Any, ImageRecord]] = {}  # NFC file name -> first id, its record
    aliases: dict[Any, ImageRecord] = {}  # ids of repeated entries -> the first entry's record
    listed: set[str] = set()
    for img in data["images"]:
        name = img.get("file_name") if isinstance(img, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(Problem(str(json_path), f"image entry without file_name: {img!r}"))
            continue
        listed.add(unicodedata.normalize("NFC", name))
        where = str(split_dir / name)
        if not _inside(split_dir, name):
            problems.append(
                Problem(where, f"file_name {name!r} leads outside the split folder; skipped")
            )
            continue
        width, height = _whole(img.get("width")), _whole(img.get("height"))
        if width is None or height is None:
            problems.append(
                Problem(
                    where,
                    f"bad width/height {img.get('width')!r}x{img.get('height')!r}; image skipped",
                )
            )
            continue
        if _key(img.get("id")) in by_id or _key(img.get("id")) in aliases:
            problems.append(Problem(where, f"duplicate image id {img.get('id')}; skipped"))
            continue
        first = by_name.get(unicodedata.normalize("NFC", name))
        if first is not None:
            first_id, first_rec = first
            if (first_rec.width, first_rec.height) == (width, height):
                aliases[_key(img.get("id"))] = first_rec
                problems.append(
                    Problem(
                        where,
                        f"image id {img.get('id')} repeats the entry of id {first_id} for the "
                        "same file; their annotations are merged",
                    )
                )
            else:
                problems.append(
                    Problem(
                        where,
                        f"image id {img.get('id')} names the same file as id {first_id} but "
                        f"says {width}x{height}, not {first_rec.width}x{first_rec.height}; "
                        "this entry and its annotations are ignored",
                    )
                )
            continue
        path = _find_file(split_dir, name)
        if path is None:
            problems.append(Problem(where, f"listed in {json_path.name} but missing; skipped"))
            continue
        extra = img.get("extra")
        extra_name = extra.get("name") if isinstance(extra, dict) else None
        by_id[_key(img.get("id"))] = ImageRecord(
            image_path=path.resolve(),
            file_name=path.name,
            source_split=split_dir.name,
            width=width,
            height=height,
            extra_name=extra_name,
        )
        by_name[unicodedata.normalize("NFC", name)] = (img.get("id"), by_id[_key(img.get("id"))])
    images = data["images"]
    missing_ids = {_key(img.get("id")) for img in images if isinstance(img, dict)} - set(by_id)
    for ann in data.get("annotations", []):
        if not isinstance(ann, dict):
            problems.append(Problem(str(json_path), f"annotation is not an object: {ann!r}"))
            continue
        rec = by_id.get(_key(ann.get("image_id"))) or aliases.get(_key(ann.get("image_id")))
        if rec is None:
            if (
                _key(ann.get("image_id")) not in missing_ids
            ):  # skipped images already have a problem
                problems.append(
                    Problem(
                        str(json_path),
                        f"annotation {ann.get('id', '?')} refers to unknown "
                        f"image id {ann.get('image_id')!r}; ignored",
                    )
                )
            continue
        if _key(ann.get("category_id")) in placeholders:
            problems.append(
                Problem(
                    str(rec.image_path),
                    f"annotation {ann.get('id', '?')} uses placeholder "
                    f"category {ann.get('category_id')}; ignored",
                )
            )
            continue
        if known and _key(ann.get("category_id")) not in known:
            problems.append(
                Problem(
                    str(rec.image_path),
                    f"annotation {ann.get('id', '?')} has category id {ann.get('category_id')!r}, "
                    f"which {json_path.name} does not list (ids {sorted(map(str, known))}); "
                    "ignored",
                )
            )
            continue
        try:
            obj = _coco_annotation(ann, rec, str(rec.image_path), problems)
        except Exception as exc:  # one malformed object never costs the split
            reason = f"annotation {ann.get('id', '?')}: unusable ({type(exc).__name__}: {exc})"
            problems.append(Problem(str(rec.image_path), f"{reason}; ignored"))
            continue
        if obj is not None:
            rec.annotations.append(obj)
    for path in sorted(split_dir.iterdir()):
        if is_image_file(path) and unicodedata.normalize("NFC", path.name) not in listed:
            problems.append(Problem(str(path), f"image not listed in {json_path.name}; skipped"))
    return list(by_id.values()), problems


# --------------------------------------------------------------------------- YOLOv8-seg


def _yolo_line(
    line: str,
    lineno: int,
    width: int,
    height: int,
    file: str,
    problems: list[Problem],
    n_classes: int | None = None,
) -> Annotation | None:
    what = f"line {lineno}"
    try:
        values = [float(v) for v in line.split()]
    except ValueError:
        problems.append(Problem(file, f"{what}: not numbers ({line.strip()[:60]!r}); ignored"))
        return None
    class_id, coords = values[0], values[1:]
    if not _finite(coords):
        problems.append(Problem(file, f"{what}: non-finite coordinate; ignored"))
        return None
    if not (math.isfinite(class_id) and class_id == int(class_id) and class_id >= 0) or (
        n_classes is not None and class_id >= n_classes
    ):
        known = f" (data.yaml has {n_classes} classes: 0..{n_classes - 1})" if n_classes else ""
        problems.append(
            Problem(file, f"{what}: class id {line.split()[0]} is unknown{known}; ignored")
        )
        return None
    if len(coords) == 4:  # a box: cx cy w h, normalised
        cx, cy, w, h = coords
        edges = [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]
        if not _in_unit_range(edges + [w, h], what, file, problems):
            return None
        bbox = ((cx - w / 2) * width, (cy - h / 2) * height, w * width, h * height)
        return _box_annotation(bbox, width, height, file, what, problems, fallback=False)
    if coords and not _in_unit_range(coords, what, file, problems):
        return None
    clipped = [min(max(v, 0.0), 1.0) for v in coords]
    pixels = [v * (width if i % 2 == 0 else height) for i, v in enumerate(clipped)]
    parts = _polygon_parts([pixels], file, what, problems)
    if not parts:
        return None
    return Annotation(kind="polygon", bbox=_bounds(parts[0]), polygons=parts, label=what)


def _in_unit_range(values: list[float], what: str, file: str, problems: list[Problem]) -> bool:
    """True when normalised values lie in [0, 1] up to COORD_TOLERANCE; else a problem."""
    low, high = min(values), max(values)
    if low >= -COORD_TOLERANCE and high <= 1 + COORD_TOLERANCE:
        return True
    problems.append(
        Problem(
            file,
            f"{what}: coordinates outside [0, 1] (from {low:g} to {high:g}; YOLO labels are "
            "fractions of the image size); ignored",
        )
    )
    return False


def read_yolo_split(
    split_dir: Path, n_classes: int | None = None
) -> tuple[list[ImageRecord], list[Problem]]:
    """Read `<split>/images` with `<split>/labels/<stem>.txt` (no label file: no objects).

    Class ids must be below `n_classes` (default: from the export's data.yaml, unchecked when
    it names no classes).
    """
    if n_classes is None:
        n_classes = yolo_class_count(split_dir.parent)
    problems: list[Problem] = []
    records: list[ImageRecord] = []
    image_dir, label_dir = split_dir / "images", split_dir / "labels"
    images = sorted(p for p in image_dir.iterdir() if is_image_file(p))
    stems = {p.stem for p in images}
    for label in sorted(label_dir.glob("*.txt")):
        if label.stem not in stems:
            problems.append(Problem(str(label), "label file without an image; ignored"))
    for path in images:
        try:
            width, height = image_size(path)  # labels are relative to the EXIF-oriented image
            if width < 1 or height < 1:
                raise ImageReadError(path, f"degenerate size {width}x{height}")
        except ImageReadError as exc:
            problems.append(Problem(str(path), f"{exc.reason}; skipped"))
            continue
        rec = ImageRecord(
            image_path=path.resolve(),
            file_name=path.name,
            source_split=split_dir.name,
            width=width,
            height=height,
        )
        label = label_dir / f"{path.stem}.txt"
        if label.is_file():
            try:
                text = label.read_text(encoding="utf-8-sig")  # a byte-order mark is skipped
            except UnicodeDecodeError:
                problems.append(Problem(str(label), "not UTF-8 text; image skipped"))
                continue
            except OSError as exc:
                problems.append(Problem(str(label), f"unreadable ({exc.strerror}); image skipped"))
                continue
            for lineno, line in enumerate(text.splitlines(), start=1):
                if line.strip():
                    obj = _yolo_line(line, lineno, width, height, str(label), problems, n_classes)
                    if obj is not None:
                        rec.annotations.append(obj)
        records.append(rec)
    return records, problems


def _data_yaml(root: str | Path) -> dict:
    try:
        data = yaml.safe_load((Path(root) / YOLO_FILE).read_text(encoding="utf-8-sig")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def yolo_class_count(root: str | Path) -> int | None:
    """How many classes a YOLOv8 export's data.yaml declares: its `names`, else `nc`; None
    when it declares neither."""
    data = _data_yaml(root)
    names = data.get("names")
    if isinstance(names, dict) and names:
        keys = [k for k in names if isinstance(k, int)]
        return max(keys) + 1 if keys else len(names)
    if isinstance(names, list) and names:
        return len(names)
    nc = data.get("nc")
    return nc if isinstance(nc, int) and nc > 0 else None
