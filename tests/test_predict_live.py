"""predict killed with SIGKILL mid-run: no visible partial or temp output survives a rerun, and
the rerun writes exactly what a clean run writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import helpers
from helpers.demo.tiny_model import ensure_tiny_model
from helpers.inference.mask_files import main

pytestmark = pytest.mark.slow

REPO = Path(helpers.__file__).resolve().parents[1]
PROMPTS = ["--prompt", "segment crack", "--prompt", "segment taping area"]


def _images(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
        cv2.imwrite(str(folder / f"wall_{i:03d}.jpg"), img)
    return folder


def _start(images: Path, out: Path, model: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "HF_HUB_OFFLINE": "1",
    }
    cmd = [sys.executable, "-m", "helpers.predict", str(images), *PROMPTS,
           "--model", str(model), "--out", str(out), "--device", "cpu", "--batch-size", "2"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _snapshot(out: Path) -> tuple[dict[str, bytes], dict]:
    masks = {p.name: p.read_bytes() for p in sorted(out.glob("*.png"))}
    summary = json.loads((out / "predict_run.json").read_text())
    return masks, summary


def _wait_for_masks(out: Path, proc: subprocess.Popen, at_least: int, limit: float = 120) -> None:
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < limit:
        if out.is_dir() and len(list(out.glob("*.png"))) >= at_least:
            return
        time.sleep(0.01)


def test_a_rerun_after_sigkill_equals_a_clean_run(tmp_path: Path):
    model = ensure_tiny_model()
    images = _images(tmp_path / "photos", 40)
    clean = tmp_path / "clean"
    assert main([str(images), *PROMPTS, "--model", str(model), "--out", str(clean),
                 "--device", "cpu"]) == 0
    expected_masks, expected_summary = _snapshot(clean)
    assert len(expected_masks) == 80

    for k, at_least in enumerate((0, 1, 50)):
        out = tmp_path / f"killed{k}"
        proc = _start(images, out, model)
        if at_least:
            _wait_for_masks(out, proc, at_least)
        else:
            time.sleep(1.0)  # still loading
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if out.is_dir():  # whatever is visible after the kill is a whole mask
            for png in out.glob("*.png"):
                mask = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
                assert mask is not None and mask.shape == (96, 128), png.name
        assert main([str(images), *PROMPTS, "--model", str(model), "--out", str(out),
                     "--device", "cpu"]) == 0
        leftovers = sorted(p.name for p in out.iterdir() if p.name.startswith("."))
        assert leftovers == [], f"killed after {at_least} masks"
        masks, summary = _snapshot(out)
        assert masks == expected_masks, f"killed after {at_least} masks"
        assert summary["masks_written"] == expected_summary["masks_written"] == 80
        assert summary["skipped"] == expected_summary["skipped"] == []
