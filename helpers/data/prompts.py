"""Text prompts per dataset, prompt slugs for file names, deterministic prompt sampling."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np

PROMPTS: dict[str, list[str]] = {
    "cracks": [
        "segment crack",
        "segment wall crack",
        "segment surface crack",
        "segment drywall crack",
        "segment fracture",
    ],
    "taping": [
        "segment taping area",
        "segment joint tape",
        "segment drywall seam",
        "segment drywall joint",
        "segment tape line",
    ],
}

DEFAULT_PROMPT: dict[str, str] = {"cracks": "segment crack", "taping": "segment taping area"}


def class_images(cls: str) -> str:
    """ "crack images", "taping images": a class's images in a sentence."""
    return {"cracks": "crack images"}.get(cls, f"{cls} images")

# Separate random streams per purpose so that e.g. turning on negatives leaves prompts unchanged.
STREAM_PROMPT = 0
STREAM_NEGATIVE = 1
STREAM_AUGMENT = 2
STREAM_NEGATIVE_IMAGES = 3  # which images get a negative pair in an epoch


def item_rng(seed: int, epoch: int, index: int, stream: int = STREAM_PROMPT) -> np.random.Generator:
    """A random generator fixed by (seed, epoch, index, stream): same inputs, same draws."""
    keys = [int(seed), int(epoch), int(index), int(stream)]
    if any(k < 0 for k in keys):
        raise ValueError(f"seed, epoch, index and stream must be >= 0, got {keys}")
    return np.random.default_rng(keys)


def _normalise(prompt: str) -> str:
    return " ".join(prompt.split()).lower()


def class_of_prompt(prompt: str, prompts: Mapping[str, Sequence[str]] = PROMPTS) -> str:
    """The dataset a prompt belongs to ("cracks" or "taping"); case and spacing are ignored."""
    wanted = _normalise(prompt)
    for name, options in prompts.items():
        if wanted in (_normalise(p) for p in options):
            return name
    known = {name: list(options) for name, options in prompts.items()}
    raise ValueError(f"unknown prompt {prompt!r}; known prompts: {known}")


def known_class(prompt: str, prompts: Mapping[str, Sequence[str]] = PROMPTS) -> str | None:
    """`class_of_prompt`, or None for a prompt of no class (a user may type any prompt)."""
    try:
        return class_of_prompt(prompt, prompts)
    except ValueError:
        return None


def prompt_slug(prompt: str) -> str:
    """File-name-safe form of a prompt: "segment crack" -> "segment_crack".

    Leading/trailing spaces are stripped, inner whitespace collapsed to one underscore,
    letters lower-cased, and characters other than a-z, 0-9, "_" and "-" removed.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    slug = re.sub(r"[^a-z0-9_-]", "", "_".join(prompt.lower().split()))
    if not slug.strip("_-"):
        raise ValueError(f"prompt {prompt!r} has no characters usable in a file name")
    return slug


def prompts_for(dataset: str, prompts: Mapping[str, Sequence[str]] = PROMPTS) -> list[str]:
    """The prompt list of one dataset, with a clear error for unknown names or empty lists."""
    if dataset not in prompts:
        raise ValueError(f"no prompts for dataset {dataset!r}; known: {sorted(prompts)}")
    options = list(prompts[dataset])
    if not options:
        raise ValueError(f"the prompt list of dataset {dataset!r} is empty")
    return options


def sample_prompt(
    dataset: str,
    seed: int,
    epoch: int,
    index: int,
    prompts: Mapping[str, Sequence[str]] = PROMPTS,
) -> str:
    """One prompt of `dataset`, drawn uniformly and fixed by (seed, epoch, index)."""
    options = prompts_for(dataset, prompts)
    rng = item_rng(seed, epoch, index, STREAM_PROMPT)
    return options[int(rng.integers(len(options)))]
