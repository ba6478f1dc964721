"""Shared fixtures: real-data location, offline mode, a headless plotting backend."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

from helpers.core.paths import SHARED_MODELS_DIR, SHARED_ROBOFLOW_DIR  # noqa: E402


@pytest.fixture(scope="session")
def shared_roboflow() -> Path:
    """The real Roboflow exports beside the repository, or a skip saying why."""
    if not SHARED_ROBOFLOW_DIR.is_dir():
        pytest.skip(f"real Roboflow exports not found at {SHARED_ROBOFLOW_DIR}")
    return SHARED_ROBOFLOW_DIR


@pytest.fixture(scope="session")
def real_processor_dir() -> Path:
    """The real CLIPSeg processor files beside the repository, or a skip saying why."""
    path = SHARED_MODELS_DIR / "clipseg-rd64-refined-processor"
    if not path.is_dir():
        pytest.skip(f"real processor files not found at {path}")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    """A random-weight tiny CLIPSeg saved like a real checkpoint (model + processor)."""
    from helpers.demo.tiny_model import build_tiny_model

    folder = tmp_path_factory.mktemp("model")
    model, processor = build_tiny_model()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def segmenter(model_dir):
    """A `Segmenter` on that saved model, on the CPU."""
    from helpers.inference.mask_files import Segmenter

    return Segmenter.from_pretrained(str(model_dir), device="cpu")


# Test files that take longest run first, so that under pytest-xdist (`make test` runs two
# workers, one file per worker at a time) the longest file does not start last and run alone.
FIRST = ("test_smoke.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Move the items of `FIRST` to the front, keeping every other order as collected."""
    items.sort(key=lambda item: item.path.name not in FIRST)

