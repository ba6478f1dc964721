"""The demo's tiny CLIPSeg, built, pretrained and saved once (`outputs/models/tiny-clipseg`).

This module sits above `helpers.model` (the architecture, `build_tiny_model`) and
`helpers.train` (the loop that pretrains it, `helpers.train.pretrain`), so neither of those
imports the other. `helpers.model.load.load_model("tiny")` calls `ensure_tiny_model`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

from helpers.io import atomic_folder, write_json
from helpers.model.load import PRETRAIN_FILE, TINY_SEED, TINY_VERSION, build_tiny_model
from helpers.model.pretrain import PretrainSettings
from helpers.paths import models_dir
from helpers.runtime import Runtime

__all__ = ["build_pretrained_tiny_model", "ensure_tiny_model", "tiny_is_complete"]


def build_pretrained_tiny_model(
    seed: int = TINY_SEED,
    settings: PretrainSettings | None = None,
    progress: bool = True,
    runtime: Runtime | None = None,
) -> tuple[CLIPSegForImageSegmentation, CLIPSegProcessor, dict]:
    """The tiny model pretrained on prompted shapes, its processor and the pretraining summary.

    Deterministic for a given seed and settings (on the same machine, device and thread
    count). The model comes back on the CPU.
    """
    from helpers.train.pretrain import pretrain_tiny

    model, processor = build_tiny_model(seed)
    state = torch.random.get_rng_state()
    try:
        summary = pretrain_tiny(model, processor, settings, progress=progress, runtime=runtime)
    finally:
        torch.random.set_rng_state(state)
    summary = {"tiny_version": TINY_VERSION, "seed": seed, **summary}
    return model.eval(), processor, json.loads(json.dumps(summary))


def tiny_is_complete(path: Path, settings: PretrainSettings) -> bool:
    """True if `path` holds a tiny model of this recipe version built with `settings`."""
    marker = path / "tiny_version.txt"
    summary = path / PRETRAIN_FILE
    if not (
        marker.is_file()
        and marker.read_text().strip() == str(TINY_VERSION)
        and summary.is_file()
        and (path / "config.json").is_file()
        and (path / "model.safetensors").is_file()
        and (path / "tokenizer.json").is_file()
    ):
        return False
    try:
        saved = json.loads(summary.read_text(encoding="utf-8")).get("settings")
    except (OSError, ValueError):
        return False
    return saved == settings.to_dict()


def ensure_tiny_model(
    path: str | os.PathLike[str] | None = None,
    pretrain: PretrainSettings | None = None,
    progress: bool = True,
) -> Path:
    """Build, pretrain and save the tiny model once (atomically); return its folder.

    `pretrain` defaults to the shipped settings (about a minute on 2 CPU cores); a folder
    built with other settings or an older recipe is rebuilt.
    """
    path = Path(path) if path is not None else models_dir() / "tiny-clipseg"
    settings = pretrain or PretrainSettings()
    if tiny_is_complete(path, settings):
        return path
    with atomic_folder(path) as tmp:
        model, processor, summary = build_pretrained_tiny_model(
            settings=settings, progress=progress
        )
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        write_json(tmp / PRETRAIN_FILE, summary)
        (tmp / "tiny_version.txt").write_text(f"{TINY_VERSION}\n")
    return path
