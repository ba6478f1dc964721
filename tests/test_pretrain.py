"""Pretraining of the tiny model: the shapes task repeats and the shipped model learned it."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from helpers.demo.shapes import (
    SHAPE_PROMPTS,
    SHAPES,
    shapes_batch,
    shapes_example,
    shapes_iou,
    to_pixel_values,
)
from helpers.demo.tiny_model import PRETRAIN_FILE, build_tiny_model, ensure_tiny_model
from helpers.inference.loading import load_model


def test_shapes_batches_repeat_for_a_seed_and_match_their_prompts():
    a = shapes_batch(np.random.default_rng(3), 6, 96, empty_rate=0.3, pairs=True)
    b = shapes_batch(np.random.default_rng(3), 6, 96, empty_rate=0.3, pairs=True)
    c = shapes_batch(np.random.default_rng(4), 6, 96, empty_rate=0.3, pairs=True)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1] and np.array_equal(a[2], b[2])
    assert not np.array_equal(a[0], c[0])
    images, prompts, targets = a
    assert images.shape == (6, 96, 96, 3) and images.dtype == np.uint8
    assert targets.shape == (6, 2, 96, 96) and set(np.unique(targets)) <= {0.0, 1.0}
    known = {p for names in SHAPE_PROMPTS.values() for p in names}
    for pair, target in zip(prompts, targets, strict=True):
        assert set(pair) <= known
        kinds = [next(k for k, n in SHAPE_PROMPTS.items() if p in n) for p in pair]
        assert kinds[0] != kinds[1] and set(kinds) <= set(SHAPES)
        assert target[0].any()  # the first prompt always names a shape in the image


def test_shape_words_are_single_tokens():
    _, processor = build_tiny_model()
    for prompt in {p for names in SHAPE_PROMPTS.values() for p in names}:
        tokens = processor.tokenizer.tokenize(prompt)
        assert len(tokens) == len(prompt.split()), tokens


@pytest.fixture(scope="module")
def shipped():
    model, processor = load_model("tiny")  # the shipped checkpoint (the shipped settings)
    return model, processor


def test_shipped_tiny_model_segments_prompted_shapes_better_than_random(shipped):
    model, processor = shipped
    random_model, _ = build_tiny_model()
    pretrained = shapes_iou(model, processor, size=160, n=64, seed=123)
    untrained = shapes_iou(random_model, processor, size=160, n=64, seed=123)
    assert set(pretrained) == set(SHAPES)
    for kind, margin in (("line", 0.08), ("band", 0.15)):  # thin lines: blocky 16 px patches
        assert pretrained[kind] > untrained[kind] + margin, (kind, pretrained, untrained)
    assert np.mean(list(pretrained.values())) > np.mean(list(untrained.values())) + 0.2
    summary = json.loads((ensure_tiny_model() / PRETRAIN_FILE).read_text(encoding="utf-8"))
    assert set(summary["held_out_iou"]) == set(SHAPES)


def _iou(pred: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(pred, truth).sum()
    return float(np.logical_and(pred, truth).sum() / union) if union else 1.0


@torch.no_grad()
def test_shipped_tiny_model_follows_the_prompt(shipped):
    from helpers.model.forward import segment_prompts

    model, processor = shipped
    rng = np.random.default_rng(7)
    images, masks = [], []
    while len(images) < 16:  # images that hold both a line and a band
        rgb, per_kind = shapes_example(rng, 160)
        if per_kind["line"].any() and per_kind["band"].any():
            images.append(rgb)
            masks.append(per_kind)
    pixels = to_pixel_values(np.stack(images), processor.image_processor)
    tokens = processor.tokenizer(
        ["segment line", "segment band"], padding=True, return_tensors="pt"
    )
    probs = (
        torch.sigmoid(
            segment_prompts(model, pixels, tokens["input_ids"], tokens["attention_mask"])
        ).numpy()
        >= 0.5
    )
    for j, (kind, margin) in enumerate((("line", 0.02), ("band", 0.1))):
        named = np.mean([_iou(p[j], m[kind]) for p, m in zip(probs, masks, strict=True)])
        other = np.mean([_iou(p[1 - j], m[kind]) for p, m in zip(probs, masks, strict=True)])
        assert named > other + margin, (kind, named, other)


def test_pretraining_runs_through_the_training_loop_and_repeats(monkeypatch):
    import helpers.demo.pretrain as pretrain
    from helpers.demo.shapes import PretrainSettings
    from helpers.demo.tiny_model import build_pretrained_tiny_model

    calls = []
    real_train = pretrain.train

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(pretrain, "train", spy)
    cheap = PretrainSettings(steps=2, batch_size=2, size=64, warmup=1)
    model, _, summary = build_pretrained_tiny_model(settings=cheap, progress=False)
    again, _, _ = build_pretrained_tiny_model(settings=cheap, progress=False)
    random_model, _ = build_tiny_model()
    assert len(calls) == 2 and calls[0]["forward_fn"] is pretrain.pair_forward
    assert summary["trained_with"] == "helpers.train.loop.train"
    assert len(summary["loss_per_epoch"]) == 1
    weights, repeat, start = model.state_dict(), again.state_dict(), random_model.state_dict()
    assert all(torch.equal(weights[k], repeat[k]) for k in weights)
    assert any(not torch.equal(weights[k], start[k]) for k in weights)


def test_pretraining_uses_the_loops_schedule_with_its_warmup():
    """The loop's own linear warm-up over `settings.warmup` steps, then cosine decay, at one
    learning rate for every weight."""
    from helpers.core.runtime import get_runtime
    from helpers.demo.pretrain import STEPS_PER_EPOCH, pretrain_config
    from helpers.demo.shapes import PretrainSettings
    from helpers.train.step import cosine_with_warmup

    settings = PretrainSettings(steps=2 * STEPS_PER_EPOCH, warmup=10, lr=1.0)
    cfg = pretrain_config(settings, get_runtime("cpu", "fp32"))
    assert cfg.epochs * STEPS_PER_EPOCH == settings.steps and cfg.tower_lr == cfg.lr
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=settings.lr)
    scheduler = cosine_with_warmup(optimizer, settings.steps, cfg.warmup_fraction)
    lrs = []
    for _ in range(settings.steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[5] == pytest.approx(0.5) and lrs[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False)) and lrs[-1] < 0.01
