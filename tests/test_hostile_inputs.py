"""Hostile inputs, second round: each case is handled, or refused in one named line (exit 2
for misuse), and nothing is lost."""

from __future__ import annotations

import errno
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from export_builders import (
    make_coco_export,
    make_yolo_export,
    render_mask,
    square,
    write_coco_split,
)
from PIL import Image
from pycocotools import mask as mask_utils

import helpers.data.preparation as prepare_module
from helpers.core.cache import tree_digest
from helpers.core.progress import HEADLESS_ENV
from helpers.data.images import load_rgb
from helpers.data.preparation import ensure_prepared, prepare_datasets, read_manifest
from helpers.data.roboflow import Annotation, ImageRecord, read_coco_split, read_export
from helpers.inference import mask_files as predict


def _coco(root: Path, annotations: list[dict], n_images: int = 3, size: int = 32) -> Path:
    """A one-split COCO export of `n_images` pictures; `annotations` go on image 0."""
    images = [
        {"id": i, "file_name": f"img{i}.jpg", "width": size, "height": size}
        for i in range(n_images)
    ]
    anns = [dict(a, image_id=0) for a in annotations]
    anns += [
        {"image_id": i, "bbox": [4, 4, 8, 8], "segmentation": [square(4, 4, 12, 12)]}
        for i in range(1, n_images)
    ]
    write_coco_split(root / "train", images, anns)
    return root


def _problems(out: Path) -> str:
    return (out / "problems.csv").read_text(encoding="utf-8")


def _one_line_exit_2(code, err: str, *words: str) -> None:
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


def _cli(capsys, main, args) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- 1: huge polygon


def test_a_polygon_far_outside_the_image_is_a_problem_row_not_a_crash(tmp_path):
    huge = {"bbox": [0, 0, 10, 10], "segmentation": [[0, 0, 1e9, 0, 0, 1e9]]}
    cracks = _coco(tmp_path / "cracks", [huge])
    out = tmp_path / "out"
    prepared = prepare_datasets(cracks, None, out)
    assert len(prepared.manifest) == 3  # the image is kept, drawn from its box
    row = prepared.manifest.set_index("file_name").loc["img0.jpg"]
    assert row["n_box_fallbacks"] == 1 and row["mask_fraction"] == pytest.approx(100 / 1024)
    assert "far outside the 32x32 image" in _problems(out)
    assert not list(tmp_path.glob(".*.lock"))
    # the renderer itself refuses such a polygon (notebooks 01 and 02 draw through it)
    record = ImageRecord(Path("x.jpg"), "x.jpg", "train", 32, 32)
    record.annotations.append(
        Annotation(kind="polygon", bbox=(0, 0, 1, 1), polygons=[[0, 0, 1e9, 0, 0, 1e9]])
    )
    with pytest.raises(ValueError, match="outside the 32x32 image"):
        render_mask(record)


# --------------------------------------------------------------------------- 2: linked split


def test_an_edit_inside_a_linked_split_folder_rebuilds_the_output(tmp_path):
    cracks = make_coco_export(tmp_path / "cracks", {"train": ["a", "b", "c"]})
    elsewhere = make_coco_export(tmp_path / "elsewhere", {"valid": ["d", "e"]}) / "valid"
    (cracks / "valid").symlink_to(elsewhere, target_is_directory=True)
    before_digest = tree_digest(cracks)
    first = ensure_prepared(cracks, None, tmp_path / "out").manifest
    assert (first["source_split"] == "valid").sum() == 2
    coco = elsewhere / "_annotations.coco.json"
    data = json.loads(coco.read_text(encoding="utf-8"))
    data["annotations"][0]["segmentation"] = [square(0, 0, 16, 16)]
    coco.write_text(json.dumps(data), encoding="utf-8")
    assert tree_digest(cracks) != before_digest
    again = ensure_prepared(cracks, None, tmp_path / "out").manifest
    changed = again.set_index("file_name")["mask_fraction"] - first.set_index("file_name")[
        "mask_fraction"
    ]
    assert (changed != 0).sum() == 1  # the edited annotation's mask was redrawn


# --------------------------------------------------------------------------- 3: garbage RLE


def test_a_garbage_rle_is_checked_against_its_own_area_and_bbox(tmp_path):
    near_full = np.ones((32, 32), np.uint8, order="F")
    near_full[0, 0] = 0
    counts = mask_utils.encode(near_full)["counts"].decode("ascii")
    garbage = [
        {"bbox": [4, 4, 8, 8], "area": 64, "segmentation": {"size": [32, 32], "counts": counts}},
        {"bbox": [0, 0, 2, 2], "segmentation": {"size": [32, 32], "counts": "z" * 40}},
    ]
    out = tmp_path / "out"
    prepared = prepare_datasets(_coco(tmp_path / "cracks", garbage), None, out)
    row = prepared.manifest.set_index("file_name").loc["img0.jpg"]
    assert row["mask_fraction"] == pytest.approx(68 / 1024)  # the boxes, not a near-full mask
    problems = _problems(out)
    assert "decodes to 1023 pixels, the export says its area is 64; its box is used" in problems
    assert "annotation 1: RLE does not decode" in problems
    # without an area, the bbox alone tells the garbage apart
    record = ImageRecord(Path("x.jpg"), "x.jpg", "train", 32, 32)
    rle = garbage[0]["segmentation"]
    record.annotations.append(Annotation(kind="rle", bbox=(4, 4, 8, 8), rle=rle))
    assert np.count_nonzero(render_mask(record)) == 64


# --------------------------------------------------------------------------- 4: mask of a mask


def test_predict_never_segments_its_own_masks_when_out_is_the_input(tmp_path, segmenter):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((32, 32, 3), 120, np.uint8)).save(photos / "plain.png")
    first = predict.predict_files(segmenter, [photos], ["segment crack"], photos, progress=False)
    again = predict.predict_files(segmenter, [photos], ["segment crack"], photos, progress=False)
    assert first["masks_written"] == again["masks_written"] == 1
    assert sorted(p.name for p in photos.glob("*.png")) == [
        "plain.png", "plain__segment_crack.png"
    ]
    assert {"file": str(photos / "plain__segment_crack.png"),
            "reason": "a mask written by predict (in --out); not segmented"} in again["skipped"]


# --------------------------------------------------------------------------- 5: name collision


def test_pairs_that_give_the_same_full_mask_name_are_refused(tmp_path, model_dir, capsys):
    for name in ("a.jpg", "a_.jpg"):
        Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / name)
    with pytest.raises(ValueError, match="a___segment_crack.png"):
        predict.check_outputs([tmp_path / "a.jpg", tmp_path / "a_.jpg"],
                              ["_segment crack", "segment crack"])
    code, err = _cli(capsys, predict.main, [
        tmp_path / "a.jpg", tmp_path / "a_.jpg", "--prompt", "_segment crack",
        "--prompt", "segment crack", "--model", model_dir, "--out", tmp_path / "masks",
    ])
    _one_line_exit_2(code, err, "a___segment_crack.png")
    assert not (tmp_path / "masks").exists()


# --------------------------------------------------------------------------- 6: full disk


def test_a_full_disk_prints_the_run_record_instead_of_a_traceback(
    tmp_path, segmenter, monkeypatch, capsys
):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(photos / "wall.png")
    (photos / "notes.txt").write_text("not a photo")
    real_write_json = predict.write_json

    def full_disk(path, data):
        if Path(path).name == predict.RUN_FILE:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_json(path, data)

    monkeypatch.setattr(predict, "write_json", full_disk)
    summary = predict.predict_files(segmenter, [photos], ["segment crack"], tmp_path / "out",
                                    progress=False)
    assert "No space left on device" in summary["run_file_error"]
    assert (tmp_path / "out" / "wall__segment_crack.png").is_file()
    err = capsys.readouterr().err
    record = json.loads(err[err.index("{"):])
    assert record["masks_written"] == 1
    assert record["skipped"] == [
        {"file": str(photos / "notes.txt"), "reason": "not an image file (by its extension)"}
    ]


# --------------------------------------------------------------------------- 7: duplicate entry


def test_a_repeated_image_entry_keeps_the_annotations_of_both(tmp_path):
    images = [
        {"id": 0, "file_name": "wall.jpg", "width": 32, "height": 32},
        {"id": 1, "file_name": "wall.jpg", "width": 32, "height": 32},
    ]
    anns = [
        {"image_id": 0, "bbox": [0, 0, 4, 4], "segmentation": [square(0, 0, 4, 4)]},
        {"image_id": 1, "bbox": [8, 8, 4, 4], "segmentation": [square(8, 8, 12, 12)]},
    ]
    write_coco_split(tmp_path / "train", images, anns, write_images=False)
    Image.new("RGB", (32, 32)).save(tmp_path / "train" / "wall.jpg")
    records, problems = read_coco_split(tmp_path / "train")
    assert len(records) == 1 and len(records[0].annotations) == 2
    assert ["image id 1 repeats the entry of id 0" in p.reason for p in problems] == [True]


# --------------------------------------------------------------------------- 8: one export twice


def test_the_same_export_as_both_classes_is_refused_in_one_line(tmp_path, capsys):
    export = make_coco_export(tmp_path / "export", {"train": ["a", "b", "c"]})
    code, err = _cli(capsys, prepare_module.main,
                     ["--cracks", export, "--taping", export, "--out", tmp_path / "out"])
    _one_line_exit_2(code, err, "same export")
    shutil.copytree(export, tmp_path / "copy")
    code, err = _cli(capsys, prepare_module.main,
                     ["--cracks", export, "--taping", tmp_path / "copy", "--out", tmp_path / "out"])
    _one_line_exit_2(code, err, "hold the same files")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- 9: the report


def _report(tmp_path, monkeypatch, sweep_changes: dict | None = None):
    """The report command run on metrics of notebooks 01 and 05 written with `sweep_changes`
    (None: on the metrics already in `tmp_path`)."""
    from test_report import _metrics

    import helpers.course.course_report as report

    folder = _metrics(tmp_path, **sweep_changes) if sweep_changes is not None else tmp_path
    monkeypatch.setattr(report, "OUTPUTS_DIR", tmp_path.parent)
    monkeypatch.setattr(report, "profile_dir", lambda run: tmp_path.parent / run)
    monkeypatch.setattr(report, "export_html", lambda out_dir: [])
    return report.main(["--profile", tmp_path.name]), folder


def test_a_nan_score_is_named_by_file_and_field_and_fails_the_report(
    tmp_path, monkeypatch, capsys
):
    code, folder = _report(
        tmp_path, monkeypatch, {"test_iou_at_val_threshold": {"cracks": math.nan, "taping": 0.5}}
    )
    err = capsys.readouterr().err
    # strict JSON writes the NaN as null; the report names it all the same
    named = "05_threshold_sweep.json: test_iou_at_val_threshold['cracks'] = null"
    assert code == 1 and named in err
    assert named in (folder / "report.md").read_text(encoding="utf-8")


def test_a_missing_metrics_file_is_a_named_missing_section(tmp_path, monkeypatch, capsys):
    code, folder = _report(tmp_path, monkeypatch, {})
    text = (folder / "report.md").read_text(encoding="utf-8")
    assert code == 0
    assert "## 03_joint_dataset\n\n_Section missing: no metrics/03_joint_dataset.json" in text
    assert "section 04_lora_training missing" in capsys.readouterr().err


def test_a_nan_peak_memory_and_a_truncated_file_are_named(tmp_path, monkeypatch, capsys):
    code, folder = _report(tmp_path, monkeypatch, {"peak_memory_mb": math.nan})
    assert code == 1
    assert "05_threshold_sweep.json: peak_memory_mb = nan" in capsys.readouterr().err
    path = folder / "metrics" / "01_data_inspection.json"
    path.write_text(path.read_text(encoding="utf-8")[:40], encoding="utf-8")
    code, _ = _report(tmp_path, monkeypatch)
    err = capsys.readouterr().err
    _one_line_exit_2(code, err, str(path), "not complete JSON")


# --------------------------------------------------------------------------- 10: smaller ones


def test_a_byte_order_mark_costs_neither_a_split_nor_an_object(tmp_path):
    coco = _coco(tmp_path / "coco", []) / "train" / "_annotations.coco.json"
    coco.write_bytes(b"\xef\xbb\xbf" + coco.read_bytes())
    assert len(read_export(coco.parent.parent).records) == 3
    yolo = make_yolo_export(tmp_path / "yolo", {"w.jpg": "0 0.1 0.1 0.5 0.1 0.5 0.5\n"})
    label = yolo / "valid" / "labels" / "w.txt"
    label.write_bytes(b"\xef\xbb\xbf" + label.read_bytes())
    export = read_export(yolo)
    assert len(export.records[0].annotations) == 1 and export.problems == []


def test_width_and_height_written_as_whole_floats_are_read(tmp_path):
    images = [{"id": 0, "file_name": "w.jpg", "width": 32.0, "height": 24.0},
              {"id": 1, "file_name": "v.jpg", "width": 32.5, "height": 24}]
    write_coco_split(tmp_path / "train", images, [], write_images=False)
    for name in ("w.jpg", "v.jpg"):
        Image.new("RGB", (32, 24)).save(tmp_path / "train" / name)
    records, problems = read_coco_split(tmp_path / "train")
    assert [(r.file_name, r.width, r.height) for r in records] == [("w.jpg", 32, 24)]
    assert ["bad width/height 32.5x24" in p.reason for p in problems] == [True]


def test_a_file_name_leading_into_another_split_is_refused(tmp_path):
    export = make_coco_export(tmp_path / "e", {"train": ["a"], "test": ["b"]})
    other = next((export / "test").glob("*.jpg")).name
    images = [{"id": 0, "file_name": f"../test/{other}", "width": 32, "height": 32}]
    write_coco_split(export / "valid", images, [], write_images=False)
    records, problems = read_coco_split(export / "valid")
    assert records == []
    assert [p.reason for p in problems] == [
        f"file_name '../test/{other}' leads outside the split folder; skipped"
    ]


def test_a_dark_16_bit_png_stays_dark(tmp_path):
    Image.fromarray(np.full((8, 8), 200, np.uint16)).save(tmp_path / "dark.png")
    assert Image.open(tmp_path / "dark.png").mode == "I;16"
    assert load_rgb(tmp_path / "dark.png").max() == 1  # 200 / 65535 of full scale


def test_one_file_given_by_two_spellings_is_run_once(tmp_path):
    (tmp_path / "d").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "d" / "x.jpg")
    images, skipped = predict.collect_images([tmp_path / "d" / "x.jpg",
                                              tmp_path / "d" / ".." / "d" / "x.jpg"])
    assert images == [tmp_path / "d" / "x.jpg"] and skipped == []
    predict.check_outputs(images, ["segment crack"])  # nothing would be overwritten


def test_a_notebook_parameter_out_of_range_is_refused_before_any_kernel(monkeypatch, capsys):
    import papermill

    from helpers.course import runner

    def no_kernel(*args, **kwargs):
        raise AssertionError("a kernel was started")

    monkeypatch.setattr(papermill, "execute_notebook", no_kernel)
    for value, said in [("7", "must be at least 32"), ("100", "multiple of 16"),
                        ("2.5", "image_size is float, not int")]:
        code, err = _cli(capsys, runner.main, ["--only", "04", "-p", f"image_size={value}"])
        _one_line_exit_2(code, err, f"-p image_size={value}", said)
    code, err = _cli(capsys, runner.main, ["--only", "01", "-p", "n_examples='8'"])
    _one_line_exit_2(code, err, "n_examples is str, not int")


def test_a_full_disk_during_prepare_names_the_output(tmp_path, monkeypatch, capsys):
    cracks = make_coco_export(tmp_path / "cracks", {"train": ["a", "b", "c"]})

    def full_disk(path, mask):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prepare_module, "write_mask_png", full_disk)
    monkeypatch.setenv(HEADLESS_ENV, "1")  # no progress bar on stderr
    code, err = _cli(capsys, prepare_module.main,
                     ["--cracks", cracks, "--out", tmp_path / "out"])
    _one_line_exit_2(code, err, "No space left on device", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".*.lock"))


def test_a_folder_inside_an_input_folder_is_listed_as_skipped(tmp_path):
    (tmp_path / "dir.jpg").mkdir()
    Image.new("RGB", (16, 16)).save(tmp_path / "x.jpg")
    images, skipped = predict.collect_images([tmp_path])
    assert images == [tmp_path / "x.jpg"]
    assert skipped == [
        (str(tmp_path / "dir.jpg"), "a folder (folders inside an input are not searched)")
    ]


def test_a_manifest_is_unchanged_when_nothing_hostile_is_given(tmp_path):
    """The checks above leave an ordinary export as it was: every image, every object."""
    cracks = make_coco_export(tmp_path / "cracks", {"train": ["a", "b"], "valid": ["c"]})
    prepared = prepare_datasets(cracks, None, tmp_path / "out")
    manifest = read_manifest(prepared.manifest_path)
    assert len(manifest) == 3 and prepared.problems == []
    assert manifest["mask_fraction"].tolist() == pytest.approx([64 / 1024] * 3)
