"""The base model untrained, as mode "none": evaluated under the protocol every mode gets.

`zero_shot_model` returns an object with the attributes notebooks use from
`helpers.course.runs.TrainedModel` (mode, model, processor, info, log, runtime,
`evaluation_key`, `segmenter()`, `describe()`), so a loop over modes can include "none" and
score it through the same `evaluate_model`, `choose_thresholds` and bootstrap as a trained mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.core.cache import key_hash, tree_digest
from helpers.course.profiles import Profile

MODE = "none"


@dataclass
class ZeroShotModel:
    """The profile's base model with nothing trained; what a notebook reports about it."""

    model: Any
    processor: Any
    info: dict[str, Any]
    runtime: Any = None  # the helpers.core.runtime.Runtime the model lives on
    log: pd.DataFrame = field(default_factory=pd.DataFrame)  # no training epochs
    mode: str = MODE
    from_cache: bool = False

    @property
    def evaluation_key(self) -> str:
        """What identifies this model's predictions: the base model (and its build)."""
        return self.info["fingerprint"]

    @property
    def checkpoint(self) -> str:
        """What `helpers.inference.mask_files --model` takes: the base model itself."""
        return self.info["base_model"]

    @property
    def checkpoint_mb(self) -> float:
        """Size of what this mode saves beyond the base model: nothing."""
        return 0.0

    def describe(self) -> str:
        """One line: which model, untrained."""
        return f"{MODE}: the base model {self.info['base_model']} without training (zero-shot)"

    def segmenter(self):
        """A `helpers.inference.Segmenter` for the base model, at the profile's precision."""
        from helpers.inference.segmenter import Segmenter

        precision = self.runtime.precision if self.runtime is not None else "auto"
        return Segmenter(self.model, self.processor, precision=precision)


def base_fingerprint(name: str) -> str:
    """A key for the base model's predictions: its name, its local build, or its files."""
    from helpers.inference.loading import base_model_key

    key: dict[str, Any] = {"mode": MODE, "base_model": str(name)}
    built = base_model_key(name)
    if built is not None:
        key["build"] = built
    elif Path(name).is_dir():
        key["files"] = tree_digest(name)
    return key_hash(key)


def zero_shot_model(profile: Profile) -> ZeroShotModel:
    """The profile's base model, frozen, on the profile's device: mode "none"."""
    from helpers.core.runtime import get_runtime
    from helpers.inference.loading import load_model
    from helpers.model.modes import count_parameters

    rt = get_runtime(profile.device, profile.precision, profile.num_workers)
    model, processor = load_model(profile.model)
    model = model.requires_grad_(False).to(rt.device).eval()
    info = {
        "fingerprint": base_fingerprint(profile.model),
        "completed": True,
        "mode": MODE,
        "base_model": str(profile.model),
        "profile": profile.name,
        "train_config": {"lr": None, "tower_lr": None},  # nothing is trained
        "lora": None,
        "parameters": count_parameters(model),
        "best_epoch": None,
        "best_val_miou": None,
        "stopped_early": False,
        "seconds": 0.0,
        "runtime": rt.describe(),
    }
    return ZeroShotModel(model, processor, info, rt)
