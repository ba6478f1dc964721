"""Tiny Roboflow-style exports built in a temporary folder for the data tests."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.data.masks import render_mask_and_notes

# Roboflow's category layout: id 0 is a placeholder supercategory, the real class has id 1.
ROBOFLOW_CATEGORIES = [
    {"id": 0, "name": "crack", "supercategory": "none"},
    {"id": 1, "name": "crack-v2", "supercategory": "crack"},
]


def rf_name(source: str, index: int, ext: str = "jpg") -> str:
    """A Roboflow-style file name `<source>_<ext>.rf.<32 hex>.<ext>`."""
    digest = hashlib.md5(f"{source}-{index}".encode()).hexdigest()
    return f"{source}_{ext}.rf.{digest}.{ext}"


def write_image(path: Path, width: int = 32, height: int = 24, seed: int = 0) -> Path:
    """A small RGB picture with a random texture (distinct per seed) saved at `path`."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
    big = np.kron(arr, np.ones((4, 4, 1), dtype=np.uint8))[:height, :width]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(big).save(path)
    return path


def write_coco_split(
    split_dir: Path,
    images: list[dict],
    annotations: list[dict],
    categories: list[dict] | None = None,
    write_images: bool = True,
) -> Path:
    """Write `_annotations.coco.json` (and a picture for each image entry unless told not to)."""
    split_dir.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        img.setdefault("id", i)
        if write_images:
            write_image(split_dir / img["file_name"], img["width"], img["height"], seed=i)
    for i, ann in enumerate(annotations):
        ann.setdefault("id", i)
        ann.setdefault("category_id", 1)
        ann.setdefault("iscrowd", 0)
    data = {
        "info": {"description": "test"},
        "categories": categories if categories is not None else ROBOFLOW_CATEGORIES,
        "images": images,
        "annotations": annotations,
    }
    path = split_dir / "_annotations.coco.json"
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def square(x0: float, y0: float, x1: float, y1: float) -> list[float]:
    """A flat polygon [x, y, ...] for the rectangle with corners (x0, y0) and (x1, y1)."""
    return [x0, y0, x1, y0, x1, y1, x0, y1]


def make_coco_export(root: Path, splits: dict[str, list[str]], size: int = 32) -> Path:
    """A COCO export: for each split, images from the given sources, one square crack each."""
    seed = 0
    for split, sources in splits.items():
        images, annotations = [], []
        for i, source in enumerate(sources):
            images.append(
                {"id": i, "file_name": rf_name(source, seed), "width": size, "height": size}
            )
            annotations.append(
                {"image_id": i, "bbox": [4, 4, 8, 8], "segmentation": [square(4, 4, 12, 12)]}
            )
            seed += 1
        split_dir = root / split
        split_dir.mkdir(parents=True, exist_ok=True)
        write_coco_split(split_dir, images, annotations, write_images=False)
        for img in images:
            index = int(img["file_name"].split(".rf.")[1][:6], 16)
            write_image(split_dir / img["file_name"], size, size, seed=index)
    return root


def make_yolo_export(root: Path, labels: dict[str, str], size: tuple[int, int] = (40, 20)) -> Path:
    """A YOLOv8-seg export with one `valid` split: image file name -> label text."""
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text("nc: 1\nnames: ['crack']\n", encoding="utf-8")
    for k, (name, text) in enumerate(labels.items()):
        write_image(root / "valid" / "images" / name, size[0], size[1], seed=k)
        label = root / "valid" / "labels" / f"{Path(name).stem}.txt"
        label.parent.mkdir(parents=True, exist_ok=True)
        label.write_text(text, encoding="utf-8")
    return root


def tree_checksums(root: Path) -> dict[str, str]:
    """sha256 of every file under root, by relative path."""
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def render_mask(record) -> np.ndarray:
    """The union of a record's objects as uint8 {0, 255}, shape (height, width)."""
    return render_mask_and_notes(record)[0]
