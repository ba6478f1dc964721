"""Build once, reuse while the inputs are unchanged: one key record per output folder.

Every build-once output of the course (prepared data, the demo exports, the tiny and the
full-size random model, training runs, evaluation stores) is a folder holding a key record,
`cache_key.json`:

    {"key": "<16 hex digits>", "done": true}

A key is what the output is built from: a JSON-able dict or a string (parameters, versions,
digests of input files from `file_digest`/`tree_digest`). `key_hash` turns it into the recorded
digits and is the one place keys are hashed. A folder is current for a key when its record
holds that key's hash and says done.

    build_once(target, key, build)

returns `target` when it is current; otherwise, holding the folder's lock
(`helpers.core.io.folder_lock`), it calls `build(tmp)` on an empty temporary folder beside `target`,
writes the key record into it last, and swaps it in (`helpers.core.io.atomic_folder`). A target
therefore appears complete with its record or not at all, a build that fails leaves the
previous target as it was, and a second run waits for the first and then reuses its output.

Outputs built in place, piece by piece or resumed across interruptions (training runs,
evaluation stores) use the parts: `is_current(target, key)`, `record_key(target, key,
done=False)` when a build starts (the previous key no longer counts), `read_record(target)`
for what an unfinished target was started with, and `record_key(target, key)` once complete.

A folder without a key record (one written in an older format) is never adopted: it is
rebuilt (a training run is kept aside, not deleted).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from helpers.core.io import (
    atomic_folder,
    folder_lock,
    json_default,
    lock_path,
    read_json,
    sweep_temp_files,
    write_json,
)

KEY_FILE = "cache_key.json"
KEY_DIGITS = 16
Key = str | Mapping[str, Any]


@dataclass(frozen=True)
class KeyRecord:
    """What a folder's key record says: the key's hash and whether the build finished."""

    key: str
    done: bool


def key_hash(key: Key) -> str:
    """The hash of a key: sha256 of its canonical JSON (sorted keys), first KEY_DIGITS hex digits.

    Numpy values and paths are taken as their plain values; anything else not JSON-able
    raises `TypeError`.
    """
    text = json.dumps(key, sort_keys=True, separators=(",", ":"), default=json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:KEY_DIGITS]


def file_digest(path: str | os.PathLike[str]) -> str:
    """sha256 of a file's bytes (for a key that must follow a file's content)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tree_files(root: str | os.PathLike[str]) -> list[Path]:
    """Every file under `root`, sorted, following links to folders and files as a reader
    does (a folder reached twice through links, or a link loop, is walked once)."""
    seen: set[tuple[int, int]] = set()
    found: list[Path] = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        stat = os.stat(folder)
        if (stat.st_dev, stat.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((stat.st_dev, stat.st_ino))
        dirs.sort()
        found += [Path(folder, f) for f in files if Path(folder, f).is_file()]
    return sorted(found)


def tree_digest(root: str | os.PathLike[str]) -> str:
    """sha256 over every file under `root`, links followed (`tree_files`): its relative name
    (as bytes, so names that are not UTF-8 count too) and its content, so a file changed in
    place, also inside a linked folder, is noticed."""
    root = Path(root)
    h = hashlib.sha256()
    for path in tree_files(root):
        h.update(os.fsencode(path.relative_to(root).as_posix()) + b"\0")
        h.update(bytes.fromhex(file_digest(path)))
    return h.hexdigest()


def read_record(target: str | os.PathLike[str]) -> KeyRecord | None:
    """The key record of folder `target`, or None when it has none (or an unreadable one)."""
    try:
        data = read_json(Path(target) / KEY_FILE)
        return KeyRecord(str(data["key"]), data["done"] is True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def is_current(target: str | os.PathLike[str], key: Key) -> bool:
    """True if folder `target` was completely built from `key`."""
    record = read_record(target)
    return record is not None and record.done and record.key == key_hash(key)


def record_key(target: str | os.PathLike[str], key: Key, done: bool = True) -> Path:
    """Write the key record of folder `target` (created if missing), atomically.

    Written last, once everything else is in place; `done=False` marks a build in progress
    from `key` (the folder is then not current for any key until recorded as done).
    """
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    write_json(target / KEY_FILE, {"key": key_hash(key), "done": bool(done)})
    return target


def build_once(
    target: str | os.PathLike[str],
    key: Key,
    build: Callable[[Path], object],
    *,
    force: bool = False,
    valid: Callable[[Path], bool] | None = None,
    before_build: Callable[[], None] | None = None,
) -> Path:
    """Folder `target` built from `key` by `build(tmp)`: reused when current, else built now.

    `build` fills the empty folder it is given; it is swapped in with its key record once
    `build` returns. `force` builds even when `target` is current; `valid(target)` is an extra
    check a current folder must pass (e.g. that files it lists still exist). `before_build()`
    runs only when a build is needed, before the lock is taken: the place to refuse a target
    with a clear error. Temporary folders of killed builds are removed, with the lock held.
    """
    target = Path(target)

    def current() -> bool:
        return is_current(target, key) and (valid is None or valid(target))

    if not force and current():
        _tidy_after_killed_build(target)
        return target
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"{target} is a file; expected a folder (or nothing) there")
    if before_build is not None:
        before_build()
    with folder_lock(target):  # a second run waits here, then finds the target current
        if not force and current():
            return target
        _sweep(target)
        with atomic_folder(target) as tmp:
            build(tmp)
            record_key(tmp, key)
    return target


def _sweep(target: Path) -> None:
    """Remove what killed builds left beside and inside `target` (lock held)."""
    sweep_temp_files(target.parent)
    sweep_temp_files(target)


def _tidy_after_killed_build(target: Path) -> None:
    """For a reader that found `target` current: clear a killed build's leftovers and lock
    file, unless another run holds the lock now."""
    if not lock_path(target).exists():  # a finished run removes it; a killed one cannot
        return
    try:
        with folder_lock(target, timeout=0, quiet=True):
            _sweep(target)
    except (TimeoutError, OSError):
        pass
