"""One model pass over evaluation images: every prompt of each image's class, full resolution.

`evaluate_model` runs the model once per image (the vision tower once, the decoder once per
prompt), upsamples the logits to the image's own size, and turns each probability map into
TP/FP/FN counts at every threshold of the sweep grid right away (`sweep_counts`). Nothing is
re-run per threshold. The probability maps are also stored as 8-bit PNGs (probability x 255)
so galleries and post-processing can use them later without the model.

Because every test image is scored under every prompt of its class, per-prompt tables compare
prompts on the same images (a paired comparison).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd

from helpers.data.images import load_rgb
from helpers.data.prompts import PROMPTS, prompt_slug
from helpers.evaluate.sweep import THRESHOLDS, sweep_table
from helpers.io import atomic_path, read_json, read_mask, write_json

SWEEP_FILE = "sweep.csv.gz"
TRUE_SWEEP_FILE = "sweep_true_masks.csv.gz"
META_FILE = "evaluation.json"


def probability_path(store: str | Path, split: str, image_id: str, prompt: str) -> Path:
    """Where the probability map of one image and prompt is stored."""
    return Path(store) / split / f"{image_id}__{prompt_slug(prompt)}.png"


def write_probability(path: Path, probs: np.ndarray) -> None:
    """Store probabilities as an 8-bit PNG (value = round(255 p)), atomically."""
    q = np.clip(np.rint(probs * 255.0), 0, 255).astype(np.uint8)
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


def prediction_records(
    segmenter,
    manifest: pd.DataFrame,
    splits: Sequence[str] = ("val", "test"),
    prompts: Mapping[str, Sequence[str]] = PROMPTS,
    batch_size: int = 8,
    store: str | Path | None = None,
    progress: bool = True,
) -> Iterator[dict[str, Any]]:
    """Per image and prompt of its class: ids, full-resolution probs, truth (and true mask)."""
    from tqdm.auto import tqdm

    rows = manifest[manifest["split"].isin(splits)].reset_index(drop=True)
    bar = tqdm(total=len(rows), desc="evaluate", disable=not progress)
    for dataset, group in rows.groupby("dataset", sort=True):
        names = list(prompts[dataset])
        items = list(group.itertuples())
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            images = [load_rgb(r.image_path) for r in chunk]
            for r, probs in zip(chunk, segmenter.probabilities(images, names), strict=True):
                truth = read_mask(r.mask_path) > 0
                true_path = str(getattr(r, "true_mask_path", "") or "")
                true_mask = read_mask(true_path) > 0 if true_path and true_path != "nan" else None
                for prompt, p in zip(names, probs, strict=True):
                    if store is not None:
                        write_probability(probability_path(store, r.split, image_id(r), prompt), p)
                    yield {
                        "image_id": image_id(r),
                        "dataset": dataset,
                        "prompt": prompt,
                        "split": r.split,
                        "probs": p,
                        "truth": truth,
                        "true_mask": true_mask,
                    }
            bar.update(len(chunk))
    bar.close()


def evaluate_model(
    segmenter,
    manifest: pd.DataFrame,
    store: str | Path,
    key: str,
    splits: Sequence[str] = ("val", "test"),
    prompts: Mapping[str, Sequence[str]] = PROMPTS,
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sweep tables (vs the labels, and vs true masks where known), computed once per `key`.

    `key` identifies the model and data (e.g. the training run's fingerprint); a stored
    evaluation with the same key is read back instead of running the model again.
    """
    store = Path(store)
    meta_path = store / META_FILE
    if meta_path.is_file() and read_json(meta_path).get("key") == key:
        return (pd.read_csv(store / SWEEP_FILE), pd.read_csv(store / TRUE_SWEEP_FILE))
    true_records: list[dict[str, Any]] = []

    def labelled() -> Iterator[dict[str, Any]]:
        for rec in prediction_records(
            segmenter, manifest, splits, prompts, batch_size, store, progress
        ):
            if rec["true_mask"] is not None:
                true_records.append({**rec, "truth": rec["true_mask"]})
                true_records[-1].pop("true_mask")
            yield rec

    table = sweep_table(labelled(), THRESHOLDS)
    true_table = sweep_table(iter(true_records), THRESHOLDS)
    for frame, name in ((table, SWEEP_FILE), (true_table, TRUE_SWEEP_FILE)):
        with atomic_path(store / name) as tmp:
            frame.to_csv(tmp, index=False, compression="gzip")
    write_json(
        meta_path,
        {"key": key, "splits": list(splits), "images": int(manifest["split"].isin(splits).sum())},
    )
    return table, true_table
