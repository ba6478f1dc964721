"""prepare runs killed or run twice at once: readers never see a manifest listing absent masks,
and a rerun after a kill gives exactly a clean run's output with no leftovers."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from export_builders import make_coco_export
from filelock import FileLock

import helpers
from helpers.data.preparation import OUTPUT_NAMES, main

pytestmark = pytest.mark.slow

REPO = Path(helpers.__file__).resolve().parents[1]


def _start(export: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    cmd = [sys.executable, "-m", "helpers.prepare", "--cracks", str(export), "--out", str(out)]
    return subprocess.Popen(
        [*cmd, *extra], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )


def _export(root: Path, prefix: str, n: int) -> Path:
    return make_coco_export(root, {"train": [f"{prefix}{i:03d}" for i in range(n)]}, size=48)


def _inconsistency(out: Path) -> list[str]:
    """Masks the manifest in `out` lists but that do not exist (checked against a manifest that
    is still in place afterwards, so a swap between reading and checking is not counted)."""
    try:
        text = (out / "manifest.csv").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    df = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)  # never partial
    missing = [p for p in df["mask_path"] if not Path(p).is_file()]
    try:
        still = (out / "manifest.csv").read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return missing if still == text else []


def _snapshot(out: Path) -> tuple[dict[str, bytes], str]:
    masks = {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted((out / "masks").rglob("*"))
        if p.is_file()
    }
    manifest = (out / "manifest.csv").read_text(encoding="utf-8").replace(str(out), "<out>")
    return masks, manifest


def _leftovers(out: Path) -> list[str]:
    """Anything beside or inside `out` that a finished run does not leave."""
    beside = [p.name for p in out.parent.iterdir() if p.name != out.name]
    inside = [p.name for p in out.iterdir() if p.name not in OUTPUT_NAMES]
    hidden = [str(p) for p in out.rglob(".*")]
    return beside + inside + hidden


def test_two_runs_into_one_folder_never_show_a_manifest_of_absent_masks(tmp_path: Path):
    a = _export(tmp_path / "a", "a", 300)
    b = _export(tmp_path / "b", "b", 200)
    out = tmp_path / "runs" / "out"
    procs = [_start(a, out), _start(b, out)]
    bad, samples_while_running = [], 0
    while any(p.poll() is None for p in procs):
        if (out / "manifest.csv").exists():
            samples_while_running += 1
        bad += _inconsistency(out)
        time.sleep(0.01)
    errors = [p.stderr.read() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    bad += _inconsistency(out)
    assert bad == [] and samples_while_running > 0
    df = pd.read_csv(out / "manifest.csv", dtype=str)
    assert len(df) in (300, 200)
    on_disk = {str(p) for p in (out / "masks").rglob("*") if p.is_file()}
    assert on_disk == set(df["mask_path"])  # nothing of the other run is left
    assert _leftovers(out) == []


def test_a_rerun_after_sigkill_equals_a_clean_run(tmp_path: Path):
    export = _export(tmp_path / "a", "s", 300)
    clean = tmp_path / "clean" / "out"
    assert main(["--cracks", str(export), "--out", str(clean)]) == 0
    expected = _snapshot(clean)

    cases = [(delay, False) for delay in (0.5, 1.0, 1.5, 2.0, 3.0)] + [(1.5, True)]
    for k, (delay, rebuild) in enumerate(cases):
        out = tmp_path / f"killed{k}" / "out"
        if rebuild:  # kill a forced rebuild over a complete output
            assert main(["--cracks", str(export), "--out", str(out)]) == 0
        proc = _start(export, out, "--force")
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert _inconsistency(out) == [], f"killed after {delay} s"
        assert main(["--cracks", str(export), "--out", str(out)]) == 0
        assert _leftovers(out) == [], f"killed after {delay} s"
        masks, manifest = _snapshot(out)
        assert manifest.replace(str(out), "<out>") == expected[1], f"killed after {delay} s"
        assert masks == expected[0], f"killed after {delay} s"


def test_a_second_run_waits_for_the_lock_and_says_so(tmp_path: Path):
    export = _export(tmp_path / "a", "w", 5)
    out = tmp_path / "runs" / "out"
    out.parent.mkdir()
    with FileLock(out.parent / ".out.lock"):  # another run holds the folder
        proc = _start(export, out)
        first = proc.stderr.readline()  # blocks until the run reports
        assert "waiting for another run" in first and str(out) in first
        assert proc.poll() is None and not out.exists()
    assert proc.wait() == 0, proc.stderr.read()
    assert len(pd.read_csv(out / "manifest.csv")) == 5
