"""The evaluation protocol every compared model gets, in one call per model.

1. one pass over validation and test with every training prompt of each image's class
   (`evaluate_model`), from which the threshold of each class is chosen on validation;
2. one more pass over test only, with the prompts the comparison adds: the other class's
   prompts (does the model listen to the prompt?) and the held-out phrasings training never
   used (does the class follow other words?). Both sets go through the model together, so
   each test image costs one more vision pass, not two.

Both passes are stored and reused per model key, like every evaluation. `ProtocolScores`
then gives every table of the comparison from the same rows and thresholds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from helpers.core.cache import key_hash
from helpers.data.prompts import PROMPTS
from helpers.evaluate.held_out import HELD_OUT_PROMPTS, check_held_out, held_out_scores
from helpers.evaluate.predictions import evaluate_model
from helpers.evaluate.sensitivity import (
    cross_prompt_matrix,
    other_class_prompts,
    sensitivity_forms,
    wrong_prompt_localisation,
)
from helpers.evaluate.sweep import apply_thresholds, choose_thresholds

EXTRA_STORE = "extra-prompts-test"  # beside the model's store: the second pass's maps


def extra_prompts(
    held_out: Mapping[str, Sequence[str]] = HELD_OUT_PROMPTS,
) -> dict[str, list[str]]:
    """Per class, the prompts of the test-only pass: the other classes' training prompts,
    then the class's held-out phrasings."""
    check_held_out(held_out)
    wrong = other_class_prompts()
    return {cls: [*wrong[cls], *held_out.get(cls, [])] for cls in PROMPTS}


@dataclass
class ProtocolScores:
    """One model's rows under the protocol, and the tables the comparison reads from them."""

    table: pd.DataFrame  # val and test, training prompts of each image's class
    extra: pd.DataFrame  # test, other classes' prompts and held-out phrasings
    manifest: pd.DataFrame
    chosen: dict[str, float] = field(init=False)  # per class, on validation

    def __post_init__(self) -> None:
        self.chosen = choose_thresholds(self.table, split="val", by=["dataset"])

    def test_pairs(self) -> pd.DataFrame:
        """Test image-prompt pairs at the class thresholds (what `photo_bootstrap` takes)."""
        return apply_thresholds(self.table, self.chosen, split="test", by=["dataset"])

    def cross_prompt(self) -> pd.DataFrame:
        """Test rows of both classes' training prompts (what the sensitivity functions take)."""
        known = {p for options in PROMPTS.values() for p in options}
        wrong = self.extra[self.extra["prompt"].isin(known)]
        return pd.concat([self.table[self.table["split"] == "test"], wrong], ignore_index=True)

    def matrix(self) -> pd.DataFrame:
        """`cross_prompt_matrix` on test."""
        return cross_prompt_matrix(self.cross_prompt(), self.chosen, self.manifest, "test")

    def sensitivity(self) -> pd.DataFrame:
        """`sensitivity_forms` on test: a row per form, columns per class, all and images."""
        return sensitivity_forms(self.cross_prompt(), self.chosen, self.manifest, "test")

    def localisation(self) -> dict[str, float]:
        """`wrong_prompt_localisation` on test."""
        return wrong_prompt_localisation(self.cross_prompt(), self.chosen, self.manifest, "test")

    def held_out(self, held_out: Mapping[str, Sequence[str]] = HELD_OUT_PROMPTS) -> pd.DataFrame:
        """`held_out_scores` on test, at the training prompts' validation thresholds."""
        unseen = {p for options in held_out.values() for p in options}
        rows = pd.concat([self.table, self.extra[self.extra["prompt"].isin(unseen)]],
                         ignore_index=True)
        return held_out_scores(rows, held_out)


def extra_store(held_out: Mapping[str, Sequence[str]] = HELD_OUT_PROMPTS) -> str:
    """The second pass's folder name: `EXTRA_STORE` for the course's held-out phrasings, a
    folder of its own for any other set, so trying new words never overwrites the course's."""
    chosen = {c: list(v) for c, v in sorted(held_out.items())}
    if chosen == {c: list(v) for c, v in HELD_OUT_PROMPTS.items()}:
        return EXTRA_STORE
    return f"{EXTRA_STORE}-{key_hash(chosen)}"


def evaluate_protocol(
    segmenter,
    manifest: pd.DataFrame,
    store: str | Path,
    key: str,
    batch_size: int = 8,
    held_out: Mapping[str, Sequence[str]] = HELD_OUT_PROMPTS,
    progress: bool = True,
) -> ProtocolScores:
    """Both passes of the protocol for one model (`key` identifies it; `store` is its
    predictions folder, the one `evaluate_model` uses for it elsewhere, so a model notebook
    05 evaluated is not run again)."""
    table, _ = evaluate_model(segmenter, manifest, store, key, ("val", "test"), PROMPTS,
                              batch_size, progress)
    extra, _ = evaluate_model(segmenter, manifest, Path(store) / extra_store(held_out),
                              f"{key}-extra-prompts-test", ("test",), extra_prompts(held_out),
                              batch_size, progress)
    return ProtocolScores(table, extra, manifest)
