"""Evaluation on the model's device equals the per-image NumPy path: counts, maps, tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sweep_reference import prediction_records, sweep_counts, sweep_table

from helpers.core.io import write_mask_png
from helpers.core.paths import shown
from helpers.demo.tiny_model import build_tiny_model
from helpers.evaluate import predictions
from helpers.evaluate.sweep import THRESHOLDS
from helpers.evaluate.sweep import sweep_counts as sweep_counts_on_device
from helpers.inference.segmenter import Segmenter

PROMPTS = {"cracks": ["segment crack", "segment fracture"], "taping": ["segment taping area"]}


@pytest.fixture(scope="module")
def segmenter():
    return Segmenter(*build_tiny_model())


@pytest.fixture()
def manifest(tmp_path):
    rng = np.random.default_rng(0)
    rows = []
    sizes = [(40, 56), (64, 48), (40, 56), (33, 70), (50, 50)]
    for i, (h, w) in enumerate(sizes):
        dataset = "cracks" if i < 3 else "taping"
        image = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(image)
        mask = write_mask_png(tmp_path / f"mask{i}.png", rng.random((h, w)) < 0.3)
        true = write_mask_png(tmp_path / f"true{i}.png", rng.random((h, w)) < 0.1)
        rows.append(
            {
                "image_path": str(image),
                "mask_path": str(mask),
                "true_mask_path": str(true) if dataset == "taping" else "",
                "dataset": dataset,
                "split": "val" if i % 2 else "test",
            }
        )
    return pd.DataFrame(rows)


def _per_image_tables(segmenter, manifest, store):
    """The NumPy reference: one image at a time, sweep_counts per map."""
    records = list(prediction_records(segmenter, manifest, PROMPTS, store=store))
    true_records = [
        {**{k: v for k, v in r.items() if k != "true_mask"}, "truth": r["true_mask"]}
        for r in records
        if r["true_mask"] is not None
    ]
    return records, sweep_table(records), sweep_table(true_records)


def test_device_sweep_counts_equal_numpy_counts_exactly():
    rng = np.random.default_rng(3)
    probs = rng.random((3, 37, 41)).astype(np.float32)
    probs[0, 0, : len(THRESHOLDS)] = THRESHOLDS.astype(np.float32)  # values exactly at thresholds
    probs[1] = np.round(probs[1] * 255) / 255  # the stored 8-bit steps
    truth = rng.random((37, 41)) < 0.4
    counts = sweep_counts_on_device(torch.from_numpy(probs), torch.from_numpy(truth)).numpy()
    for p, c in zip(probs, counts, strict=True):
        np.testing.assert_array_equal(c, sweep_counts(p, truth))
    with pytest.raises(ValueError, match="does not match truth shape"):
        sweep_counts_on_device(torch.from_numpy(probs), torch.from_numpy(truth[:-1]))


def test_batched_device_evaluation_equals_the_per_image_path(tmp_path, segmenter, manifest):
    records, table, true_table = _per_image_tables(segmenter, manifest, tmp_path / "ref")
    got, got_true = predictions.sweep_on_device(
        segmenter, manifest, prompts=PROMPTS, batch_size=2, store=tmp_path / "dev", progress=False
    )
    assert len(got) == (3 * 2 + 2 * 1) * len(THRESHOLDS)  # images x prompts of their class
    pd.testing.assert_frame_equal(got, table)
    pd.testing.assert_frame_equal(got_true, true_table)
    assert len(got_true) == 2 * len(THRESHOLDS)
    for rec in records:
        path = predictions.probability_path("", rec["split"], rec["image_id"], rec["prompt"])
        dev = predictions.read_probability(tmp_path / "dev" / path)
        ref = predictions.read_probability(tmp_path / "ref" / path)
        np.testing.assert_array_equal(dev, ref)
        np.testing.assert_allclose(dev, rec["probs"], atol=0.5 / 255 + 1e-6)


def test_batched_probabilities_match_one_image_at_a_time(segmenter, manifest):
    from helpers.data.images import load_rgb

    images = [load_rgb(p) for p in manifest["image_path"]]
    prompts = PROMPTS["cracks"]
    together = segmenter.probability_maps(images, prompts)
    for image, maps in zip(images, together, strict=True):
        alone = segmenter.probability_maps([image], prompts)[0]
        assert maps.shape == (2, *image.shape[:2])
        np.testing.assert_allclose(maps.cpu().numpy(), alone.cpu().numpy(), atol=1e-5, rtol=0)


def test_evaluate_model_writes_tables_once_per_key(tmp_path, segmenter, manifest):
    store = tmp_path / "store"
    table, true_table = predictions.evaluate_model(
        segmenter, manifest, store, key="k1", prompts=PROMPTS, batch_size=3, progress=False
    )
    assert (store / predictions.SWEEP_FILE).is_file()
    again, _ = predictions.evaluate_model(
        segmenter, manifest, store, key="k1", prompts=PROMPTS, batch_size=3, progress=False
    )
    pd.testing.assert_frame_equal(
        again[["tp", "fp", "fn"]], table[["tp", "fp", "fn"]], check_dtype=False
    )
    stored = sorted(p.name for p in (store / "val").glob("*.png"))
    assert stored == ["img1__segment_crack.png", "img1__segment_fracture.png",
                      "img3__segment_taping_area.png"]


def test_the_sweep_table_and_the_stored_maps_give_one_number(segmenter, manifest, tmp_path):
    """A score read from the sweep table equals the same score recomputed from the stored
    probability maps (what post-processing, clDice and the galleries use)."""
    from helpers.evaluate.metrics import mean_scores
    from helpers.evaluate.stored import stored_scores
    from helpers.evaluate.sweep import summary_at

    table, _ = predictions.evaluate_model(segmenter, manifest, tmp_path / "store", key="k",
                                          batch_size=2,
                                          progress=False)
    chosen = {cls: 0.5 for cls in table["dataset"].unique()}
    for split in sorted(table["split"].unique()):
        from_table = summary_at(table, chosen, split).set_index("dataset")["iou"]
        stored = stored_scores(tmp_path / "store", manifest, chosen, [split])
        from_maps = mean_scores(stored, ["dataset"]).set_index("dataset")["iou"]
        assert from_table.to_dict() == pytest.approx(from_maps.to_dict(), abs=1e-12), split


def test_a_stored_evaluation_says_it_was_loaded_from_the_cache(tmp_path, segmenter, manifest,
                                                               capsys):
    store = tmp_path / "store"
    predictions.evaluate_model(segmenter, manifest, store, key="k1", prompts=PROMPTS,
                               batch_size=3, progress=True)
    assert f"evaluated now and stored in {shown(store)}" in capsys.readouterr().out
    predictions.evaluate_model(segmenter, manifest, store, key="k1", prompts=PROMPTS,
                               batch_size=3, progress=True)
    assert f"evaluation loaded from {shown(store)}" in capsys.readouterr().out
