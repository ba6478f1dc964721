"""The profiles: `demo` (generated data, tiny model, CPU), `full` (real data and model, sized
for a GPU) and `smoke` (the full-size path on the real exports, a few steps, capped evaluation).

A profile changes data, model and training length together. Notebooks name a profile in their
`parameters` cell and may override single values; everything else comes from here.

`smoke` proves that the full profile's code path runs at full size: the real checkpoint's
architecture with random weights (`"full-size-random"`, built locally), the real exports beside
the repository, one epoch of a few steps and a few evaluated images per split and class. Its
scores mean nothing; it runs on CPU in minutes and unchanged on a GPU.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from helpers.core.paths import SHARED_ROBOFLOW_DIR

HUB_MODEL_ID = "CIDAS/clipseg-rd64-refined"


@dataclass(frozen=True)
class Profile:
    """Every setting that differs between a laptop demo and a real GPU run."""

    name: str
    model: str  # "tiny" or "full-size-random" (built locally), a Hub id, or a saved folder
    cracks_export: str  # "" = the generated demo export
    taping_export: str  # "" = the generated demo export
    seed: int = 42
    image_size: int = 352
    batch_size: int = 8
    epochs: int = 6
    lr: float = 5e-4
    tower_lr: float = 1e-5
    full_lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    patience: int = 4
    negative_rate: float = 0.1
    bce_weight: float = 1.0  # loss = bce_weight * BCE + dice_weight * (1 - soft Dice)
    dice_weight: float = 1.0
    bce_pos_weight: float = 1.0  # weight of foreground pixels in the BCE loss
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    max_steps_per_epoch: int | None = None  # cap on batches per epoch; None: the whole epoch
    device: str = "auto"  # "auto" (cuda, then mps, then cpu), "cuda", "mps" or "cpu"
    precision: str = "auto"  # "auto" (bf16 or fp16 autocast on CUDA, fp32 elsewhere) or one of them
    num_workers: int | None = None  # DataLoader workers; None: the runtime's choice for the device
    eval_batch_size: int | None = None  # images per evaluation batch; None: batch_size
    eval_max_images: int | None = None  # cap on evaluated images per split and class; None: all
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict, for metrics files and the report."""
        return asdict(self)


PROFILES: dict[str, Profile] = {
    "demo": Profile(
        name="demo",
        model="tiny",
        cracks_export="",
        taping_export="",
        batch_size=8,
        epochs=8,
        lr=5e-3,
        tower_lr=5e-4,
        full_lr=1e-3,
        patience=8,
        negative_rate=1.0,  # a negative pair per image per epoch, on top: teaches the switch
        bce_weight=3.0,  # Dice barely penalises false positives on empty targets; BCE does
    ),
    "full": Profile(
        name="full",
        model=HUB_MODEL_ID,
        cracks_export="data/roboflow/cracks",
        taping_export="data/roboflow/drywall-join",
        batch_size=32,  # sized for one GPU (bf16: LoRA peaks near 6 GB, full near 9 GB)
        eval_batch_size=32,
        epochs=20,
        lr=5e-4,
        tower_lr=1e-5,
        full_lr=1e-4,
    ),
    "smoke": Profile(
        name="smoke",
        model="full-size-random",
        cracks_export=str(SHARED_ROBOFLOW_DIR / "cracks.v1i.coco"),
        taping_export=str(SHARED_ROBOFLOW_DIR / "drywall-join-detect.v2i.coco"),
        batch_size=2,
        eval_batch_size=4,
        epochs=1,
        max_steps_per_epoch=2,  # a few optimiser steps: the path runs, nothing is learned
        patience=1,
        eval_max_images=2,  # per split (val, test) and class
    ),
}


# The demo's path in a few minutes: the demo's settings with a quarter of one epoch and
# evaluation capped. It checks an install or a change (the test suite runs notebooks 04-07 and
# their solutions on it); its scores mean little.
PROFILES["quick"] = replace(
    PROFILES["demo"], name="quick", epochs=1, patience=1,
    max_steps_per_epoch=12,  # a quarter of the demo's epoch: every step of the path, briefly
    eval_max_images=4,  # per split (val, test) and class
)


def get_profile(name: str, **overrides: Any) -> Profile:
    """The named profile with `overrides` applied; empty-string or None overrides are ignored."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    base = PROFILES[name]
    known = set(Profile.__dataclass_fields__)
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown profile settings {unknown}; known: {sorted(known)}")
    kept = {k: v for k, v in overrides.items() if v is not None and v != ""}
    return replace(base, **kept)
