"""prepare: masks + manifest + split + problems + leakage, cached, never touching the exports."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from export_builders import (
    make_coco_export,
    make_yolo_export,
    render_mask,
    rf_name,
    square,
    tree_checksums,
    write_coco_split,
)
from PIL import Image

from helpers.data.preparation import (
    MANIFEST_COLUMNS,
    ensure_prepared,
    main,
    prepare_datasets,
    read_manifest,
)
from helpers.data.roboflow import read_export

CRACK_SPLITS = {
    "train": ["c01", "c01", "c02", "c03", "c04", "c05", "c06"],
    "valid": ["c01", "c07"],
    "test": ["c08"],
}
TAPING_SPLITS = {"train": ["t1", "t2", "t3", "t4"], "valid": ["t2", "t5"]}


@pytest.fixture()
def exports(tmp_path: Path) -> tuple[Path, Path]:
    cracks = make_coco_export(tmp_path / "cracks", CRACK_SPLITS)
    taping = make_coco_export(tmp_path / "taping", TAPING_SPLITS, size=24)
    return cracks, taping


def test_prepare_writes_masks_manifest_problems_and_leakage(exports, tmp_path: Path):
    cracks, taping = exports
    before = {p: tree_checksums(p) for p in exports}
    out = tmp_path / "out"
    prepared = prepare_datasets(cracks, taping, out, seed=3)
    assert {p: tree_checksums(p) for p in exports} == before  # raw data untouched

    df = read_manifest(out / "manifest.csv")
    assert list(df.columns) == MANIFEST_COLUMNS
    assert len(df) == len(prepared.manifest) == 10 + 6
    assert set(df["split"]) <= {"train", "val", "test"}
    # every image of one source photo lands in one project split
    assert (df.groupby("source_id")["split"].nunique() == 1).all()
    row = df[df["source_id"] == "c01"].iloc[0]
    assert row["group_id"] and row["dataset"] == "cracks"
    assert Path(row["mask_path"]) == out / "masks" / "cracks" / row["source_split"] / (
        Path(row["file_name"]).stem + ".png"
    )
    for _, r in df.iterrows():
        assert Path(r["image_path"]).is_file() and Path(r["image_path"]).is_absolute()
        mask = np.asarray(Image.open(r["mask_path"]))
        assert mask.shape == (r["height"], r["width"]) and set(np.unique(mask)) == {0, 255}
    # a crack image: one 8 x 8 square on a 32 x 32 picture
    assert df.loc[df["dataset"] == "cracks", "mask_fraction"].eq(64 / 1024).all()
    assert (df["true_mask_path"] == "").all() and prepared.problems == []
    assert (out / "problems.csv").read_text().startswith("dataset,file,reason")

    leakage = json.loads((out / "leakage.json").read_text())
    by_key = {(r["dataset"], r["split_a"], r["split_b"], r["key"]): r for r in leakage}
    assert by_key[("cracks", "train", "valid", "source_id")]["n_shared"] == 1  # c01
    assert by_key[("taping", "train", "valid", "source_id")]["n_shared"] == 1  # t2


def test_masks_on_disk_equal_the_rendered_masks(tmp_path: Path):
    root = make_yolo_export(tmp_path / "y", {"a.jpg": "0 0.25 0.5 0.75 0.5 0.75 1 0.25 1\n"})
    prepared = prepare_datasets(root, None, tmp_path / "out")
    row = prepared.manifest.iloc[0]
    expected = render_mask(read_export(root).records[0])
    np.testing.assert_array_equal(np.asarray(Image.open(row["mask_path"])), expected)
    assert row["export_format"] == "yolov8" and row["n_objects"] == 1


def test_a_few_bad_files_are_listed_and_nothing_else_is_lost(exports, tmp_path: Path):
    cracks, taping = exports
    copy = tmp_path / "bad"
    shutil.copytree(cracks, copy)
    train = copy / "train"
    data = json.loads((train / "_annotations.coco.json").read_text(encoding="utf-8"))
    names = [img["file_name"] for img in data["images"]]
    (train / names[0]).unlink()  # listed but missing
    cut = train / names[1]
    cut.write_bytes(cut.read_bytes()[:200])  # truncated JPEG
    data["annotations"].append(
        {
            "id": 99,
            "image_id": 2,
            "category_id": 1,
            "bbox": [1, 1, 0, 0],
            "segmentation": [[1, 1, 2, 2]],
            "iscrowd": 0,
        }
    )
    (train / "_annotations.coco.json").write_text(json.dumps(data), encoding="utf-8")
    (copy / "valid" / "_annotations.coco.json").write_text("{broken", encoding="utf-8")

    prepared = prepare_datasets(copy, taping, tmp_path / "out")
    files = " ".join(p.file for p in prepared.problems)
    assert names[0] in files and names[1] in files and "valid" in files
    problems = (tmp_path / "out" / "problems.csv").read_text(encoding="utf-8")
    assert names[0] in problems and names[1] in problems and "malformed JSON" in problems
    assert "zero-area box" in problems
    got = set(prepared.manifest["file_name"])
    good = set(names[2:]) | {p.name for p in (copy / "test").glob("*.jpg")}
    assert good <= got and names[0] not in got and names[1] not in got
    assert (prepared.manifest["dataset"] == "taping").sum() == 6
    # the image with the zero-area extra box keeps its good square
    assert prepared.manifest.set_index("file_name").loc[names[2], "n_objects"] == 1


def test_non_ascii_and_seam_masks(tmp_path: Path):
    root = tmp_path / "taping"
    name = "joint_été_jpg.rf.0a1b.jpg"
    write_coco_split(
        root / "train",
        [
            {"file_name": name, "width": 16, "height": 16},
            {"file_name": rf_name("other", 1), "width": 16, "height": 16},
        ],
        [{"image_id": 0, "bbox": [4, 0, 4, 16], "segmentation": []}],
    )
    seams = tmp_path / "seams" / "train"
    seams.mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(seams / "joint_été_jpg.rf.0a1b.png")
    prepared = prepare_datasets(None, root, tmp_path / "out", seam_masks=tmp_path / "seams")
    df = read_manifest(prepared.manifest_path)
    row = df.set_index("file_name").loc[name]
    assert row["source_id"] == "joint_été" and row["n_box_fallbacks"] == 1
    assert row["mask_fraction"] == pytest.approx(64 / 256)
    assert Path(row["true_mask_path"]).name == "joint_été_jpg.rf.0a1b.png"
    assert df.set_index("file_name").loc[rf_name("other", 1), "true_mask_path"] == ""


def test_ensure_prepared_reuses_until_the_input_changes(exports, tmp_path: Path):
    cracks, taping = exports
    out = tmp_path / "out"
    first = ensure_prepared(cracks, taping, out)
    stamp = (out / "manifest.csv").stat().st_mtime_ns
    again = ensure_prepared(cracks, taping, out)
    assert (out / "manifest.csv").stat().st_mtime_ns == stamp
    assert again.manifest.equals(first.manifest)
    assert [type(v) for v in again.manifest.iloc[0]] == [type(v) for v in first.manifest.iloc[0]]

    other_seed = ensure_prepared(cracks, taping, out, seed=7)  # parameters changed: rebuilt
    assert (out / "manifest.csv").stat().st_mtime_ns != stamp
    assert len(other_seed.manifest) == len(first.manifest)

    stamp = (out / "manifest.csv").stat().st_mtime_ns
    json_path = taping / "valid" / "_annotations.coco.json"
    data = json.loads(json_path.read_text())
    data["annotations"][0]["segmentation"] = [square(0, 0, 4, 4)]
    json_path.write_text(json.dumps(data))
    rebuilt = ensure_prepared(cracks, taping, out, seed=7)
    assert (out / "manifest.csv").stat().st_mtime_ns != stamp
    changed = rebuilt.manifest.set_index("file_name").loc[data["images"][0]["file_name"]]
    assert changed["mask_fraction"] == pytest.approx(16 / 576)

    os.remove(rebuilt.manifest["mask_path"].iloc[0])  # a mask lost: rebuilt, not reused
    ensure_prepared(cracks, taping, out, seed=7)
    assert Path(rebuilt.manifest["mask_path"].iloc[0]).is_file()


def test_output_inside_an_export_is_refused(exports):
    cracks, taping = exports
    with pytest.raises(ValueError, match="overlaps the cracks export"):
        prepare_datasets(cracks, taping, cracks / "prepared")
    with pytest.raises(ValueError, match="at least one export"):
        prepare_datasets(None, None, cracks.parent / "out")


def test_cli_prints_a_summary(exports, tmp_path: Path, capsys):
    cracks, taping = exports
    code = main(["--cracks", str(cracks), "--taping", str(taping), "--out", str(tmp_path / "o")])
    text = capsys.readouterr().out
    assert code == 0
    assert "images per dataset and export split" in text and "leakage" in text
    assert "problems: 0" in text
    with pytest.raises(SystemExit) as err:
        main(["--out", str(tmp_path / "o")])
    assert err.value.code == 2
    assert main(["--cracks", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_drywall_valid_split_prepares_without_touching_the_export(
    shared_roboflow: Path, tmp_path: Path
):
    valid = shared_roboflow / "drywall-join-detect.v2i.coco" / "valid"
    export = tmp_path / "drywall-valid"
    export.mkdir()
    (export / "valid").symlink_to(valid, target_is_directory=True)
    before = tree_checksums(valid)
    prepared = prepare_datasets(None, export, tmp_path / "out")
    assert tree_checksums(valid) == before
    df = prepared.manifest
    assert len(df) == 202 and prepared.problems == []
    assert df["n_box_fallbacks"].sum() == 250 and (df["n_objects"] >= 1).all()
    assert df["source_id"].nunique() == 86
    assert (df["width"] == 640).all() and (df["height"] == 640).all()
    assert not any(p.is_relative_to(valid) for p in (tmp_path / "out").rglob("*"))


def test_box_masks_can_be_refined_into_seams_inside_their_boxes(tmp_path):
    """A box over a light band: refined masks stay inside the box and hug the band."""
    import json

    import cv2
    import numpy as np

    from helpers.data.preparation import prepare_datasets
    from helpers.evaluate.metrics import iou

    split = tmp_path / "export" / "train"
    split.mkdir(parents=True)
    rng = np.random.default_rng(0)
    images, annotations = [], []
    for i in range(4):
        img = rng.normal(150, 6, (96, 96)).astype(np.float32)
        img[:, 40:52] += 25  # the seam: a band 12 px wide
        name = f"wall{i}_jpg.rf.{i:032x}.jpg"
        cv2.imwrite(str(split / name), np.clip(img, 0, 255).astype(np.uint8))
        images.append({"id": i, "file_name": name, "width": 96, "height": 96})
        annotations.append({"id": i, "image_id": i, "category_id": 1, "bbox": [30, 0, 32, 96],
                            "area": 32 * 96, "segmentation": [], "iscrowd": 0})
    coco = {"images": images, "annotations": annotations,
            "categories": [{"id": 0, "name": "j", "supercategory": "none"},
                           {"id": 1, "name": "joint", "supercategory": "j"}]}
    (split / "_annotations.coco.json").write_text(json.dumps(coco))
    rect = prepare_datasets(None, tmp_path / "export", tmp_path / "rect", seed=1)
    lines = prepare_datasets(None, tmp_path / "export", tmp_path / "lines", seed=1,
                             box_masks="lines")
    for a, b in zip(rect.manifest.itertuples(), lines.manifest.itertuples(), strict=True):
        box = cv2.imread(a.mask_path, cv2.IMREAD_UNCHANGED) > 0
        seam = cv2.imread(b.mask_path, cv2.IMREAD_UNCHANGED) > 0
        assert box[:, 30:62].all() and not box[:, :30].any()
        assert not (seam & ~box).any()  # never outside the box
        band = np.zeros_like(box)
        band[:, 40:52] = True
        assert iou(seam, band) > iou(box, band) + 0.3
    with pytest.raises(ValueError, match="box_masks"):
        prepare_datasets(None, tmp_path / "export", tmp_path / "bad", box_masks="sam")


def test_the_cache_key_covers_every_module_that_renders_or_splits(exports):
    # an edit to any of them must rebuild prepared data, refined seams included
    import helpers.data.preparation as prepare

    cracks, taping = exports
    key = prepare.input_key({"cracks": cracks, "taping": taping}, 1, (0.7, 0.15, 0.15), None)
    assert {"preparation.py", "refine.py", "masks.py", "split.py"} <= set(key["code"])
