"""The demo data cache: built once under a lock, leftovers of a killed build are removed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.demo.exports import ensure_demo_data

SMALL = {"image_size": 64, "n_crack_sources": 4, "n_taping_sources": 4}


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    return int(done.stdout)


def test_demo_folder_is_readable_by_others_and_leaves_no_lock(tmp_path: Path):
    old = os.umask(0o022)
    try:
        paths = ensure_demo_data(tmp_path / "demo", **SMALL)
    finally:
        os.umask(old)
    assert paths.root.stat().st_mode & 0o777 == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_leftovers_of_a_killed_build_are_removed_when_the_data_is_current(tmp_path: Path):
    out = tmp_path / "demo"
    first = ensure_demo_data(out, **SMALL)
    # what a build killed after the folder was current again leaves beside it
    half_built = tmp_path / f".demo.tmp-{_dead_pid()}-0123abcd"
    half_built.mkdir()
    (half_built / "half.jpg").write_bytes(b"x")
    (tmp_path / ".demo.lock").write_bytes(b"")
    assert ensure_demo_data(out, **SMALL) == first
    assert [p.name for p in tmp_path.iterdir()] == ["demo"]


def test_the_demo_data_cli_refuses_a_bad_seed_in_one_line(tmp_path, capsys):
    from helpers.demo.exports import main

    assert main(["--out", str(tmp_path / "demo"), "--seed", "-1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "-1" in err and "\n" not in err
    assert not (tmp_path / "demo").exists()
