"""The comparison protocol: two passes per model, the same numbers as scoring everything at
once, and nothing run again once stored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.core.io import write_mask_png
from helpers.data.prompts import PROMPTS
from helpers.evaluate.held_out import held_out_scores
from helpers.evaluate.predictions import evaluate_model
from helpers.evaluate.protocol import EXTRA_STORE, evaluate_protocol, extra_prompts, extra_store
from helpers.evaluate.sensitivity import cross_prompt_scores, sensitivity_forms

HELD = {"cracks": ["hairline fracture"], "taping": ["joint compound"]}


@pytest.fixture()
def manifest(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for i in range(8):
        image = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (36, 44, 3), dtype=np.uint8)).save(image)
        mask = write_mask_png(tmp_path / f"mask{i}.png", rng.random((36, 44)) < 0.3 * (i % 4 > 0))
        rows.append({"image_path": str(image), "mask_path": str(mask), "true_mask_path": "",
                     "dataset": "cracks" if i < 4 else "taping", "width": 44, "height": 36,
                     "split": "val" if i % 2 else "test"})
    return pd.DataFrame(rows)


class Refuses:
    """A segmenter that must not be called: the stored evaluation is read instead."""

    def __getattr__(self, name):
        raise AssertionError(f"the model was run again ({name})")


def test_the_protocol_matches_scoring_everything_in_one_pass(tmp_path, segmenter, manifest):
    scores = evaluate_protocol(segmenter, manifest, tmp_path / "lora", "k", batch_size=4,
                               held_out=HELD, progress=False)
    assert set(scores.extra["split"]) == {"test"}  # the second pass covers test only
    for cls, prompts in extra_prompts(HELD).items():
        assert set(scores.extra.loc[scores.extra["dataset"] == cls, "prompt"]) == set(prompts)
        assert not set(prompts) & set(PROMPTS[cls])  # no prompt of its own class again

    everything = {c: [*PROMPTS[c], *HELD[c]] for c in PROMPTS}
    one_pass, _ = evaluate_model(segmenter, manifest, tmp_path / "one", "k", ("val", "test"),
                                 everything, batch_size=4, progress=False)
    pd.testing.assert_frame_equal(scores.held_out(HELD), held_out_scores(one_pass, HELD))

    # the labelled form is the figure notebook 04 computes through cross_prompt_scores
    _, labelled = cross_prompt_scores(segmenter, manifest, tmp_path / "04", "k", scores.table,
                                      scores.chosen, batch_size=4, progress=False)
    forms = scores.sensitivity()
    assert forms.loc["labelled", ["cracks", "taping", "all"]].to_dict() == pytest.approx(labelled)
    pd.testing.assert_frame_equal(
        forms, sensitivity_forms(scores.cross_prompt(), scores.chosen, manifest))
    assert set(scores.localisation()) == {"cracks", "taping", "all"}

    again = evaluate_protocol(Refuses(), manifest, tmp_path / "lora", "k", held_out=HELD,
                              progress=False)
    assert again.chosen == scores.chosen
    pd.testing.assert_frame_equal(again.test_pairs(), scores.test_pairs())


def test_new_phrasings_get_a_store_of_their_own_and_leave_the_courses_pass_alone(
    tmp_path, segmenter, manifest
):
    evaluate_protocol(segmenter, manifest, tmp_path / "lora", "k", batch_size=4, progress=False)
    assert extra_store() == EXTRA_STORE
    evaluate_protocol(segmenter, manifest, tmp_path / "lora", "k", batch_size=4, held_out=HELD,
                      progress=False)
    assert extra_store(HELD) != EXTRA_STORE
    assert (tmp_path / "lora" / extra_store(HELD)).is_dir()
    # the course's own pass is still stored: reading it again runs nothing
    evaluate_protocol(Refuses(), manifest, tmp_path / "lora", "k", progress=False)
