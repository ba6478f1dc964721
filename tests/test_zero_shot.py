"""Mode "none": the untrained base model, scored through the functions every mode goes through."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from helpers.core.io import write_mask_png
from helpers.course.profiles import Profile
from helpers.course.zero_shot import zero_shot_model
from helpers.demo.tiny_model import build_tiny_model
from helpers.evaluate.bootstrap import photo_bootstrap
from helpers.evaluate.predictions import evaluate_model
from helpers.evaluate.sweep import apply_thresholds, choose_thresholds
from helpers.inference.segmenter import Segmenter

PROMPTS = {"cracks": ["segment crack"], "taping": ["segment taping area"]}


@pytest.fixture()
def manifest(tmp_path):
    rng = np.random.default_rng(1)
    rows = []
    for i in range(8):
        image = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (36, 44, 3), dtype=np.uint8)).save(image)
        mask = write_mask_png(tmp_path / f"mask{i}.png", rng.random((36, 44)) < 0.3)
        rows.append({"image_path": str(image), "mask_path": str(mask), "true_mask_path": "",
                     "dataset": "cracks" if i < 4 else "taping",
                     "split": "val" if i % 2 else "test"})
    return pd.DataFrame(rows)


def _profile(model_dir) -> Profile:
    return Profile(name="t", model=str(model_dir), cracks_export="", taping_export="",
                   device="cpu")


def test_zero_shot_is_the_base_model_frozen_and_untrained(model_dir, manifest):
    run = zero_shot_model(_profile(model_dir))
    assert run.mode == "none"
    assert run.info["parameters"]["trainable"] == 0
    assert run.info["parameters"]["total"] == sum(p.numel() for p in run.model.parameters())
    assert run.info["seconds"] == 0.0 and run.info["best_epoch"] is None
    assert run.log.empty and run.checkpoint_mb == 0.0
    image = np.asarray(Image.open(manifest["image_path"][0]).convert("RGB"))
    base = Segmenter.from_pretrained(str(model_dir), device="cpu")
    np.testing.assert_allclose(run.segmenter().probability_maps([image], ["segment crack"])[0],
                               base.probability_maps([image], ["segment crack"])[0], atol=1e-6)
    assert zero_shot_model(_profile(model_dir)).evaluation_key == run.evaluation_key


def test_zero_shot_key_follows_the_base_model_files(tmp_path):
    model, processor = build_tiny_model()
    folder = tmp_path / "base"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    before = zero_shot_model(_profile(folder)).evaluation_key
    other, _ = build_tiny_model(seed=1)  # other weights in the same folder
    other.save_pretrained(folder)
    assert zero_shot_model(_profile(folder)).evaluation_key != before


def test_zero_shot_goes_through_the_same_evaluation_and_paired_gains(tmp_path, model_dir,
                                                                      manifest):
    runs = {"none": zero_shot_model(_profile(model_dir))}
    trained, processor = build_tiny_model()
    for p in trained.decoder.parameters():  # a stand-in for a trained decoder
        p.data.mul_(1.5)
    scores = {}
    for mode, (segmenter, key) in {
        "none": (runs["none"].segmenter(), runs["none"].evaluation_key),
        "decoder": (Segmenter(trained, processor), "decoder-run"),
    }.items():
        table, _ = evaluate_model(segmenter, manifest, tmp_path / mode, key, prompts=PROMPTS,
                                  progress=False)
        scores[mode] = apply_thresholds(table, choose_thresholds(table), split="test")
    gains = photo_bootstrap(scores, {i: i for i in scores["none"]["image_id"]},
                            reference="none", n_resamples=200)
    none = gains[gains["mode"] == "none"]
    assert (none["diff"] == 0).all() and (none["diff_low"] == 0).all()
    for row in gains[gains["mode"] == "decoder"].itertuples():
        base = none[none["dataset"] == row.dataset]["iou"].item()
        assert row.diff == pytest.approx(row.iou - base)
        assert row.diff_low <= row.diff <= row.diff_high
