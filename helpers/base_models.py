"""Base models by name: a Hub id, a `save_pretrained` folder, "tiny" or "full-size-random".

    model, processor = load_model("tiny")                  # the demo's model, built once
    model, processor = load_model("CIDAS/clipseg-rd64-refined")   # needs internet once

- "tiny": a small CLIPSeg (`helpers.model.load.build_tiny_model`) whose random weights are
  pretrained for about a minute on generic prompted shapes by the course's own training loop
  (`helpers.train.pretrain`), standing in for the real checkpoint's pretraining; saved once
  in `outputs/models/tiny-clipseg` and loaded with `from_pretrained` like the real one.
- "full-size-random": the real checkpoint's architecture with random weights, saved once in
  `outputs/models/full-size-random` (the smoke run proves the full-size path with it).

Both folders are `helpers.cache` outputs: their `cache_key.json` holds the hash of the recipe
(`tiny_key`: TINY_VERSION, seed and pretraining settings; `full_size_random_key`: the seed), so
a folder built by another recipe is rebuilt. Folders from before that record (with
`tiny_version.txt`) are rebuilt once.

This module sits above `helpers.model` (architectures) and `helpers.train` (the loop that
pretrains the tiny model), so neither of those imports the other.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

from helpers.cache import build_once, is_current
from helpers.io import write_json
from helpers.model.load import (
    DEFAULT_MODEL,
    PRETRAIN_FILE,
    TINY,
    TINY_SEED,
    TINY_VERSION,
    build_full_size_model,
    build_processor,
    build_tiny_model,
)
from helpers.model.pretrain import PretrainSettings
from helpers.model.tokenizer import build_tiny_tokenizer
from helpers.paths import models_dir
from helpers.runtime import Runtime

__all__ = [
    "build_pretrained_tiny_model",
    "ensure_full_size_random_model",
    "ensure_tiny_model",
    "full_size_random_key",
    "load_for_inference",
    "load_model",
    "load_processor",
    "tiny_is_complete",
    "tiny_key",
]


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


def tiny_key(settings: PretrainSettings, seed: int = TINY_SEED) -> dict:
    """What a saved tiny model is built from: the recipe version, seed and pretraining."""
    return {"tiny_version": TINY_VERSION, "seed": seed, "pretrain": settings.to_dict()}


def tiny_is_complete(path: Path, settings: PretrainSettings) -> bool:
    """True if `path` holds a tiny model of this recipe version built with `settings`."""
    return is_current(path, tiny_key(settings))


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

    def build(folder: Path) -> None:
        model, processor, summary = build_pretrained_tiny_model(
            settings=settings, progress=progress
        )
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        write_json(folder / PRETRAIN_FILE, summary)

    return build_once(path, tiny_key(settings), build, valid=_saved_model_present)


# The real checkpoint's architecture with random weights, saved once like a downloaded model:
# the `smoke` profile runs the full-size path (shapes, memory, speed) without the weights.
FULL_SIZE_RANDOM = "full-size-random"
FULL_SIZE_RANDOM_FILE = "full_size_random.json"
SAVED_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def real_processor_dir() -> Path:
    """Where the real checkpoint's processor files lie beside the repository (may be absent)."""
    from helpers.paths import SHARED_MODELS_DIR

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

    return build_once(path, full_size_random_key(seed), build, valid=_saved_model_present)


def _saved_model_present(folder: Path) -> bool:
    """A built model folder still holds what loading it needs."""
    return all((folder / name).is_file() for name in SAVED_MODEL_FILES)


def base_model_key(name: str | os.PathLike[str]) -> str | None:
    """The recorded build key of a base model built here ("tiny", "full-size-random"), so a
    training run on it follows a rebuild; None for a Hub id or a folder of one's own."""
    from helpers.cache import read_record

    if str(name) == TINY:
        folder = ensure_tiny_model()
    elif str(name) == FULL_SIZE_RANDOM:
        folder = ensure_full_size_random_model()
    else:
        return None
    record = read_record(folder)
    return record.key if record is not None else None


def _is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def load_model(
    name: str | os.PathLike[str] = DEFAULT_MODEL,
) -> tuple[CLIPSegForImageSegmentation, CLIPSegProcessor]:
    """Load `(model, processor)` from a Hub id, a saved folder, `"tiny"` or `"full-size-random"`.

    The model is returned in eval mode; training code switches it with `model.train()`.
    """
    if str(name) == TINY:
        folder: str | Path = ensure_tiny_model()
    elif str(name) == FULL_SIZE_RANDOM:
        folder = ensure_full_size_random_model()
    else:
        local = Path(name).expanduser()
        if local.exists():
            if not (local / "config.json").is_file():
                raise FileNotFoundError(
                    f"{local} is not a saved CLIPSeg folder: config.json is missing "
                    "(expected a folder written by save_pretrained of the model and processor)"
                )
            folder = local
        elif local.is_absolute() or str(name).startswith((".", "~")) or str(name).count("/") > 1:
            raise FileNotFoundError(f"model folder {name} does not exist")
        else:
            folder = str(name)
    try:
        model = CLIPSegForImageSegmentation.from_pretrained(folder)
        processor = CLIPSegProcessor.from_pretrained(folder)
    except OSError as err:
        if isinstance(folder, Path):
            raise OSError(
                f"could not load CLIPSeg model and processor from {folder}: {err}"
            ) from err
        hint = (
            "HF_HUB_OFFLINE is set, so nothing can be downloaded"
            if _is_offline()
            else "the Hugging Face Hub could not be reached or the id is wrong"
        )
        raise OSError(
            f"could not load '{name}' ({hint}). On a machine with internet access run "
            f"load_model('{name}') once to fill the Hugging Face cache (or save it with "
            "save_pretrained to a folder and pass that folder); without internet use "
            "load_model('tiny') for a small locally pretrained model."
        ) from err
    model.eval()
    return model, processor


def load_processor(name: str | os.PathLike[str] = DEFAULT_MODEL) -> CLIPSegProcessor:
    """Only the processor of a model (Hub id, folder or "tiny"); cheap for the tiny model."""
    if str(name) == FULL_SIZE_RANDOM:  # no need to build the 600 MB model for its processor
        return full_size_random_processor()[0]
    folder: str | Path = ensure_tiny_model() if str(name) == TINY else name
    try:
        return CLIPSegProcessor.from_pretrained(folder)
    except OSError as err:
        raise OSError(
            f"could not load the processor of '{name}': {err}. Without internet use 'tiny' or "
            "a folder written by save_pretrained."
        ) from err


def load_for_inference(
    name: str | os.PathLike[str], base: str | None = None
) -> tuple[torch.nn.Module, CLIPSegProcessor]:
    """A model ready to predict, from a Hub id, "tiny", a saved folder, or a training checkpoint.

    A checkpoint written during training (`trainable.json` inside: adapters, a decoder or a
    whole model) is put on its base model: `base` when given, else the base recorded in the
    run's `run.json` one folder up. Its processor is read from the checkpoint when saved there.
    """
    import json

    from helpers.model.modes import MODE_FILE, load_trainable, saved_mode

    folder = Path(name)
    if not (folder / MODE_FILE).is_file():
        return load_model(name)
    mode = saved_mode(folder)
    if base is None:
        run_file = folder.parent / "run.json"
        if run_file.is_file():
            base = json.loads(run_file.read_text(encoding="utf-8")).get("base_model")
    if base is None and mode == "lora":
        adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        base = adapter.get("base_model_name_or_path")
    if base is None:
        raise ValueError(
            f"{folder} holds a '{mode}' checkpoint but its base model is not recorded; "
            "pass the base model (e.g. --base CIDAS/clipseg-rd64-refined or --base tiny)"
        )
    model, processor = load_model(base)
    if (folder / "preprocessor_config.json").is_file() or (
        folder / "processor_config.json"
    ).is_file():
        processor = CLIPSegProcessor.from_pretrained(folder)
    return load_trainable(model, mode, folder), processor
