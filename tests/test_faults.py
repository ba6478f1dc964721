"""Bad files, odd names, file modes, leftovers and CLI misuse: nothing lost, nothing aborted."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from export_builders import make_coco_export, make_yolo_export, write_image
from PIL import Image

import helpers.data.preparation as prepare_module
from helpers.core.io import atomic_folder, atomic_path, sweep_temp_files, write_mask_png
from helpers.data.images import ImageReadError, image_size, load_rgb
from helpers.data.preparation import ensure_prepared, main, prepare_datasets, read_manifest


def _huge_png(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width x height (its pixel data is a 1 x 1 image's)."""
    Image.new("RGB", (1, 1)).save(path, format="PNG")
    data = bytearray(path.read_bytes())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes of header fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


@pytest.fixture()
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


# --------------------------------------------------------------------------- one file, one row


def test_image_above_the_pixel_limit_is_a_problem_not_an_abort(tmp_path: Path):
    cracks = make_coco_export(tmp_path / "cracks", {"train": ["c1", "c2", "c3"]})
    victim = sorted((cracks / "train").glob("*.jpg"))[0]
    # 240 million pixels: above PIL's own bomb limit and above the default max_pixels
    _huge_png(victim, 20000, 12000)
    saved_limit = Image.MAX_IMAGE_PIXELS
    prepared = prepare_datasets(cracks, None, tmp_path / "out")
    assert len(prepared.manifest) == 2
    [problem] = prepared.problems
    assert problem.file == str(victim) and "above the limit of 150.0 million" in problem.reason
    assert Image.MAX_IMAGE_PIXELS == saved_limit  # PIL's process-wide setting is left alone
    assert image_size(victim) == (20000, 12000)  # the header can still be read


def test_max_pixels_is_the_limit_load_rgb_applies(tmp_path: Path):
    path = write_image(tmp_path / "a.png", 32, 24)
    assert load_rgb(path, max_pixels=32 * 24).shape == (24, 32, 3)
    with pytest.raises(ImageReadError, match="a.png.*above the limit"):
        load_rgb(path, max_pixels=32 * 24 - 1)
    cracks = make_coco_export(tmp_path / "cracks", {"train": ["c1", "c2"]})
    rc = main(["--cracks", str(cracks), "--out", str(tmp_path / "out"), "--max-pixels", "100"])
    assert rc == 2  # every image refused: nothing usable, said in one line


def test_an_exception_while_rendering_one_mask_is_a_problem(tmp_path: Path, monkeypatch):
    cracks = make_coco_export(tmp_path / "cracks", {"train": ["c1", "c2", "c3"]})
    victim = sorted((cracks / "train").glob("*.jpg"))[1]
    render = prepare_module.mask_for_image

    def failing(record, info=None):
        if record.image_path == victim:
            raise RuntimeError("renderer exploded")
        return render(record, info)

    monkeypatch.setattr(prepare_module, "mask_for_image", failing)
    prepared = prepare_datasets(cracks, None, tmp_path / "out")
    assert len(prepared.manifest) == 2 and victim.name not in set(prepared.manifest["file_name"])
    [problem] = prepared.problems
    assert problem.file == str(victim) and "renderer exploded" in problem.reason


def test_non_utf8_file_names_are_problems_and_the_run_goes_on(tmp_path: Path, capsys):
    bad = os.fsdecode(b"bad\xff.jpg")
    cracks = make_yolo_export(tmp_path / "y", {"good.jpg": "0 0.5 0.5 0.5 0.5\n"})
    write_image(cracks / "valid" / "images" / bad, 40, 20)
    (cracks / "valid" / "labels" / os.fsdecode(b"bad\xff.txt")).write_text("0 0.5 0.5 0.2 0.2\n")
    taping = make_coco_export(tmp_path / "taping", {"train": ["t1"]})
    write_image(taping / "train" / os.fsdecode(b"stray\xfe.jpg"), 8, 8)
    out = tmp_path / "out"
    assert main(["--cracks", str(cracks), "--taping", str(taping), "--out", str(out)]) == 0
    df = read_manifest(out / "manifest.csv")
    assert len(df) == 2 and "good.jpg" in set(df["file_name"])
    problems = (out / "problems.csv").read_bytes().decode("utf-8")  # valid UTF-8
    assert "bad\\xff.jpg" in problems and "not valid UTF-8" in problems
    assert "stray\\xfe.jpg" in problems
    assert "bad\\xff.jpg" in capsys.readouterr().out


def test_an_image_changed_in_place_at_the_same_size_is_noticed(tmp_path: Path):
    cracks = make_coco_export(tmp_path / "cracks", {"train": ["c1", "c2"]})
    out = tmp_path / "out"
    assert len(ensure_prepared(cracks, None, out).manifest) == 2
    victim = sorted((cracks / "train").glob("*.jpg"))[0]
    stat = victim.stat()
    victim.write_bytes(b"\0" * stat.st_size)  # corrupted, same size, same time stamp
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    again = ensure_prepared(cracks, None, out)
    assert len(again.manifest) == 1 and again.problems[0].file == str(victim)


# --------------------------------------------------------------------------- modes and temp names


def test_atomic_writes_respect_the_umask(tmp_path: Path, umask_027):
    mask = write_mask_png(tmp_path / "m.png", np.ones((4, 4), np.uint8))
    assert mask.stat().st_mode & 0o777 == 0o640
    with atomic_folder(tmp_path / "ckpt") as tmp:
        (tmp / "w.bin").write_bytes(b"x")
    assert (tmp_path / "ckpt").stat().st_mode & 0o777 == 0o750
    cracks = make_coco_export(tmp_path / "cracks", {"train": ["c1"]})
    prepared = prepare_datasets(cracks, None, tmp_path / "out")
    assert prepared.manifest_path.stat().st_mode & 0o777 == 0o640
    assert Path(prepared.manifest["mask_path"][0]).stat().st_mode & 0o777 == 0o640
    assert prepared.out.stat().st_mode & 0o777 == 0o750


def test_a_file_being_written_is_invisible_to_globs(tmp_path: Path):
    with atomic_path(tmp_path / "x__segment_crack.png") as tmp:
        assert tmp.exists() and tmp.parent == tmp_path
        assert list(tmp_path.glob("*.png")) == [] and list(tmp_path.glob("[!.]*")) == []
    assert [p.name for p in tmp_path.iterdir()] == ["x__segment_crack.png"]


def test_sweep_removes_leftovers_of_dead_writers_only(tmp_path: Path):
    dead, alive = _dead_pid(), os.getpid()
    (tmp_path / f".a.png.tmp-{dead}-0123abcd").write_bytes(b"")
    (tmp_path / f".last.tmp-{dead}-89abcdef").mkdir()
    (tmp_path / f".b.png.tmp-{alive}-0123abcd").write_bytes(b"")  # a write in progress
    keep = [tmp_path / "a.png", tmp_path / ".hidden", tmp_path / ".last.old",
            tmp_path / ".x__segment_crack.png.k2j_8abc.png"]  # not a name this module writes
    for path in keep:
        path.write_bytes(b"1")
    assert sweep_temp_files(tmp_path) == 2
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {p.name for p in keep} | {f".b.png.tmp-{alive}-0123abcd"}


def test_atomic_folder_removes_stale_temporary_folders_of_its_target(tmp_path: Path):
    stale = tmp_path / f".last.tmp-{_dead_pid()}-0123abcd"
    stale.mkdir()
    with atomic_folder(tmp_path / "last") as tmp:
        (tmp / "w").write_bytes(b"1")
    assert not stale.exists() and (tmp_path / "last" / "w").is_file()


# --------------------------------------------------------------------------- reruns and CLI misuse


def test_a_second_run_with_other_inputs_leaves_only_its_own_masks(tmp_path: Path):
    a = make_coco_export(tmp_path / "a", {"train": ["a1", "a2", "a3"]})
    b = make_coco_export(tmp_path / "b", {"train": ["b1", "b2"]})
    out = tmp_path / "out"
    prepare_datasets(a, None, out)
    (out / "notes.txt").write_text("mine")
    prepare_datasets(b, None, out)
    df = read_manifest(out / "manifest.csv")
    on_disk = {str(p) for p in (out / "masks").rglob("*") if p.is_file()}
    assert on_disk == set(df["mask_path"]) and len(df) == 2
    assert (out / "notes.txt").read_text() == "mine"  # what prepare did not write is kept
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


def test_cli_misuse_is_one_line_and_exit_code_2(tmp_path: Path, capsys):
    cracks = make_coco_export(tmp_path / "cracks", {"train": ["c1"]})
    a_file = tmp_path / "taken.txt"
    a_file.write_text("x")
    assert main(["--cracks", str(cracks), "--out", str(a_file)]) == 2
    line = _one_error_line(capsys)
    assert str(a_file) in line and "is a file" in line

    missing = tmp_path / "nope"
    assert main(["--cracks", str(missing), "--out", str(tmp_path / "o")]) == 2
    line = _one_error_line(capsys)
    assert str(missing) in line and "not found" in line and "Roboflow export" in line

    busy = tmp_path / "busy"
    (busy / "photos").mkdir(parents=True)
    assert main(["--cracks", str(cracks), "--out", str(busy)]) == 2
    assert "holds no prepare output" in _one_error_line(capsys)


def test_cli_read_only_output_is_one_line_and_exit_code_2(tmp_path: Path, capsys):
    cracks = make_coco_export(tmp_path / "cracks", {"train": ["c1"]})
    if os.geteuid() == 0:  # permissions do not stop root; a read-only file system does
        if not Path("/sys").is_dir():
            pytest.skip("running as root without /sys: no read-only place to try")
        out = Path("/sys/prepared-out")
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        out = locked / "out"
    assert main(["--cracks", str(cracks), "--out", str(out)]) == 2
    line = _one_error_line(capsys)
    assert "cannot write in" in line and "choose an output folder" in line
