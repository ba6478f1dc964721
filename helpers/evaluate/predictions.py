"""One model pass over evaluation images: every prompt of each image's class, full resolution.

`evaluate_model` runs the model on batches of images (the vision tower once per image, the
decoder once for all prompts), upsamples the logits to each image's own size on the model's
device, and turns each probability map into TP/FP/FN counts at every threshold of the sweep
grid right away, still on the device (`sweep_counts`). Nothing is re-run per threshold, and
only counts and 8-bit maps come back to the CPU. Images and masks are read by background
threads; the probability maps are stored as 8-bit PNGs (probability x 255) by a background
writer, so galleries and post-processing can use them later without the model
(`helpers.evaluate.stored`).

The counts are taken from the probabilities *as stored* (8-bit, steps of 1/255, see
`as_stored`), so a score read from the sweep table and the same score recomputed from the
stored maps (`helpers.evaluate.stored`: post-processing, clDice, galleries) are one number.

Because every test image is scored under every prompt of its class, per-prompt tables compare
prompts on the same images (a paired comparison).

A store is a `helpers.core.cache` output built in place: its `cache_key.json` holds the hash of
`evaluation_key` (the caller's model key, the evaluated rows, splits, prompts and thresholds),
recorded as started before the first map is written and as done after the tables. Stores from
before that record (with `evaluation.json`) are evaluated again once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from helpers.core.background import BackgroundWriter, read_ahead
from helpers.core.cache import is_current, record_key
from helpers.core.io import atomic_path, folder_lock, read_mask
from helpers.core.paths import shown
from helpers.core.progress import bar
from helpers.core.runtime import default_workers
from helpers.data.images import load_rgb
from helpers.data.prompts import PROMPTS, prompt_slug
from helpers.evaluate.sweep import THRESHOLDS, counts_table, sweep_counts
from helpers.inference.segmenter import Segmenter, as_stored, quantise

SWEEP_FILE = "sweep.csv.gz"
TRUE_SWEEP_FILE = "sweep_true_masks.csv.gz"


def probability_path(store: str | Path, split: str, image_id: str, prompt: str) -> Path:
    """Where the probability map of one image and prompt is stored."""
    return Path(store) / split / f"{image_id}__{prompt_slug(prompt)}.png"


def write_probability(path: Path, probs: np.ndarray) -> None:
    """Store probabilities (float in [0, 1], or uint8 from `quantise`) as an 8-bit PNG,
    atomically."""
    q = np.asarray(probs)
    if q.dtype != np.uint8:
        q = quantise(torch.from_numpy(np.ascontiguousarray(q))).numpy()
    ok, buf = cv2.imencode(".png", q)
    if not ok:
        raise OSError(f"could not encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def read_probability(path: str | Path) -> np.ndarray:
    """A stored probability map as float32 in [0, 1] (steps of 1/255)."""
    q = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if q is None:
        raise FileNotFoundError(f"cannot read probability map {path}")
    return q.astype(np.float32) / 255.0


def image_id(row: Any) -> str:
    """The id of a manifest row in evaluation tables: the image's file stem."""
    return Path(str(row.image_path)).stem


def _truth_masks(row: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """A manifest row's label mask, and its true mask where the data has one (else None)."""
    truth = read_mask(row.mask_path) > 0
    true_path = str(getattr(row, "true_mask_path", "") or "")
    true_mask = read_mask(true_path) > 0 if true_path and true_path != "nan" else None
    return truth, true_mask


def _load_item(segmenter: Segmenter, row: Any) -> tuple[tuple[int, int], Any, Any, Any]:
    """Size, pixel values, truth and true mask (or None) of one manifest row."""
    image = load_rgb(row.image_path)
    truth, true_mask = _truth_masks(row)
    for name, mask in (("mask", truth), ("true mask", true_mask)):
        if mask is not None and mask.shape != image.shape[:2]:
            raise ValueError(
                f"image {row.image_path}: {name} shape {mask.shape} does not match the image's "
                f"{image.shape[:2]}"
            )
    return image.shape[:2], segmenter.preprocess([image])[0], truth, true_mask


def sweep_on_device(
    segmenter: Segmenter,
    manifest: pd.DataFrame,
    splits: Sequence[str] = ("val", "test"),
    prompts: Mapping[str, Sequence[str]] = PROMPTS,
    batch_size: int = 8,
    store: str | Path | None = None,
    progress: bool = True,
    thresholds: Sequence[float] = THRESHOLDS,
    num_workers: int | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sweep tables vs the labels and vs the true masks, counted on the model's device.

    Rows: `KEY_COLUMNS`, threshold, counts and scores (`counts_table`); probability maps are
    written under `store` (when given) by a background writer.
    """

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = segmenter.device
    workers = num_workers if num_workers is not None else max(1, default_workers(device))
    rows = manifest[manifest["split"].isin(splits)].reset_index(drop=True)
    keys: list[tuple[str, str, str, str]] = []
    true_keys: list[tuple[str, str, str, str]] = []
    counts: list[torch.Tensor] = []
    true_counts: list[torch.Tensor] = []
    writer = BackgroundWriter(threads=2, max_pending=256) if store is not None else None
    progress_bar = bar(total=len(rows), desc="evaluate", enabled=progress)
    try:
        for dataset, group in rows.groupby("dataset", sort=True):
            names = list(prompts[dataset])
            loaded = read_ahead(
                list(group.itertuples()), lambda r: _load_item(segmenter, r), workers=workers
            )
            chunk: list[tuple[Any, Any]] = []
            for row, item in loaded:
                if isinstance(item, Exception):
                    raise item
                chunk.append((row, item))
                if len(chunk) == batch_size:
                    _sweep_chunk(segmenter, chunk, dataset, names, thresholds, store, writer,
                                 (keys, counts), (true_keys, true_counts))
                    progress_bar.update(len(chunk))
                    chunk = []
            if chunk:
                _sweep_chunk(segmenter, chunk, dataset, names, thresholds, store, writer,
                             (keys, counts), (true_keys, true_counts))
                progress_bar.update(len(chunk))
    finally:
        progress_bar.close()
        if writer is not None:
            writer.close()
    if writer is not None and writer.failed:
        path, err = writer.failed[0]
        raise OSError(f"could not write probability map {path}: {err}") from err
    n = len(np.asarray(thresholds))

    def table(k: list, c: list[torch.Tensor]) -> pd.DataFrame:
        values = torch.cat(c).cpu().numpy() if c else np.zeros((0, n, 3), np.int64)
        return counts_table(k, values, thresholds)

    return table(keys, counts), table(true_keys, true_counts)


def _sweep_chunk(segmenter, chunk, dataset, names, thresholds, store, writer, out, true_out):
    """Counts (and stored maps) of one batch of loaded manifest rows."""
    maps = segmenter.probability_maps(
        None, names, sizes=[item[0] for _, item in chunk],
        pixel_values=torch.stack([item[1] for _, item in chunk]),
    )
    device = maps[0].device
    for (row, (_, _, truth, true_mask)), raw in zip(chunk, maps, strict=True):
        probs = as_stored(raw)
        ident = (image_id(row), dataset, row.split)
        record_keys = [(ident[0], dataset, prompt, row.split) for prompt in names]
        out[0].extend(record_keys)
        out[1].append(sweep_counts(probs, torch.from_numpy(truth).to(device), thresholds))
        if true_mask is not None:
            true_out[0].extend(record_keys)
            true_out[1].append(
                sweep_counts(probs, torch.from_numpy(true_mask).to(device), thresholds)
            )
        if writer is not None:
            quantised = quantise(raw).cpu().numpy()
            for prompt, q in zip(names, quantised, strict=True):
                path = probability_path(store, row.split, ident[0], prompt)
                writer.submit(path, write_probability, path, q)


def evaluation_key(
    key: str,
    manifest: pd.DataFrame,
    splits: Sequence[str],
    prompts: Mapping[str, Sequence[str]],
    thresholds: Sequence[float] = THRESHOLDS,
) -> dict[str, Any]:
    """What an evaluation store is computed from: the model (`key`), the rows of `splits`
    (files and labels), the prompts and the threshold grid."""
    columns = ["image_path", "mask_path", "true_mask_path", "split", "dataset", "mask_fraction"]
    rows = manifest[manifest["split"].isin(splits)]
    return {
        "model": key,
        "splits": list(splits),
        "prompts": {name: list(options) for name, options in sorted(prompts.items())},
        "thresholds": [float(t) for t in np.asarray(thresholds)],
        "rows": rows[[c for c in columns if c in rows.columns]].to_csv(index=False),
    }


def evaluate_model(
    segmenter: Segmenter,
    manifest: pd.DataFrame,
    store: str | Path,
    key: str,
    splits: Sequence[str] = ("val", "test"),
    prompts: Mapping[str, Sequence[str]] = PROMPTS,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sweep tables (vs the labels, and vs true masks where known), computed once per `key`.

    `key` identifies the model (e.g. the training run's fingerprint); a stored evaluation of
    the same key, rows, splits and prompts (`evaluation_key`) is read back instead of running
    the model again. `batch_size` images go through the model together (the profiles'
    `eval_batch_size`).
    """
    store = Path(store)
    wanted = evaluation_key(key, manifest, splits, prompts)
    with folder_lock(store):  # a second evaluation of the same store waits for this one
        if is_current(store, wanted):
            if progress:
                print(f"evaluation loaded from {shown(store)}: stored earlier for this model, "
                      "these images and prompts (cached)")
            return (pd.read_csv(store / SWEEP_FILE), pd.read_csv(store / TRUE_SWEEP_FILE))
        record_key(store, wanted, done=False)  # maps of an earlier evaluation are overwritten
        table, true_table = sweep_on_device(
            segmenter, manifest, splits, prompts, batch_size, store, progress
        )
        for frame, name in ((table, SWEEP_FILE), (true_table, TRUE_SWEEP_FILE)):
            with atomic_path(store / name) as tmp:
                frame.to_csv(tmp, index=False, compression="gzip")
        record_key(store, wanted)
        if progress:
            print(f"evaluated now and stored in {shown(store)}")
        return table, true_table
