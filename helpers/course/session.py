"""One call that gives a notebook everything it sets up: profile, sources, manifest, output
folder and runtime.

    course = open_course(globals())  # profile, run_name and the settings of the parameters cell
    cfg, manifest = course.cfg, course.manifest

Every setting left at None (or "") is the profile's value, so a notebook's `parameters` cell
defaults to None and states only what it overrides. `Course.record` writes the notebook's
results with the fields every run shares. Data, manifest and runtime are resolved on
first use: a notebook that never touches a model never picks a device.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.course.profiles import Profile, get_profile


@dataclass
class Course:
    """The setup a notebook shares with every other notebook of the same run."""

    cfg: Profile
    out_name: str  # folder under outputs/
    overrides: dict[str, Any] = field(default_factory=dict)  # what differs from the profile

    @cached_property
    def sources(self):
        """The exports this run reads (`helpers.course.sources.DataSources`)."""
        from helpers.course.sources import resolve_sources

        return resolve_sources(self.cfg)

    @cached_property
    def prepared(self):
        """Masks, manifest and problems, prepared once and cached on the inputs."""
        from helpers.course.sources import prepared_data

        return prepared_data(self.cfg)

    @property
    def prepared_manifest(self) -> pd.DataFrame:
        """Every prepared image, all splits."""
        return self.prepared.manifest

    @cached_property
    def manifest(self) -> pd.DataFrame:
        """What the run trains and evaluates on: every training image, val/test capped if the
        profile caps evaluation (`helpers.course.smoke_cap`)."""
        from helpers.course.smoke_cap import evaluation_manifest

        return evaluation_manifest(self.prepared_manifest, self.cfg)

    def evaluation_cap(self) -> dict[str, Any]:
        """What a metrics file records about the evaluation cap."""
        from helpers.course.smoke_cap import evaluation_cap

        return evaluation_cap(self.prepared_manifest, self.manifest, self.cfg)

    @cached_property
    def runtime(self):
        """Device, precision and workers for models (`helpers.core.runtime.Runtime`); the first use
        also starts a new peak-memory window."""
        from helpers.core.runtime import PeakMemory, get_runtime

        rt = get_runtime(self.cfg.device, self.cfg.precision, self.cfg.num_workers)
        self._peak = PeakMemory(rt.device)
        return rt

    def peak_memory_mb(self) -> float:
        """Peak memory since the runtime was first used (GPU memory on CUDA, RSS on CPU), through
        the loop's per-epoch resets."""
        self.runtime  # noqa: B018 - opens the window on first use
        return round(self._peak.mb(), 1)

    @property
    def out_dir(self) -> Path:
        """`outputs/<run>/`."""
        from helpers.core.paths import profile_dir

        return profile_dir(self.out_name)

    @property
    def figures(self) -> Path:
        """`outputs/<run>/figures/`."""
        from helpers.core.paths import figures_dir

        return figures_dir(self.out_name)

    def describe(self) -> str:
        """One line: profile, overrides, data and model."""
        changed = ", ".join(f"{k}={v!r}" for k, v in self.overrides.items()) or "none"
        return (
            f"profile: {self.cfg.name} (overrides: {changed})   data: {self.sources.name}   "
            f"model: {self.cfg.model}   seed: {self.cfg.seed}   output: outputs/{self.out_name}"
        )


def settings_names() -> set[str]:
    """Profile settings a notebook's `parameters` cell may override."""
    return {f.name for f in fields(Profile)} - {"name", "extra"}


def open_course(parameters: Mapping[str, Any] | None = None, /, **settings: Any) -> Course:
    """Set a notebook up from its parameters, and print what it runs on.

        course = open_course(globals())   # in a notebook, right after the parameters cell
        course = open_course(profile="full", epochs=2)

    Reads `profile` (default "demo"), `run_name` (the output folder; default the profile's
    name) and every profile setting (`helpers.course.profiles.Profile`) found in `parameters`
    and `settings` (which win); other names are ignored. None or "" keep the profile's value.
    Prints the run's description, and the runtime where a `device` or `precision` is given:
    notebooks that run a model declare both, the others never pick a device.
    """
    given = {**(parameters or {}), **settings}
    wanted = settings_names()
    chosen = {k: v for k, v in given.items() if k in wanted}
    for key, value in chosen.items():
        if not isinstance(value, (str, int, float, bool, type(None))):
            raise TypeError(f"parameter {key} = {value!r} is not a plain value")
    profile = given.get("profile") or "demo"
    cfg = get_profile(profile, **chosen)
    base = get_profile(profile)
    overrides = {k: getattr(cfg, k) for k in chosen if getattr(cfg, k) != getattr(base, k)}
    course = Course(cfg=cfg, out_name=given.get("run_name") or profile, overrides=overrides)
    if "device" in chosen or "precision" in chosen:
        print(course.runtime)  # the one device/precision policy (helpers.core.runtime)
    print(course.describe())
    return course


def run_exercises(namespace: Mapping[str, Any], profile: str = "demo") -> None:
    """Run a solutions file's `exercise_1`, `exercise_2`, ... in order on `profile` (what
    `python notebooks/solutions/<notebook>.py` does)."""
    course = open_course(profile=profile)
    number = 1
    while callable(namespace.get(f"exercise_{number}")):
        print(f"\n-- exercise_{number}")
        namespace[f"exercise_{number}"](course)
        number += 1
