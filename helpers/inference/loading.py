"""Models by name: a Hub id, a `save_pretrained` folder, a training checkpoint, "tiny" or
"full-size-random".

    model, processor = load_model("tiny")                  # the demo's model, built once
    model, processor = load_model("CIDAS/clipseg-rd64-refined")   # needs internet once

- "tiny": the demo's small CLIPSeg, pretrained on prompted shapes and saved once
  (`helpers.demo.tiny_model`);
- "full-size-random": the real checkpoint's architecture with random weights, saved once
  (`helpers.demo.full_size_random`; the smoke profile proves the full-size path with it).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

from helpers.core.cache import read_record
from helpers.core.paths import PROJECT_ROOT
from helpers.demo.full_size_random import (
    FULL_SIZE_RANDOM,
    ensure_full_size_random_model,
    full_size_random_processor,
)
from helpers.demo.tiny_model import TINY, ensure_tiny_model
from helpers.demo.tokenizer import build_tiny_tokenizer
from helpers.model.architecture import DEFAULT_MODEL, build_processor
from helpers.model.modes import MODE_FILE, load_trainable, saved_mode

__all__ = ["base_model_key", "load_for_inference", "load_model", "load_processor"]


def base_model_key(name: str | os.PathLike[str]) -> str | None:
    """The recorded build key of a base model built here ("tiny", "full-size-random"), so a
    training run on it follows a rebuild; None for a Hub id or a folder of one's own."""
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
    """Only the processor of a model (Hub id, folder or "tiny"); cheap for the tiny model.

    The tiny model's processor is built from its own tokenizer, as the saved model's was, so
    asking for it never builds (and pretrains) the model: a notebook that only tokenises
    stays quiet.
    """
    if str(name) == FULL_SIZE_RANDOM:  # no need to build the 600 MB model for its processor
        return full_size_random_processor()[0]
    if str(name) == TINY:
        return build_processor(build_tiny_tokenizer())
    folder: str | Path = name
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
        if base and (PROJECT_ROOT / base).is_dir():  # named relative to the repository
            base = str(PROJECT_ROOT / base)
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
