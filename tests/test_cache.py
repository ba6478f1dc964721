"""The build-once helper: reuse while the key matches, atomic rebuilds, the key record last."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from helpers.core.cache import (
    KEY_FILE,
    build_once,
    is_current,
    key_hash,
    read_record,
    record_key,
    tree_digest,
)


class Builder:
    """A build function that writes `value.txt` and counts its calls."""

    def __init__(self, value: str = "v1") -> None:
        self.value = value
        self.calls = 0

    def __call__(self, folder: Path) -> None:
        self.calls += 1
        assert list(folder.iterdir()) == []  # an empty folder, never the target itself
        (folder / "value.txt").write_text(self.value)


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_key_hash_is_canonical_and_follows_every_value() -> None:
    key = {"seed": 1, "sizes": [64, 32], "path": Path("/data/x"), "n": np.int64(3)}
    same = {"n": 3, "path": "/data/x", "sizes": [64, 32], "seed": 1}
    assert key_hash(key) == key_hash(same)  # order of keys, numpy and paths do not matter
    assert len(key_hash(key)) == 16 and int(key_hash(key), 16) >= 0
    assert key_hash(key) != key_hash({**same, "seed": 2})
    assert key_hash(key) != key_hash({**same, "sizes": [32, 64]})
    assert key_hash("abc") != key_hash("abd") and key_hash("abc") == key_hash("abc")
    with pytest.raises(TypeError):
        key_hash({"x": object()})


def test_tree_digest_follows_content_and_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.bin").write_bytes(b"1")
    first = tree_digest(tmp_path)
    (tmp_path / "a" / "x.bin").write_bytes(b"2")
    assert tree_digest(tmp_path) != first
    (tmp_path / "a" / "x.bin").write_bytes(b"1")
    assert tree_digest(tmp_path) == first
    (tmp_path / "a" / "x.bin").rename(tmp_path / "a" / "y.bin")
    assert tree_digest(tmp_path) != first


def test_a_current_target_is_reused_without_building(tmp_path: Path) -> None:
    target, build = tmp_path / "out", Builder()
    assert build_once(target, {"v": 1}, build) == target
    before = (target / "value.txt").stat().st_mtime_ns
    assert build_once(target, {"v": 1}, Builder("other")) == target
    assert build.calls == 1 and (target / "value.txt").read_text() == "v1"
    assert (target / "value.txt").stat().st_mtime_ns == before
    assert is_current(target, {"v": 1}) and not is_current(target, {"v": 2})
    assert read_record(target).key == key_hash({"v": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock, no temp folder


def test_another_key_rebuilds_and_replaces_the_whole_folder(tmp_path: Path) -> None:
    target = tmp_path / "out"
    build_once(target, "k1", Builder("v1"))
    (target / "stale.txt").write_text("from the first build")
    second = Builder("v2")
    build_once(target, "k2", second)
    assert second.calls == 1 and (target / "value.txt").read_text() == "v2"
    assert not (target / "stale.txt").exists()
    assert is_current(target, "k2") and not is_current(target, "k1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_force_and_a_failed_validity_check_rebuild(tmp_path: Path) -> None:
    target, build = tmp_path / "out", Builder()
    build_once(target, "k", build)
    build_once(target, "k", build, force=True)
    assert build.calls == 2
    build_once(target, "k", build, valid=lambda folder: (folder / "value.txt").is_file())
    assert build.calls == 2
    build_once(target, "k", build, valid=lambda folder: (folder / "missing").is_file())
    assert build.calls == 3


def test_a_build_that_raises_leaves_the_previous_target_and_nothing_else(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out"
    build_once(target, "k1", Builder("v1"))

    def fails(folder: Path) -> None:
        (folder / "value.txt").write_text("half")
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        build_once(target, "k2", fails)
    assert (target / "value.txt").read_text() == "v1"
    assert is_current(target, "k1") and not is_current(target, "k2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temp folder, no lock


def test_the_key_record_is_written_last(tmp_path: Path) -> None:
    target = tmp_path / "out"
    seen: list[object] = []

    def build(folder: Path) -> None:
        (folder / "value.txt").write_text("v")
        seen.append(read_record(folder))  # nothing recorded while the build runs
        seen.append(target.exists())  # nor is the target there before the swap

    build_once(target, "k", build)
    assert seen == [None, False] and is_current(target, "k")

    (target / KEY_FILE).unlink()  # a target without its key record is not current
    again = Builder("rebuilt")
    build_once(target, "k", again)
    assert again.calls == 1 and (target / "value.txt").read_text() == "rebuilt"


def test_a_started_or_garbled_record_is_not_current(tmp_path: Path) -> None:
    target = tmp_path / "run"
    record_key(target, {"lr": 1e-3}, done=False)
    record = read_record(target)
    assert record is not None and record.key == key_hash({"lr": 1e-3}) and not record.done
    assert not is_current(target, {"lr": 1e-3})
    record_key(target, {"lr": 1e-3})
    assert is_current(target, {"lr": 1e-3})
    assert json.loads((target / KEY_FILE).read_text()) == {
        "key": key_hash({"lr": 1e-3}),
        "done": True,
    }
    (target / KEY_FILE).write_text("{not json")
    assert read_record(target) is None and not is_current(target, {"lr": 1e-3})
    assert read_record(tmp_path / "absent") is None


def test_a_second_run_waits_for_the_first_and_reuses_its_output(tmp_path: Path) -> None:
    target = tmp_path / "out"
    started, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def slow(folder: Path) -> None:
        calls.append("build")
        started.set()
        assert release.wait(30)
        (folder / "value.txt").write_text("v")

    first = threading.Thread(target=build_once, args=(target, "k", slow))
    first.start()
    assert started.wait(30)
    results: list[Path] = []
    second = threading.Thread(target=lambda: results.append(build_once(target, "k", slow)))
    second.start()
    time.sleep(0.3)
    assert results == []  # waiting for the lock
    release.set()
    first.join(30)
    second.join(30)
    assert results == [target] and calls == ["build"]


def test_leftovers_of_a_killed_build_go_when_the_target_is_current(tmp_path: Path) -> None:
    target = tmp_path / "out"
    build_once(target, "k", Builder())
    (tmp_path / f".out.tmp-{_dead_pid()}-0123abcd").mkdir()  # a killed build's folder
    (tmp_path / ".out.lock").write_bytes(b"")  # and its lock file
    build_once(target, "k", Builder())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_refusals_come_before_any_write(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NotADirectoryError, match="is a file"):
        build_once(blocker, "k", Builder())

    def refuse() -> None:
        raise FileExistsError("not mine")

    with pytest.raises(FileExistsError, match="not mine"):
        build_once(tmp_path / "out", "k", Builder(), before_build=refuse)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_a_target_being_replaced_is_never_missing(tmp_path: Path) -> None:
    from helpers.core.io import exchange_paths

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    if not exchange_paths(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this file system cannot exchange two paths in one step")
    target = tmp_path / "out"
    build_once(target, 0, Builder())
    missing: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if not (target / "value.txt").is_file():
                missing.append(1)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for k in range(1, 30):
            build_once(target, k, Builder(str(k)))
    finally:
        done.set()
        watcher.join(30)
    assert (target / "value.txt").read_text() == "29" and missing == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "b", "out"]
