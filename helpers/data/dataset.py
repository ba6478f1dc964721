"""The joint cracks + taping dataset: (image, prompt) -> soft target mask, with a collate function.

Each image is decoded once and kept in memory at model resolution: the image as uint8,
exactly as the processor resizes it, and its mask as a soft target (`resize_soft_mask`). Items
are cut from that cache, so epochs after the first read no files.

Each epoch shows every image once with a prompt of its class, drawn afresh each epoch (fixed
by seed, epoch and index, so runs repeat exactly). Optional negative pairs come on top: an
image shown with a prompt of the other class and an all-zero target, teaching the model that
"segment crack" on a taped seam means "nothing here". They are extra items, so asking for
negatives never takes positive examples away.

Augmentation (`helpers.data.augment`) works on tensors. By default an item is finished on
the spot (augmented and normalised: `pixel_values`). With `finish_on_device=True` an item
carries its uint8 `image` and its augmentation row instead, and
`helpers.data.augment.finish_batch` augments and normalises the whole collated batch after it
is on the model's device (the training loop does this). Both ways give the same numbers.

With a `DataLoader(num_workers > 0)`, leave `persistent_workers=False` (the default) so each
epoch's workers receive the dataset after `set_epoch`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch.utils.data import Dataset

from helpers.core.io import read_mask
from helpers.data.augment import augment_batch, draw_augment, no_augment, normalise
from helpers.data.images import load_rgb
from helpers.data.prompts import (
    PROMPTS,
    STREAM_AUGMENT,
    STREAM_NEGATIVE,
    STREAM_NEGATIVE_IMAGES,
    item_rng,
    prompts_for,
    sample_prompt,
)


def resize_soft_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Resize a {0, 1} mask to (size, size) as a soft target in [0, 1].

    INTER_AREA averages the source pixels under each target pixel, so a crack 1-2 px wide in a
    640 px image becomes a line of partial values (e.g. 0.4) at 352 px instead of vanishing or
    breaking up as it can under nearest-neighbour sampling.
    """
    out = cv2.resize(mask.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return np.clip(out, 0.0, 1.0)


def _read_manifest(
    manifest: pd.DataFrame | str | os.PathLike[str], split: str, mask_column: str
) -> pd.DataFrame:
    """The manifest (read from a CSV path if needed), checked for its columns and the split."""
    if not isinstance(manifest, pd.DataFrame):
        path = Path(manifest)
        if not path.is_file():
            raise FileNotFoundError(f"manifest not found: {path}")
        manifest = pd.read_csv(path, keep_default_na=False)
    needed = ["image_path", "dataset", "split", mask_column]
    missing = [c for c in needed if c not in manifest.columns]
    if missing:
        raise ValueError(
            f"manifest lacks columns {missing}; columns present: {list(manifest.columns)}"
        )
    available = sorted(manifest["split"].astype(str).unique())
    if split not in available:
        raise ValueError(f"unknown split {split!r}; available splits: {available}")
    return manifest


def _check_settings(size: int, negative_rate: float, seed: int, jitter: float) -> None:
    """Refuse settings a dataset cannot use, naming the value."""
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    if not 0.0 <= float(negative_rate) <= 1.0:
        raise ValueError(f"negative_rate must be in [0, 1], got {negative_rate}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if not 0.0 <= float(jitter) < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}")


class JointSegmentationDataset(Dataset):
    """Rows of one split of a manifest as CLIPSeg training items.

    Item: {"pixel_values": (3, S, S) float, "labels": (S, S) float in [0, 1], "prompt": str,
    "dataset": str, "is_negative": bool, "index": int} where `index` is the row of `self.frame`
    (with `finish_on_device`: "image" uint8 (3, S, S), "augment", "image_mean" and "image_std"
    instead of "pixel_values").
    Items `0 .. n-1` are the n images with a prompt of their class; with `negative_rate` r,
    items `n .. n + round(r n) - 1` are negative pairs of images drawn without repeats, afresh
    each epoch.
    Without augmentation, `pixel_values` equals what `CLIPSegProcessor(images=img)` returns
    (at size 352). Needs manifest columns image_path, dataset, split and `mask_column`.
    """

    def __init__(
        self,
        manifest: pd.DataFrame | str | os.PathLike[str],
        split: str,
        image_processor: Any,
        prompts: Mapping[str, Sequence[str]] = PROMPTS,
        size: int = 352,
        augment: bool = False,
        negative_rate: float = 0.0,
        seed: int = 42,
        mask_column: str = "mask_path",
        jitter: float = 0.1,
        finish_on_device: bool = False,
    ) -> None:
        manifest = _read_manifest(manifest, split, mask_column)
        _check_settings(size, negative_rate, seed, jitter)
        self.frame = manifest[manifest["split"].astype(str) == split].reset_index(drop=True)
        self.prompts = {name: list(options) for name, options in prompts.items()}
        for name in self.frame["dataset"].astype(str).unique():
            prompts_for(name, self.prompts)
            if negative_rate > 0 and not self._other_classes(name):
                raise ValueError(
                    f"negative_rate > 0 needs prompts of a class other than {name!r}; "
                    f"prompt classes: {sorted(self.prompts)}"
                )
        processor = getattr(image_processor, "image_processor", image_processor)
        if not callable(processor):
            raise TypeError(f"image_processor must be callable, got {type(processor).__name__}")
        self.image_processor = processor
        self.split = split
        self.size = int(size)
        self.augment = bool(augment)
        self.negative_rate = float(negative_rate)
        self.seed = int(seed)
        self.mask_column = mask_column
        self.jitter = float(jitter)
        self.finish_on_device = bool(finish_on_device)
        self.image_mean = [float(v) for v in processor.image_mean]
        self.image_std = [float(v) for v in processor.image_std]
        self.epoch = 0
        self._images: dict[int, torch.Tensor] = {}
        self._masks: dict[int, torch.Tensor] = {}
        self._shapes: dict[int, tuple[int, int]] = {}
        self._negative_images: tuple[int, np.ndarray] = (-1, np.empty(0, np.int64))

    def _other_classes(self, dataset: str) -> list[str]:
        return [name for name, options in self.prompts.items() if name != dataset and options]

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose prompts, negatives and augmentations items are drawn from."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self.epoch = int(epoch)

    @property
    def n_negatives(self) -> int:
        """Negative pairs per epoch: `round(negative_rate * images)`."""
        return int(round(self.negative_rate * len(self.frame)))

    def __len__(self) -> int:
        return len(self.frame) + self.n_negatives

    def image_of(self, index: int) -> int:
        """The row of `self.frame` that item `index` shows in the current epoch."""
        n = len(self.frame)
        if index < n:
            return index
        if self._negative_images[0] != self.epoch:  # drawn once per epoch, not per item
            rng = item_rng(self.seed, self.epoch, 0, STREAM_NEGATIVE_IMAGES)
            self._negative_images = (self.epoch, rng.permutation(n)[: self.n_negatives])
        return int(self._negative_images[1][index - n])

    def pair(self, index: int) -> tuple[str, bool]:
        """The (prompt, is_negative) item `index` gets in the current epoch (no image read)."""
        row = self.image_of(index)
        dataset = str(self.frame.at[row, "dataset"])
        if index < len(self.frame):
            return sample_prompt(dataset, self.seed, self.epoch, index, self.prompts), False
        rng = item_rng(self.seed, self.epoch, index, STREAM_NEGATIVE)
        others = self._other_classes(dataset)
        options = self.prompts[others[int(rng.integers(len(others)))]]
        return options[int(rng.integers(len(options)))], True

    def cached_image(self, row_index: int) -> torch.Tensor:
        """Row `row_index`'s image as uint8 (3, S, S), resized exactly as the processor does.

        Decoded on first use and kept in memory for the dataset's lifetime.
        """
        image = self._images.get(row_index)
        if image is None:
            rgb = load_rgb(self.frame.at[row_index, "image_path"])
            resized = self.image_processor(
                images=Image.fromarray(rgb),
                size={"height": self.size, "width": self.size},
                do_rescale=False,
                do_normalize=False,
                return_tensors="pt",
            )["pixel_values"][0]
            image = resized.round().clamp(0, 255).to(torch.uint8).contiguous()
            self._images[row_index] = image
            self._shapes[row_index] = rgb.shape[:2]
        return image

    def cached_mask(self, row_index: int) -> torch.Tensor:
        """Row `row_index`'s mask as a soft target (S, S) in [0, 1] (`resize_soft_mask`)."""
        mask = self._masks.get(row_index)
        if mask is None:
            row = self.frame.iloc[row_index]
            mask_path = row[self.mask_column]
            if not isinstance(mask_path, str | os.PathLike) or not str(mask_path):
                raise ValueError(
                    f"row {row_index} ({row['image_path']}) has no {self.mask_column}"
                )
            full = (read_mask(mask_path) > 0).astype(np.float32)
            self.cached_image(row_index)
            height, width = self._shapes[row_index]
            if full.shape != (height, width):
                raise ValueError(
                    f"mask {mask_path} is {full.shape[1]}x{full.shape[0]} but image "
                    f"{row['image_path']} is {width}x{height}"
                )
            mask = torch.from_numpy(resize_soft_mask(full, self.size))
            self._masks[row_index] = mask
        return mask

    def preload(self, threads: int | None = None) -> None:
        """Decode every image and mask now (e.g. before DataLoader workers copy the dataset),
        on `threads` threads (default: one per CPU core, at most 16): image decoding and
        resizing release the GIL, so a large export is ready in seconds, not minutes."""
        from concurrent.futures import ThreadPoolExecutor

        rows = [i for i in range(len(self.frame)) if i not in self._masks]
        threads = threads or min(16, os.cpu_count() or 1)
        if threads <= 1 or len(rows) < 2:
            for row_index in rows:
                self.cached_mask(row_index)  # decodes the image too
            return
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(self.cached_mask, rows))  # each row on one thread; errors re-raised

    def augmentation(self, index: int) -> torch.Tensor:
        """Item `index`'s augmentation row in the current epoch (`no_augment()` if off)."""
        if not self.augment:
            return no_augment()
        return draw_augment(item_rng(self.seed, self.epoch, index, STREAM_AUGMENT), self.jitter)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        prompt, negative = self.pair(index)
        row_index = self.image_of(index)
        image = self.cached_image(row_index)
        if negative:
            labels = torch.zeros(self.size, self.size, dtype=torch.float32)
        else:
            labels = self.cached_mask(row_index)
        item: dict[str, Any] = {
            "prompt": prompt,
            "dataset": str(self.frame.at[row_index, "dataset"]),
            "is_negative": negative,
            "index": row_index,
        }
        params = self.augmentation(index)
        if self.finish_on_device:
            item.update(
                image=image,
                labels=labels,
                augment=params,
                image_mean=torch.tensor(self.image_mean),
                image_std=torch.tensor(self.image_std),
            )
            return item
        images, masks = image[None].float(), labels[None]
        if self.augment:
            images, masks = augment_batch(images, masks, params[None])
        item["pixel_values"] = normalise(images, self.image_mean, self.image_std)[0]
        item["labels"] = masks[0].float()
        return item

    def summary(self) -> pd.DataFrame:
        """Images per dataset in this split."""
        counts = self.frame.groupby("dataset").size().rename("images")
        return counts.to_frame()

    def __repr__(self) -> str:
        counts = ", ".join(f"{k} {v}" for k, v in self.frame.groupby("dataset").size().items())
        return (
            f"{type(self).__name__}(split={self.split!r}, n={len(self.frame)} ({counts}), "
            f"negative pairs={self.n_negatives}, "
            f"size={self.size}, augment={self.augment}, negative_rate={self.negative_rate}, "
            f"seed={self.seed}, epoch={self.epoch})"
        )


class Collate:
    """A collate_fn that stacks items and tokenises their prompts (padded to the longest).

    Items with a uint8 `image` (`finish_on_device=True`) become a batch with `images`,
    `augment`, `image_mean` and `image_std` instead of `pixel_values`; pass it through
    `helpers.data.augment.finish_batch` on the model's device. A class, not a closure, so
    loader workers started by "spawn" or "forkserver" (Python 3.14's default on Linux) can
    receive it.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = getattr(tokenizer, "tokenizer", tokenizer)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        prompts = [item["prompt"] for item in items]
        text = self.tokenizer(prompts, padding=True, return_tensors="pt")
        batch: dict[str, Any] = {}
        if "image" in items[0]:  # finished (augmented, normalised) on the device
            batch["images"] = torch.stack([item["image"] for item in items])
            for key in ("augment", "image_mean", "image_std"):
                batch[key] = torch.stack([item[key] for item in items])
        else:
            batch["pixel_values"] = torch.stack([item["pixel_values"] for item in items])
        batch.update(
            input_ids=text["input_ids"],
            attention_mask=text["attention_mask"],
            labels=torch.stack([item["labels"] for item in items]),
            prompts=prompts,
            datasets=[item["dataset"] for item in items],
            is_negative=torch.tensor([bool(item["is_negative"]) for item in items]),
            indices=torch.tensor([int(item["index"]) for item in items], dtype=torch.long),
        )
        return batch


def make_collate(tokenizer: Any) -> Collate:
    """The collate_fn for `JointSegmentationDataset` items (see `Collate`)."""
    return Collate(tokenizer)
