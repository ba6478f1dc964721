"""Atomic writes for files that matter (masks, metrics, manifests, checkpoints)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces folder `target` only if the block succeeds.

    The swap is two renames: `target` -> `.<name>.old`, then the new folder -> `target`; a
    crash between them leaves `.<name>.old` for recovery (see `helpers.train.checkpoint`).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".{target.name}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
        old = target.parent / f".{target.name}.old"
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write text atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_json(target: str | os.PathLike[str], data: Any) -> Path:
    """Write JSON atomically (numpy scalars and paths are converted)."""
    return write_text(target, json.dumps(data, indent=2, default=_json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_mask_png(target: str | os.PathLike[str], mask: np.ndarray) -> Path:
    """Write a binary mask as a single-channel PNG with values {0, 255}, atomically."""
    import cv2

    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"mask for {target} must be 2-D, got shape {arr.shape}")
    out = np.where(arr > 0, 255, 0).astype(np.uint8)
    with atomic_path(target) as tmp:
        ok, buf = cv2.imencode(".png", out)
        if not ok:
            raise OSError(f"could not encode mask for {target}")
        tmp.write_bytes(buf.tobytes())
    return Path(target)


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """A single-channel mask PNG as written by `write_mask_png` (uint8, values {0, 255})."""
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if mask is None:
        raise FileNotFoundError(f"cannot read mask {path}")
    if mask.ndim != 2:
        raise ValueError(f"mask {path} has shape {mask.shape}; expected a single channel")
    return mask
