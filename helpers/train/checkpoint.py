"""Checkpoint folders written atomically: trainable weights, training state, metadata.

A checkpoint folder (e.g. `out_dir/last`) holds

- the weights, once: either what `save_fn(model, folder)` writes (the course's portable files,
  e.g. a LoRA adapter, which `helpers.model.modes.restore_trainable` reads back exactly), or,
  without a `save_fn`, `trainable.safetensors` (every parameter with `requires_grad`, exactly
  as in memory); both serve to resume and to restore the best weights in place;
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
from safetensors.torch import load_file, save_file
from torch import nn

from helpers.core.io import atomic_folder, read_json, write_json

TRAINABLE_FILE = "trainable.safetensors"
STATE_FILE = "training_state.pt"
META_FILE = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint that is incomplete or damaged; the message names the file and what to do."""


RESTART_HINT = (
    "to start over pass resume=False to train() or retrain=True to trained_model() (this "
    "replaces the run); the best weights so far stay usable from best/ meanwhile"
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


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter with `requires_grad`, detached, on the CPU, keyed by its name."""
    return {
        name: param.detach().cpu().contiguous()
        for name, param in model.named_parameters()
        if param.requires_grad
    }


def save_trainable_state(model: nn.Module, folder: str | os.PathLike[str]) -> Path:
    """Write the trainable parameters to `folder/trainable.safetensors`."""
    path = Path(folder) / TRAINABLE_FILE
    save_file(trainable_state(model), str(path))
    return path


def load_trainable_state(model: nn.Module, folder: str | os.PathLike[str]) -> None:
    """Copy `folder/trainable.safetensors` into the model's parameters, in place.

    Raises a clear error if a trainable parameter is missing from the file, or a tensor has
    another shape, which happens when the model was prepared with another mode or LoRA setup.
    """
    path = Path(folder) / TRAINABLE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no trainable weights at {path}")
    try:
        saved = load_file(str(path))
    except Exception as err:  # truncated or overwritten: safetensors says little else
        raise CheckpointError(f"{path} is damaged ({err}); {RESTART_HINT}") from err
    params = dict(model.named_parameters())
    wanted = {name for name, p in params.items() if p.requires_grad}
    missing = sorted(wanted - set(saved))
    unknown = sorted(set(saved) - set(params))
    if missing or unknown:
        raise ValueError(
            f"{path} does not match the model: missing {missing[:5]} "
            f"({len(missing)} in all), unknown {unknown[:5]} ({len(unknown)} in all); "
            "was the model prepared with the same mode and LoRA settings?"
        )
    with torch.no_grad():
        for name, tensor in saved.items():
            param = params[name]
            if param.shape != tensor.shape:
                raise ValueError(
                    f"{path}: {name} has shape {tuple(tensor.shape)}, "
                    f"the model has {tuple(param.shape)}"
                )
            param.copy_(tensor.to(device=param.device, dtype=param.dtype))


def save_checkpoint(
    folder: str | os.PathLike[str],
    model: nn.Module,
    meta: dict[str, Any],
    save_fn: Callable[[nn.Module, Path], Any] | None = None,
    training_state: dict[str, Any] | None = None,
    trainable_file: bool | None = None,
) -> Path:
    """Write a complete checkpoint folder atomically (see the module docstring).

    `trainable_file`: also write `trainable.safetensors`; by default only when there is no
    `save_fn` (whose files then hold the weights).
    """
    folder = Path(folder)
    if trainable_file is None:
        trainable_file = save_fn is None
    with atomic_folder(folder) as tmp:
        if save_fn is not None:
            save_fn(model, tmp)
        if trainable_file:
            save_trainable_state(model, tmp)
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
