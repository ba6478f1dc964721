"""Paired image/mask augmentation on batched tensors, and the step that finishes a batch.

Items carry their image as uint8 at model resolution and the random numbers of their
augmentation (`draw_augment`, from the item's own generator, so CPU runs repeat exactly and a
resumed run sees the same draws). `finish_batch` runs after the batch is on the model's device
(the GPU when there is one): it applies every item's geometry to image and mask together,
the colour change to the image only, and normalises with the processor's mean and std.

Geometry: with probability 1/2 a mild random resized crop (75-100 % of the area, aspect change
up to 15 %, resized back to full size), then horizontal flip, vertical flip (each 1/2) and a
rotation by a random multiple of 90 degrees. Colour: brightness and contrast factors in
1 +/- `jitter`, applied as `(p - mean) * contrast + mean * brightness` on 0-255 values.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

# Columns of an augmentation row, in the order they are drawn.
AUGMENT_FIELDS = (
    "crop", "area", "ratio", "fx", "fy", "hflip", "vflip", "turns", "brightness", "contrast",
)
IDENTITY = (0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 1.0)


def draw_augment(rng: np.random.Generator, jitter: float = 0.1) -> torch.Tensor:
    """One item's augmentation as a float64 row of `AUGMENT_FIELDS` (numbers drawn in order)."""
    do_crop = rng.random() < 0.5
    area = rng.uniform(0.75, 1.0)
    ratio = float(np.exp(rng.uniform(np.log(0.85), np.log(1 / 0.85))))
    fx, fy = rng.random(), rng.random()
    hflip, vflip = rng.random() < 0.5, rng.random() < 0.5
    turns = int(rng.integers(4))
    brightness = rng.uniform(1 - jitter, 1 + jitter)
    contrast = rng.uniform(1 - jitter, 1 + jitter)
    return torch.tensor(
        [do_crop, area, ratio, fx, fy, hflip, vflip, turns, brightness, contrast],
        dtype=torch.float64,
    )


def no_augment() -> torch.Tensor:
    """The augmentation row that leaves an item as it is."""
    return torch.tensor(IDENTITY, dtype=torch.float64)


def crop_box(row: Sequence[float], height: int, width: int) -> tuple[int, int, int, int]:
    """(x0, y0, crop width, crop height) in pixels for one augmentation row."""
    area, ratio, fx, fy = (float(v) for v in row[1:5])
    cw = int(min(width, max(1, round(width * math.sqrt(area * ratio)))))
    ch = int(min(height, max(1, round(height * math.sqrt(area / ratio)))))
    return int(fx * (width - cw + 1)), int(fy * (height - ch + 1)), cw, ch


def _to(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor on `device` without waiting for queued GPU work."""
    return t.to(device, non_blocking=True)


def _crop_resize(x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """Each (C, H, W) of `x` cropped to its box and resized back (bilinear), in one call."""
    n, _, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=torch.float32)
    for i, row in enumerate(params.tolist()):
        x0, y0, cw, ch = crop_box(row, h, w)
        theta[i, 0, 0], theta[i, 0, 2] = cw / w, (2 * x0 + cw) / w - 1
        theta[i, 1, 1], theta[i, 1, 2] = ch / h, (2 * y0 + ch) / h - 1
    grid = F.affine_grid(_to(theta, x.device), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(
    images: torch.Tensor, masks: torch.Tensor, params: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment float images (B, 3, S, S) in 0-255 and masks (B, S, S) with rows `params`.

    Image and mask get the same geometry; the colour change goes to the image only (rounded
    and clipped to 0-255 as an 8-bit image would be). Rows equal to `no_augment()` leave their
    item exactly as it was, and an item comes out the same whether it is augmented alone or in
    a batch. Works on any device; `params` stays on the CPU (reading it there never waits for
    the GPU).
    """
    params = params.detach().cpu().double()
    x = torch.cat([images.float(), masks.float().unsqueeze(1)], dim=1)  # a fresh copy
    crop = params[:, 0] > 0.5
    if bool(crop.any()):
        idx = _to(crop.nonzero()[:, 0], x.device)
        x.index_copy_(0, idx, _crop_resize(x.index_select(0, idx), params[crop]))
    for i, row in enumerate(params.tolist()):
        hflip, vflip, turns = row[5] > 0.5, row[6] > 0.5, int(round(row[7])) % 4
        if hflip or vflip or turns:
            item = x[i]
            if hflip:
                item = item.flip(-1)
            if vflip:
                item = item.flip(-2)
            if turns:
                item = torch.rot90(item, turns, dims=(-2, -1))
            x[i] = item
    images, masks = x[:, :-1], x[:, -1]
    colour = (params[:, 8] != 1.0) | (params[:, 9] != 1.0)
    if bool(colour.any()):
        # (p - mean) * contrast + mean * brightness = p * contrast + mean * (brightness - contrast)
        wide = torch.float32 if x.device.type == "mps" else torch.float64  # mps lacks float64
        brightness = _to(params[:, 8].to(wide), x.device)
        contrast = _to(params[:, 9].to(wide), x.device)
        keep = _to(colour, x.device)
        means = images.sum(dim=(1, 2, 3), dtype=wide) / images[0].numel()
        scale = torch.where(keep, contrast, 1.0).float()[:, None, None, None]
        shift = torch.where(keep, means * (brightness - contrast), 0.0).float()[:, None, None, None]
        jittered = (images * scale + shift).round_().clamp_(0, 255)
        images = torch.where(keep[:, None, None, None], jittered, images)
    return images, masks.clamp(0, 1)


def normalise(
    images: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """0-255 images (B, 3, H, W) rescaled to [0, 1] and normalised as the processor does."""
    mean_t = torch.as_tensor(mean, dtype=torch.float64)
    std_t = torch.as_tensor(std, dtype=torch.float64)
    scale = _to((1 / (255 * std_t)).float(), images.device).view(1, -1, 1, 1)
    shift = _to((-mean_t / std_t).float(), images.device).view(1, -1, 1, 1)
    return torch.addcmul(shift, images.float(), scale)


def finish_batch(batch: dict[str, Any]) -> dict[str, Any]:
    """A collated batch with `pixel_values`: augment and normalise its uint8 `images` if any.

    Batches that already hold `pixel_values` are returned as they are. Call it after the
    batch is on the model's device, so the work runs there.
    """
    if "pixel_values" in batch or "images" not in batch:
        return batch
    finished = ("images", "augment", "image_mean", "image_std")
    out = {k: v for k, v in batch.items() if k not in finished}
    images = batch["images"].float()
    labels = batch["labels"]
    if "augment" in batch:
        images, labels = augment_batch(images, labels, batch["augment"])
    mean, std = batch["image_mean"][0].cpu(), batch["image_std"][0].cpu()
    out["pixel_values"] = normalise(images, mean, std)
    out["labels"] = labels.float()
    return out
