"""The synthetic demo exports: Roboflow layout and quirks, determinism, caching."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import imagehash
import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from helpers.demo import synthetic
from helpers.demo.exports import ensure_demo_data, main
from helpers.demo.synthetic import STAMP_NAME, DemoPaths, generate_demo_exports

SIZE = 128
SMALL = {"image_size": SIZE, "n_crack_sources": 8, "n_taping_sources": 8}
FILE_NAME = re.compile(r"^(?P<source>.+)_jpg\.rf\.[0-9a-f]{32}\.jpg$")
CRACK_SPLITS = ("train", "valid", "test")
TAPING_SPLITS = ("train", "valid")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> DemoPaths:
    return generate_demo_exports(tmp_path_factory.mktemp("demo") / "demo", seed=0, **SMALL)



def stroke_width(mask: np.ndarray) -> float:
    """Mean width in pixels of the thin shapes of a boolean mask: area / skeleton length."""
    from skimage.morphology import skeletonize

    mask = np.asarray(mask).astype(bool)
    length = int(skeletonize(mask).sum())
    return float(mask.sum() / length) if length else 0.0

def load(folder: Path, split: str) -> dict:
    return json.loads((folder / split / "_annotations.coco.json").read_text(encoding="utf-8"))


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_layout_and_schema_match_real_exports(demo: DemoPaths) -> None:
    assert demo.cracks == demo.root / "cracks"
    assert demo.taping == demo.root / "drywall-join"
    assert demo.seam_masks == demo.root / "drywall-join-seams"
    for folder, splits, with_extra in (
        (demo.cracks, CRACK_SPLITS, True),
        (demo.taping, TAPING_SPLITS, False),
    ):
        assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(splits)
        for split in splits:
            data = load(folder, split)
            assert list(data) == ["info", "licenses", "categories", "images", "annotations"]
            assert data["licenses"][0]["name"] == "CC BY 4.0"
            image_keys = ["id", "license", "file_name", "height", "width", "date_captured"]
            ids = set()
            for image in data["images"]:
                assert list(image) == image_keys + (["extra"] if with_extra else [])
                assert (image["height"], image["width"]) == (SIZE, SIZE)
                pixels = cv2.imread(str(folder / split / image["file_name"]))
                assert pixels.shape == (SIZE, SIZE, 3)
                ids.add(image["id"])
            assert ids == set(range(len(data["images"])))
            on_disk = {p.name for p in (folder / split).glob("*.jpg")}
            assert on_disk == {im["file_name"] for im in data["images"]}
            ann_keys = ["id", "image_id", "category_id", "bbox", "area", "segmentation", "iscrowd"]
            for ann in data["annotations"]:
                assert list(ann) == ann_keys
                assert ann["category_id"] == 1 and ann["iscrowd"] == 0
                assert ann["image_id"] in ids
                x, y, w, h = ann["bbox"]
                assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= SIZE and y + h <= SIZE
                assert ann["area"] == w * h  # Roboflow writes the box area
            assert len({a["id"] for a in data["annotations"]}) == len(data["annotations"])


def test_categories_have_placeholder_zero_and_class_one(demo: DemoPaths) -> None:
    assert load(demo.cracks, "train")["categories"] == [
        {"id": 0, "name": "cracks", "supercategory": "none"},
        {"id": 1, "name": "crack", "supercategory": "cracks"},
    ]
    assert load(demo.taping, "valid")["categories"] == [
        {"id": 0, "name": "Drywall-Join", "supercategory": "none"},
        {"id": 1, "name": "drywall-join", "supercategory": "Drywall-Join"},
    ]


def test_file_names_follow_roboflow_pattern(demo: DemoPaths) -> None:
    for split in CRACK_SPLITS:
        for image in load(demo.cracks, split)["images"]:
            match = FILE_NAME.match(image["file_name"])
            assert match, image["file_name"]
            assert image["extra"] == {"name": f"{match['source']}.jpg"}
    for split in TAPING_SPLITS:
        for image in load(demo.taping, split)["images"]:
            assert FILE_NAME.match(image["file_name"]), image["file_name"]


def test_same_seed_gives_identical_bytes_and_other_seed_differs(
    demo: DemoPaths, tmp_path: Path
) -> None:
    again = generate_demo_exports(tmp_path / "again", seed=0, **SMALL)
    assert tree_digest(again.root) == tree_digest(demo.root)
    other = generate_demo_exports(tmp_path / "other", seed=1, **SMALL)
    for split in ("train", "valid"):
        for folder in ("cracks", "drywall-join"):
            first = (demo.root / folder / split / "_annotations.coco.json").read_bytes()
            second = (other.root / folder / split / "_annotations.coco.json").read_bytes()
            assert first != second


def test_crack_polygons_are_valid_and_darker_than_the_wall(demo: DemoPaths) -> None:
    inside, outside = [], []
    for split in CRACK_SPLITS:
        data = load(demo.cracks, split)
        names = {im["id"]: im["file_name"] for im in data["images"]}
        for ann in data["annotations"]:
            if not ann["segmentation"]:
                continue
            x, y, w, h = ann["bbox"]
            for poly in ann["segmentation"]:
                pts = np.asarray(poly, dtype=float).reshape(-1, 2)
                assert len(pts) >= 3
                assert pts.min() >= 0 and pts.max() <= SIZE
                assert (pts[:, 0] >= x).all() and (pts[:, 0] <= x + w).all()
                assert (pts[:, 1] >= y).all() and (pts[:, 1] <= y + h).all()
            mask = mask_utils.decode(
                mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], SIZE, SIZE))
            ).astype(bool)
            grey = cv2.imread(str(demo.cracks / split / names[ann["image_id"]]), 0)
            ring = cv2.dilate(mask.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
            inside.append(grey[mask].mean())
            outside.append(grey[ring & ~mask].mean())
    assert len(inside) >= 5
    assert np.mean(np.asarray(inside) < np.asarray(outside)) > 0.9


def test_crack_export_has_negatives_and_empty_segmentation_quirk(demo: DemoPaths) -> None:
    n_images = n_negative = n_empty = 0
    for split in CRACK_SPLITS:
        data = load(demo.cracks, split)
        annotated = {a["image_id"] for a in data["annotations"]}
        n_images += len(data["images"])
        n_negative += sum(im["id"] not in annotated for im in data["images"])
        n_empty += sum(a["segmentation"] == [] for a in data["annotations"])
    assert n_negative >= 1 and n_negative < n_images / 2
    assert n_empty >= 1


def test_drywall_boxes_cover_true_seam_bands(demo: DemoPaths) -> None:
    n_boxes = 0
    for split in TAPING_SPLITS:
        data = load(demo.taping, split)
        images = {im["id"]: im for im in data["images"]}
        boxes = defaultdict(list)
        for ann in data["annotations"]:
            assert ann["segmentation"] == []
            boxes[ann["image_id"]].append(ann["bbox"])
        for image_id, image in images.items():
            stem = Path(image["file_name"]).stem
            seam = cv2.imread(str(demo.seam_masks / split / f"{stem}.png"), cv2.IMREAD_UNCHANGED)
            assert seam.shape == (SIZE, SIZE) and seam.dtype == np.uint8
            assert set(np.unique(seam)) <= {0, 255}
            assert boxes[image_id], f"{image['file_name']} has no box"
            covered = np.zeros_like(seam, dtype=bool)
            for x, y, w, h in boxes[image_id]:
                covered[y : y + h, x : x + w] = True
                assert (seam[y : y + h, x : x + w] > 0).mean() > 0.15  # a band, not empty wall
                n_boxes += 1
            assert not (seam.astype(bool) & ~covered).any()  # every seam pixel is boxed
        assert len(list((demo.seam_masks / split).glob("*.png"))) == len(images)
    assert n_boxes > len(images)  # some images have two or more seams


def test_sources_export_two_to_four_variants_that_leak_across_splits(demo: DemoPaths) -> None:
    for folder, splits in ((demo.cracks, CRACK_SPLITS), (demo.taping, TAPING_SPLITS)):
        counts: Counter[str] = Counter()
        where: dict[str, set[str]] = defaultdict(set)
        hashes = []
        for split in splits:
            for image in load(folder, split)["images"]:
                source = FILE_NAME.match(image["file_name"])["source"]
                counts[source] += 1
                where[source].add(split)
                with Image.open(folder / split / image["file_name"]) as pixels:
                    hashes.append((source, imagehash.phash(pixels)))
        assert set(counts.values()) <= {2, 3, 4}
        assert any(len(s) > 1 and "train" in s for s in where.values())  # the export leaks
        renamed = any(
            a != b and ha - hb <= 2 for i, (a, ha) in enumerate(hashes) for b, hb in hashes[i + 1 :]
        )
        assert renamed, f"no re-uploaded photo under another name in {folder.name}"


def test_ensure_demo_data_caches_and_regenerates_on_change(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    first = ensure_demo_data(out, seed=0, **SMALL)
    stamp, coco = out / STAMP_NAME, first.cracks / "train" / "_annotations.coco.json"
    before = (stamp.stat().st_mtime_ns, coco.stat().st_mtime_ns)
    assert ensure_demo_data(out, seed=0, **SMALL) == first
    assert (stamp.stat().st_mtime_ns, coco.stat().st_mtime_ns) == before
    old_json = coco.read_bytes()
    ensure_demo_data(out, seed=3, **SMALL)
    assert json.loads(stamp.read_text())["seed"] == 3
    assert coco.read_bytes() != old_json
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no temp folders left


def test_interrupted_build_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(synthetic.export, "_build_taping", fail)
    with pytest.raises(KeyboardInterrupt):
        generate_demo_exports(tmp_path / "demo", seed=0, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_refuses_to_replace_a_folder_that_is_not_a_demo(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a demo folder"):
        generate_demo_exports(tmp_path, seed=0, **SMALL)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


def test_cli_help_and_paths(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--seed" in capsys.readouterr().out
    assert main(["--out", str(tmp_path / "demo"), "--seed", "2"]) == 0
    printed = capsys.readouterr().out
    assert str(tmp_path / "demo" / "drywall-join-seams") in printed
    assert json.loads((tmp_path / "demo" / STAMP_NAME).read_text())["image_size"] == 320


def test_crack_outlines_are_loose_like_the_real_annotations(tmp_path: Path) -> None:
    """Annotated widths match the real export's (median 10 px at 352 px, quartiles 5 and 17)."""
    size = 320  # the demo's own size: crack widths do not scale down exactly
    demo = generate_demo_exports(
        tmp_path / "demo", seed=3, image_size=size, n_crack_sources=10, n_taping_sources=2
    )
    widths, covered = [], []
    for split in CRACK_SPLITS:
        data = load(demo.cracks, split)
        names = {im["id"]: im["file_name"] for im in data["images"]}
        by_image = defaultdict(list)
        for ann in data["annotations"]:
            by_image[ann["image_id"]] += ann["segmentation"]
        for image_id, polygons in by_image.items():
            if not polygons:
                continue
            mask = mask_utils.decode(
                mask_utils.merge(mask_utils.frPyObjects(polygons, size, size))
            ).astype(bool)
            widths.append(stroke_width(mask) * 352 / size)
            grey = cv2.imread(str(demo.cracks / split / names[image_id]), 0).astype(float)
            dark = grey < cv2.GaussianBlur(grey, (0, 0), 4) - 30  # the drawn crack
            covered.append(mask[dark].mean() if dark.any() else 1.0)
    assert len(widths) >= 5
    assert 6.0 <= float(np.median(widths)) <= 15.0
    assert float(np.median(covered)) > 0.8  # the outline holds the dark crack pixels
