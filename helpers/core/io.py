"""Atomic writes for files that matter (masks, metrics, manifests, checkpoints).

A file or folder is first written under a hidden temporary name beside its target,
`.<name>.tmp-<pid>-<random>` (no file type suffix, so `*.png` or `*.csv` globs never see
it), then renamed over the target. Files get the mode `open()` would give them (0666 less
the umask), folders 0777 less the umask. A process killed mid-write leaves only such
temporary names behind; `sweep_temp_files(folder)` removes those whose writer is gone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock, Timeout

# `.<name>.tmp-<pid>-<hex>`: what this module writes before a rename.
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}$")


def temp_name(target: Path) -> Path:
    """A fresh hidden temporary path beside `target`, marked with this process id."""
    return target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _writer_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return False
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def is_stale_temp(path: Path) -> bool:
    """True for a temporary name of this module whose writer has gone (safe to remove)."""
    match = _TEMP_NAME.match(path.name)
    return bool(match) and not _writer_alive(int(match["pid"]))


def sweep_temp_files(folder: str | os.PathLike[str]) -> int:
    """Remove leftover temporary files and folders of this module directly in `folder`.

    Only names this module writes (`.<name>.tmp-<pid>-<hex>`) whose process no longer runs
    are removed; a write in progress by a live process is left alone. Returns how many
    entries were removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for entry in os.scandir(folder):
        path = Path(entry.path)
        if entry.name.startswith(".") and is_stale_temp(path):
            try:
                _remove(path)
            except OSError:  # e.g. a read-only folder: leave it, never fail a run for it
                continue
            removed += 1
    return removed


@contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside `target`; it replaces `target` only if the block succeeds.

    The temporary file exists (empty, mode 0666 less the umask) when the block starts.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = temp_name(target)
    os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextmanager
def atomic_folder(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield an empty temporary folder that replaces folder `target` only if the block succeeds.

    The swap is one atomic exchange where the file system allows it (`target` is never
    missing; the old folder, left under the temporary name, is removed). Elsewhere it is two
    renames: `target` -> `.<name>.old`, then the new folder -> `target`; a crash between them
    leaves `.<name>.old` for recovery (see `helpers.train.checkpoint`). Temporary folders of
    earlier, killed writes of the same target are removed first.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    for leftover in target.parent.glob(f".{glob_escape(target.name)}.tmp-*"):
        if is_stale_temp(leftover):
            _remove(leftover)
    tmp = temp_name(target)
    tmp.mkdir()
    try:
        yield tmp
        old = target.parent / f".{target.name}.old"
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        if target.is_dir() and not target.is_symlink() and exchange_paths(tmp, target):
            return  # `tmp` now holds the old folder: removed below
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def glob_escape(name: str) -> str:
    """`name` with glob metacharacters escaped, for use in a `Path.glob` pattern."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def lock_path(out: str | os.PathLike[str]) -> Path:
    """The lock file of output folder `out`: `.<name>.lock` beside it."""
    out = Path(out)
    return out.parent / f".{out.name}.lock"


@contextmanager
def folder_lock(
    out: str | os.PathLike[str], timeout: float | None = None, quiet: bool = False
) -> Iterator[None]:
    """Hold the lock of output folder `out` (`.<name>.lock` beside it while held); say so on
    stderr when waiting (unless `quiet`).

    For build-once outputs that are rebuilt beside themselves and swapped in: a second run
    waits instead of building the same folder at once. `timeout` seconds (None: as long as
    it takes) before a `TimeoutError`.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(lock_path(out))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if not quiet:
            print(
                f"waiting for another run that is writing {out} (lock {lock.lock_file})",
                file=sys.stderr,
                flush=True,
            )
        try:
            lock.acquire(timeout=-1 if timeout is None else timeout)
        except Timeout as exc:
            raise TimeoutError(
                f"{out} is still being written by another run after {timeout} s; try again later"
            ) from exc
    try:
        yield
    finally:
        # The lock file goes while still held, so no empty `.lock` files pile up: a run that
        # opened it meanwhile finds it unlinked after locking and retries on a fresh file
        # (filelock >= 4.3). A soft lock (no flock on this file system) is its own file.
        if not getattr(getattr(lock, "_context", None), "soft_fallback", False):
            Path(lock.lock_file).unlink(missing_ok=True)
        lock.release()


def exchange_paths(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap two existing paths in one atomic step (Linux `renameat2(RENAME_EXCHANGE)`).

    Returns False, changing nothing, where the system or file system cannot do it.
    """
    import ctypes

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError, TypeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    errno = ctypes.get_errno()
    if errno in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: not supported here
        return False
    raise OSError(errno, os.strerror(errno), os.fspath(a))


def write_text(target: str | os.PathLike[str], text: str) -> Path:
    """Write text atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def json_default(obj: Any) -> Any:
    """`json.dumps` default: numpy scalars and arrays as plain values, paths as text."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_clean(data: Any) -> Any:
    """`data` with every NaN or infinite number (float, numpy scalar or array element, pandas
    missing value) replaced by None, and numpy values, tuples and paths as plain JSON values."""
    if isinstance(data, dict):
        return {k: json_clean(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [json_clean(v) for v in data]
    if isinstance(data, np.ndarray):
        return json_clean(data.tolist())
    if isinstance(data, np.generic):
        data = data.item()
    if isinstance(data, float):
        return data if np.isfinite(data) else None
    if data is not None and not isinstance(data, (str, int, bool, Path)) and _is_missing(data):
        return None
    return str(data) if isinstance(data, Path) else data


def _is_missing(value: Any) -> bool:
    """True for pandas' NA and NaT (without importing pandas here)."""
    try:
        return bool(value != value)  # the missing values are unequal to themselves
    except (TypeError, ValueError):
        return type(value).__name__ in {"NAType", "NaTType"}


def write_json(target: str | os.PathLike[str], data: Any) -> Path:
    """Write strict JSON atomically: NaN and infinities become null (`json_clean`), so no
    file holds a value other JSON readers reject; numpy values and paths are converted."""
    text = json.dumps(json_clean(data), indent=2, default=json_default, allow_nan=False)
    return write_text(target, text + "\n")


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
