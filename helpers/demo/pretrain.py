"""Pretraining of the tiny model on prompted shapes, through the course's own `train()` loop.

Each item is one shapes image (`helpers.demo.shapes.shapes_batch` with `pairs=True`) with
two prompts: a present shape, and another shape present or absent. The forward runs the
vision tower once per image and decodes both prompts, so the prompt must choose.

Items come from one generator seeded with `settings.seed`, in the order they are asked for
(the examples are all fresh, so the shuffle does not matter), with the loop's own optimizer
and schedule: AdamW on every weight at one learning rate, a linear warm-up over
`settings.warmup` steps and cosine decay.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from helpers.core.runtime import Runtime, get_runtime
from helpers.demo.shapes import PretrainSettings, shapes_batch, shapes_iou, to_pixel_values
from helpers.train.config import TrainConfig
from helpers.train.loop import train

# Steps per log row (one "epoch" of the loop) when the step count allows.
STEPS_PER_EPOCH = 50


class ShapesStream(Dataset):
    """`n` prompted-shapes items per epoch, drawn in call order from one generator.

    The index is ignored: every call returns the next fresh example, so the stream must be
    read in one process (`num_workers=0`).
    """

    def __init__(self, n: int, size: int, empty_rate: float, seed: int) -> None:
        self.n, self.size, self.empty_rate = n, size, empty_rate
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict[str, Any]:
        images, prompts, targets = shapes_batch(
            self.rng, 1, self.size, self.empty_rate, pairs=True
        )
        return {"image": images[0], "prompts": prompts[0], "labels": targets[0]}


class PairCollate:
    """Batch of B images: `pixel_values` (B, 3, S, S), 2B prompts, labels (2B, S, S)."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        images = np.stack([item["image"] for item in items])
        prompts = [p for item in items for p in item["prompts"]]
        tokens = self.processor.tokenizer(prompts, padding=True, return_tensors="pt")
        return {
            "pixel_values": to_pixel_values(images, self.processor.image_processor),
            "input_ids": tokens["input_ids"],
            "attention_mask": tokens["attention_mask"],
            "labels": torch.from_numpy(np.concatenate([item["labels"] for item in items])),
        }


def pair_forward(model: nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """Logits (2B, S, S): one vision pass per image, decoded under both of its prompts."""
    from helpers.model.forward import decode, text_embeddings, vision_activations

    activations = vision_activations(model, batch["pixel_values"])
    embeddings = text_embeddings(model, batch["input_ids"], batch["attention_mask"])
    embeddings = embeddings.view(batch["pixel_values"].shape[0], 2, -1)
    logits = torch.stack([decode(model, activations, embeddings[:, j]) for j in range(2)], 1)
    return logits.flatten(0, 1)


def _steps_per_epoch(settings: PretrainSettings) -> int:
    steps = settings.steps
    return STEPS_PER_EPOCH if steps % STEPS_PER_EPOCH == 0 else steps


def pretrain_config(settings: PretrainSettings, runtime: Runtime) -> TrainConfig:
    """The `TrainConfig` of pretraining: every weight, AdamW, BCE (shape pixels x3) + Dice."""
    return TrainConfig(
        mode="full",
        epochs=settings.steps // _steps_per_epoch(settings),
        batch_size=settings.batch_size,
        lr=settings.lr,
        tower_lr=settings.lr,  # one learning rate for every weight
        weight_decay=0.01,
        warmup_fraction=min(0.99, settings.warmup / settings.steps),
        grad_clip=1.0,
        bce_pos_weight=settings.pos_weight,
        patience=None,
        seed=settings.seed,
        num_workers=0,  # one generator feeds the stream
        precision=runtime.precision,
        restore_best=False,
    )


def pretrain_tiny(
    model: nn.Module,
    processor: Any,
    settings: PretrainSettings | None = None,
    progress: bool = True,
    runtime: Runtime | None = None,
) -> dict:
    """Train every weight of `model` on prompted shapes; returns a summary with held-out IoU.

    Runs on `runtime` (default: the CPU in fp32, on every machine: the tiny model is the
    demo's fixed starting point, so a GPU host builds the same weights as a laptop instead of
    TF32 or non-deterministic CUDA kernels giving it others); the model is back on the CPU, in
    eval mode and frozen afterwards.
    """
    settings = settings or PretrainSettings()
    rt = runtime or get_runtime("cpu", "fp32")
    cfg = pretrain_config(settings, rt)
    data = ShapesStream(
        _steps_per_epoch(settings) * settings.batch_size, settings.size, settings.empty_rate,
        settings.seed,
    )
    model.requires_grad_(True)
    model.to(rt.device)

    with tempfile.TemporaryDirectory(prefix="tiny-pretraining-") as tmp:
        result = train(
            model, data, None, cfg, Path(tmp), PairCollate(processor), forward_fn=pair_forward,
            progress=progress,
        )
    model.eval()
    model.requires_grad_(False)
    held_out = shapes_iou(model, processor, settings.size, seed=settings.seed + 1)
    model.to("cpu")
    losses = [round(float(v), 4) for v in result.log["train_loss"]]
    return {
        "settings": settings.to_dict(),
        "trained_with": "helpers.train.loop.train",
        "runtime": rt.describe(),
        "first_loss": losses[0],
        "final_loss": losses[-1],
        "loss_per_epoch": losses,
        "held_out_iou": held_out,
    }
