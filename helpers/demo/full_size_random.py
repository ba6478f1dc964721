"""The smoke profile's stand-in for the real checkpoint: its architecture with random weights,
saved once in `outputs/models/full-size-random` like a downloaded model, so the full-size path
(shapes, memory, speed) runs without the weights. A `helpers.core.cache` output keyed by
`full_size_random_key` (the seed).
"""

from __future__ import annotations

import os
from pathlib import Path

from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

from helpers.core.cache import build_once
from helpers.core.io import write_json
from helpers.core.paths import SHARED_MODELS_DIR, models_dir
from helpers.demo.tokenizer import build_tiny_tokenizer
from helpers.model.architecture import build_full_size_model, build_processor, saved_model_present

# The real checkpoint's architecture with random weights, saved once like a downloaded model:
# the `smoke` profile runs the full-size path (shapes, memory, speed) without the weights.
FULL_SIZE_RANDOM = "full-size-random"


FULL_SIZE_RANDOM_FILE = "full_size_random.json"


def real_processor_dir() -> Path:
    """Where the real checkpoint's processor files lie beside the repository (may be absent)."""
    return SHARED_MODELS_DIR / "clipseg-rd64-refined-processor"


def full_size_random_processor(processor_dir: str | os.PathLike[str] | None = None):
    """The real processor when its files are present, else the tiny tokenizer's processor.

    Returns `(processor, source)` with source "real" or "tiny-tokenizer".
    """
    folder = Path(processor_dir) if processor_dir is not None else real_processor_dir()
    if (folder / "tokenizer.json").is_file():
        return CLIPSegProcessor.from_pretrained(folder), "real"
    return build_processor(build_tiny_tokenizer()), "tiny-tokenizer"


def _match_token_ids(model: CLIPSegForImageSegmentation, tokenizer) -> None:
    """Point the text tower's end-of-text pooling at the tokenizer's own special tokens."""
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    for key, value in ids.items():
        setattr(model.config.text_config, key, value)
    model.clip.text_model.eos_token_id = tokenizer.eos_token_id


def full_size_random_key(seed: int) -> dict:
    """What the saved full-size random model is built from (the processor is whichever is
    present at the first build and does not count)."""
    return {"model": FULL_SIZE_RANDOM, "seed": seed}


def ensure_full_size_random_model(
    path: str | os.PathLike[str] | None = None,
    processor_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> Path:
    """Build `build_full_size_model(seed)` once, save it with its processor (atomically).

    The processor is the real checkpoint's when `processor_dir` (default: the shared models
    folder) holds it, else the tiny tokenizer's; the folder then loads like any saved model.
    """
    path = Path(path) if path is not None else models_dir() / FULL_SIZE_RANDOM

    def build(folder: Path) -> None:
        processor, source = full_size_random_processor(processor_dir)
        model = build_full_size_model(seed)
        _match_token_ids(model, processor.tokenizer)
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        write_json(folder / FULL_SIZE_RANDOM_FILE, {"seed": seed, "processor": source})

    return build_once(path, full_size_random_key(seed), build, valid=saved_model_present)
