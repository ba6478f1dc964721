"""The tiny model's pretraining task: generic prompted shapes (the demo's stand-in for the
real checkpoint's pretraining). The training itself is `helpers.demo.pretrain.pretrain_tiny`,
which runs the course's own training loop on these examples.

The real CLIPSeg arrives pretrained: it already segments whatever a prompt names, and the
course adapts it to cracks and taping. A tiny model with random weights cannot play that
part (its outputs barely respond to the input, so adapters have nothing to steer). So the
tiny model is first trained, once and deterministically, to segment generic shapes named by
a prompt on wall-like backgrounds: thin dark branching lines, wide smooth bands, spots and
squares, with unnamed straight scratches as clutter. The words "crack" and "taping" never
occur in this task; the course's adaptation has to teach them, just as with the real model.

Shapes are drawn at the pixel scale of a 352 x 352 model input, on smaller canvases (crops)
for speed; the position embeddings are interpolated to the canvas size.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import nn

from helpers.demo.tokenizer import SHAPE_WORDS

SHAPE_PROMPTS: dict[str, tuple[str, ...]] = {
    "line": ("segment line", "segment thin line", "segment dark line", "segment curved line"),
    "band": ("segment band", "segment stripe", "segment wide band", "segment smooth stripe"),
    "spot": ("segment spot", "segment blob", "segment round spot"),
    "square": ("segment square", "segment box"),
}
# How often each kind is drawn (lines and bands are what the course's adaptation builds on).
SHAPE_WEIGHTS: dict[str, float] = {"line": 0.35, "band": 0.35, "spot": 0.15, "square": 0.15}

__all__ = [
    "SHAPES",
    "SHAPE_PROMPTS",
    "SHAPE_WEIGHTS",
    "SHAPE_WORDS",
    "PretrainSettings",
    "shapes_batch",
    "shapes_example",
    "shapes_iou",
    "to_pixel_values",
]


@dataclass(frozen=True)
class PretrainSettings:
    """Length and size of the pretraining run (defaults: about two minutes on 2 CPU cores)."""

    steps: int = 500  # 400 on the standard schedule can leave the prompts unlearned
    batch_size: int = 16
    size: int = 160  # canvas side; shapes keep the pixel scale of a 352 input
    lr: float = 1e-3  # 2e-3 and more collapse the text tower (every prompt alike)
    warmup: int = 30
    empty_rate: float = 0.2  # second prompts that name an absent shape (empty target)
    pos_weight: float = 3.0  # BCE weight of shape pixels (keeps thin lines from vanishing)
    seed: int = 0

    def to_dict(self) -> dict:
        """Plain dict (for the saved summary)."""
        return asdict(self)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A light wall-like background with streaky texture, float32 grey levels."""
    cells = int(rng.integers(2, 6))
    low = cv2.resize(
        rng.normal(0, 1, (cells, cells)).astype(np.float32),
        (size, size),
        interpolation=cv2.INTER_CUBIC,
    )
    streak = rng.normal(0, 1, (size, size)).astype(np.float32)
    k = int(rng.integers(3, 8)) * 2 + 1
    streak = cv2.GaussianBlur(streak, (1, k) if rng.random() < 0.7 else (k, 1), 0)
    base = float(rng.uniform(150, 235))
    img = (
        base
        + low * float(rng.uniform(2, 8))
        + streak * float(rng.uniform(2, 8))
        + rng.normal(0, rng.uniform(1, 4), (size, size))
    )
    return img.astype(np.float32)


def _scratches(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Unnamed clutter: faint straight thin lines (never a target)."""
    size = img.shape[0]
    layer = np.zeros_like(img)
    for _ in range(int(rng.integers(1, 3))):
        p0, p1 = rng.uniform(-size / 2, size * 1.5, (2, 2)).round().astype(int)
        cv2.line(
            layer,
            tuple(int(v) for v in p0),
            tuple(int(v) for v in p1),
            float(rng.choice([-1, 1]) * rng.uniform(8, 40)),
            int(rng.integers(1, 3)),
        )
    return img + cv2.GaussianBlur(layer, (3, 3), 0.6)


def _walk(
    rng: np.random.Generator, start: np.ndarray, angle: float, steps: int, size: int
) -> np.ndarray:
    pts = [start]
    for _ in range(steps):
        angle += rng.normal(0, 0.35)
        step = rng.uniform(5, 12)
        pts.append(pts[-1] + step * np.array([math.cos(angle), math.sin(angle)]))
    return np.clip(np.array(pts), -4, size + 4).round().astype(np.int32)


def _line(rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    """A thin dark wandering line with a branch or two."""
    mask = np.zeros((size, size), np.uint8)
    start = rng.uniform(0, size - 1, 2)
    poly = _walk(rng, start, rng.uniform(0, 2 * math.pi), int(rng.integers(10, 24)), size)
    width = int(rng.integers(1, 6))
    cv2.polylines(mask, [poly], False, 1, width)
    for _ in range(int(rng.integers(0, 3))):
        at = poly[int(rng.integers(1, len(poly)))].astype(float)
        branch = _walk(rng, at, rng.uniform(0, 2 * math.pi), int(rng.integers(3, 10)), size)
        cv2.polylines(mask, [branch], False, 1, max(1, width - 1))
    return mask, -float(rng.uniform(35, 100))


def _band(rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    """A straight smooth band 8-32 px wide, full length or partial (its box is the target)."""
    mask = np.zeros((size, size), np.uint8)
    width = int(rng.integers(8, 33))
    start = int(rng.integers(-width // 3, size - width // 2))
    if rng.random() < 0.5:
        lo, hi = 0, size
    else:
        lo = int(rng.integers(0, size // 2))
        hi = int(rng.integers(lo + size // 3, size + 1))
    a, b = max(start, 0), min(start + width, size)
    if rng.random() < 0.5:
        mask[lo:hi, a:b] = 1
    else:
        mask[a:b, lo:hi] = 1
    return mask, float(rng.choice([-1, 1]) * rng.uniform(6, 26))


def _spot(rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    mask = np.zeros((size, size), np.uint8)
    centre = tuple(int(v) for v in rng.integers(10, size - 10, 2))
    axes = tuple(int(v) for v in rng.integers(6, 24, 2))
    cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    return mask, float(rng.choice([-1, 1]) * rng.uniform(25, 60))


def _square(rng: np.random.Generator, size: int) -> tuple[np.ndarray, float]:
    mask = np.zeros((size, size), np.uint8)
    side = int(rng.integers(16, 48))
    x, y = (int(v) for v in rng.integers(0, size - side, 2))
    mask[y : y + side, x : x + side] = 1
    return mask, float(rng.choice([-1, 1]) * rng.uniform(25, 60))


SHAPES = {"line": _line, "band": _band, "spot": _spot, "square": _square}


def shapes_example(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One RGB image (uint8) with 1-3 kinds of shape, and the mask of every kind (absent: 0)."""
    img = _background(rng, size)
    if rng.random() < 0.5:
        img = _scratches(rng, img)
    names = list(SHAPES)
    weights = np.array([SHAPE_WEIGHTS[k] for k in names])
    kinds = list(
        rng.choice(names, size=int(rng.integers(1, 4)), replace=False, p=weights / weights.sum())
    )
    masks = {k: np.zeros((size, size), np.uint8) for k in SHAPES}
    for kind in sorted(kinds, key=names.index):  # bands first: lines may cross them
        mask, delta = SHAPES[kind](rng, size)
        while not mask.any():  # a line that left the canvas at once: draw it again
            mask, delta = SHAPES[kind](rng, size)
        if kind == "band":  # a smooth surface with soft edges inside the band
            soft = cv2.GaussianBlur(mask.astype(np.float32), (7, 7), 2.0)
            smooth = cv2.GaussianBlur(img, (9, 9), 3.0)
            img = img * (1 - soft) + (smooth + delta) * soft
        else:
            soft = cv2.GaussianBlur(mask.astype(np.float32), (3, 3), 0.7)
            img = img + soft * delta
        masks[kind] = np.maximum(masks[kind], mask)
    tint = rng.uniform(0.93, 1.05, 3).astype(np.float32)
    rgb = np.clip(img[..., None] * tint, 0, 255).astype(np.uint8)
    return rgb, masks


def shapes_batch(
    rng: np.random.Generator, n: int, size: int, empty_rate: float, pairs: bool = False
):
    """Images (n, size, size, 3) uint8, prompts and targets (n, size, size) float32 in {0, 1}.

    The first prompt of an image names a present shape. With `pairs`, prompts and targets get
    a second column: another kind, absent (empty target) with probability `empty_rate` when
    any kind is absent, else another present kind when there is one.
    """
    images, prompts, targets = [], [], []
    for _ in range(n):
        rgb, masks = shapes_example(rng, size)
        present = [k for k, m in masks.items() if m.any()]
        absent = [k for k in SHAPES if k not in present]
        first = str(rng.choice(present))
        kinds = [first]
        if pairs:
            others = [k for k in present if k != first]
            use_absent = absent and (not others or rng.random() < empty_rate)
            kinds.append(str(rng.choice(absent if use_absent else others)))
        elif absent and rng.random() < empty_rate:
            kinds = [str(rng.choice(absent))]
        images.append(rgb)
        prompts.append([str(rng.choice(SHAPE_PROMPTS[k])) for k in kinds])
        targets.append(np.stack([masks[k].astype(np.float32) for k in kinds]))
    targets_arr = np.stack(targets)
    if not pairs:
        return np.stack(images), [p[0] for p in prompts], targets_arr[:, 0]
    return np.stack(images), prompts, targets_arr


def to_pixel_values(images: np.ndarray, image_processor) -> torch.Tensor:
    """uint8 (n, H, W, 3) images normalised as the processor does (no resizing)."""
    mean = torch.tensor(image_processor.image_mean, dtype=torch.float32)[:, None, None]
    std = torch.tensor(image_processor.image_std, dtype=torch.float32)[:, None, None]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    return (x - mean) / std


@torch.no_grad()
def shapes_iou(model: nn.Module, processor, size: int = 160, n: int = 96, seed: int = 1) -> dict:
    """Mean IoU per shape kind on fresh examples (prompt names a present shape; threshold 0.5)."""
    from helpers.core.overlap import iou_from_counts
    from helpers.core.runtime import model_device
    from helpers.model.forward import segment

    device = model_device(model)
    rng = np.random.default_rng(seed)
    images, prompts, targets = shapes_batch(rng, n, size, empty_rate=0.0)
    tokens = processor.tokenizer(prompts, padding=True, return_tensors="pt").to(device)
    probs = torch.sigmoid(
        segment(
            model,
            to_pixel_values(images, processor.image_processor).to(device),
            tokens["input_ids"],
            tokens["attention_mask"],
        ).float()
    ).cpu().numpy()
    scores: dict[str, list[float]] = {}
    for p, prob, target in zip(prompts, probs, targets, strict=True):
        kind = next(k for k, names in SHAPE_PROMPTS.items() if p in names)
        pred, truth = prob >= 0.5, target > 0
        tp = int(np.count_nonzero(pred & truth))
        fp, fn = int(np.count_nonzero(pred)) - tp, int(np.count_nonzero(truth)) - tp
        scores.setdefault(kind, []).append(float(iou_from_counts(tp, fp, fn)))
    return {k: round(float(np.mean(v)), 4) for k, v in sorted(scores.items())}
