"""Checkpoint folders written atomically: trainable weights, training state, metadata.

A checkpoint folder (e.g. `out_dir/last`) holds

- the weights, once, as the mode's portable files (`helpers.model.modes.save_trainable`: a
  LoRA adapter, the decoder or the whole model), which `restore_trainable` reads back
  exactly; they serve to resume, to restore the best weights in place and to load the model;
- `training_state.pt` (only in `last`): optimizer, scheduler, grad scaler, RNG states,
  epoch, best metric, epochs without improvement and the log so far;
- `checkpoint.json`, written last: epoch and metric. A folder without it is incomplete.

The folder is built under a temporary name beside the target and swapped in
(`helpers.core.io.atomic_folder`): in one atomic exchange where the file system allows it, else with
two renames; if the process dies between those, the previous complete folder is still on disk
under `.<name>.old` and `find_checkpoint` puts it back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from helpers.core.io import atomic_folder, read_json, write_json

STATE_FILE = "training_state.pt"
META_FILE = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint that is incomplete or damaged; the message names the file and what to do."""


RESTART_HINT = (
    "to start over remove the run folder (or pass retrain=True to trained_model(), or "
    "--retrain to helpers.train); the best weights so far stay usable from best/ meanwhile"
)


def is_complete(folder: str | os.PathLike[str]) -> bool:
    """True if `folder` is a checkpoint whose metadata file was written."""
    return (Path(folder) / META_FILE).is_file()


def find_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The complete checkpoint at `folder`, recovering an interrupted swap; None if none."""
    folder = Path(folder)
    if is_complete(folder):
        return folder
    old = folder.parent / f".{folder.name}.old"
    if not folder.exists() and is_complete(old):
        os.replace(old, folder)
        return folder
    return None


def save_checkpoint(
    folder: str | os.PathLike[str],
    save_weights: Callable[[Path], Any],
    meta: dict[str, Any],
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write a complete checkpoint folder atomically (see the module docstring).

    `save_weights(tmp)` writes the weights into the folder being built.
    """
    folder = Path(folder)
    with atomic_folder(folder) as tmp:
        save_weights(tmp)
        if training_state is not None:
            torch.save(training_state, tmp / STATE_FILE)
        write_json(tmp / META_FILE, meta)
    return folder


def load_meta(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The `checkpoint.json` of a checkpoint folder."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{folder} is not a complete checkpoint ({META_FILE} missing)")
    return read_json(path)


def load_training_state(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """The training state of a `last` checkpoint (tensors land on the CPU)."""
    path = Path(folder) / STATE_FILE
    if not path.is_file():
        raise CheckpointError(f"{path} is missing, so the run cannot resume; {RESTART_HINT}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, or not a training state at all
        raise CheckpointError(f"{path} is damaged ({err}); {RESTART_HINT}") from err
