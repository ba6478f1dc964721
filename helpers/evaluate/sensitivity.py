"""Does the model listen to the prompt? Cross-prompt scores and one prompt-sensitivity figure.

A prompted model is only useful if the prompt changes the answer. Every evaluated image is
therefore also scored with the prompts of the *other* class ("segment taping area" on a crack
photo). From those rows of a sweep table (`helpers.evaluate.predictions`):

- the **cross-prompt matrix**: per image class (rows) and prompt class (columns), the mean IoU
  against the image's label and the mean foreground share (predicted pixels / image pixels);
- the **prompt sensitivity** of a model: per image, with R and W the predicted pixels under the
  right and the wrong class's prompts (averaged over each class's prompts),
  s = (R - W) / (R + W), and 0 when both are empty; the figure is the mean of s over the
  images whose label marks something. It is 1 when only the right prompt marks anything, 0 for
  a prompt-blind model (the same pixels whatever the prompt, or nothing at all), and negative
  when the wrong prompt marks more. Images with an empty label (a crack-free wall) are left
  out: there, marking nothing under either prompt is the right answer and says nothing about
  the prompt. A class without any labelled image falls back to all its images.

Every prompt on an image is thresholded at the same threshold, the one chosen on validation
for the image's class, so that the prompt is the only thing that changes: a model that returns
the same probabilities whatever the prompt scores exactly 0.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.data.prompts import PROMPTS, class_of_prompt
from helpers.evaluate.metrics import mean_scores
from helpers.evaluate.sweep import apply_thresholds

BLIND_BELOW = 0.1  # a sensitivity under this: the model (nearly) ignores the prompt


def _at_thresholds(
    table: pd.DataFrame, thresholds: Mapping[str, float], manifest: pd.DataFrame, split: str
) -> pd.DataFrame:
    """Rows of `split` at the threshold of each image's class, with prompt class and pixels."""
    rows = apply_thresholds(table, thresholds, split=split)
    classes = {p: class_of_prompt(p, PROMPTS) for p in rows["prompt"].unique()}
    rows["prompt_class"] = rows["prompt"].map(classes)
    ids = manifest.assign(image_id=[Path(str(p)).stem for p in manifest["image_path"]])
    pixels = (ids["width"].astype(float) * ids["height"].astype(float)).groupby(ids["image_id"])
    rows["pixels"] = rows["image_id"].map(pixels.first())
    if rows["pixels"].isna().any():
        missing = rows.loc[rows["pixels"].isna(), "image_id"].iloc[0]
        raise KeyError(f"image {missing!r} of the table is not in the manifest")
    rows["predicted"] = rows["tp"] + rows["fp"]
    rows["foreground_share"] = rows["predicted"] / rows["pixels"]
    return rows


def cross_prompt_matrix(
    table: pd.DataFrame,
    thresholds: Mapping[str, float],
    manifest: pd.DataFrame,
    split: str = "test",
) -> pd.DataFrame:
    """Mean IoU (against the image's label) and foreground share per image and prompt class.

    Rows: (image class, prompt class, right prompt?); columns images, pairs, iou,
    foreground_share. Needs rows for both classes' prompts on every image.
    """
    rows = _at_thresholds(table, thresholds, manifest, split)
    keys = ["dataset", "prompt_class"]
    out = mean_scores(rows, keys)[[*keys, "images", "pairs", "iou"]]
    share = rows.groupby(keys, sort=True)["foreground_share"].mean().reset_index(drop=True)
    out = out.assign(foreground_share=share).rename(columns={"dataset": "image_class"})
    out.insert(2, "right_prompt", out["image_class"] == out["prompt_class"])
    return out


def per_image_sensitivity(
    table: pd.DataFrame,
    thresholds: Mapping[str, float],
    manifest: pd.DataFrame,
    split: str = "test",
) -> pd.DataFrame:
    """Per image: predicted pixels under right and wrong prompts, and s = (R - W) / (R + W)."""
    rows = _at_thresholds(table, thresholds, manifest, split)
    rows["right"] = rows["prompt_class"] == rows["dataset"]
    mean = rows.groupby(["image_id", "dataset", "right"])["predicted"].mean().unstack("right")
    if True not in mean.columns or False not in mean.columns:
        raise ValueError("the table needs rows for the right and the wrong class's prompts")
    mean = mean.dropna()
    label = (rows["tp"] + rows["fn"]).groupby([rows["image_id"], rows["dataset"]]).max()
    right, wrong = mean[True].to_numpy(), mean[False].to_numpy()
    total = right + wrong
    s = np.divide(right - wrong, total, out=np.zeros_like(total, dtype=float), where=total > 0)
    return pd.DataFrame(
        {"right_pixels": right, "wrong_pixels": wrong, "sensitivity": s,
         "labelled": label.reindex(mean.index).to_numpy() > 0},
        index=mean.index,
    ).reset_index()


def prompt_sensitivity(
    table: pd.DataFrame,
    thresholds: Mapping[str, float],
    manifest: pd.DataFrame,
    split: str = "test",
) -> dict[str, float]:
    """Mean sensitivity per image class and over all of them ("all"), over the images whose
    label marks something (module docstring)."""
    per_image = per_image_sensitivity(table, thresholds, manifest, split)
    kept = [
        group[group["labelled"]] if group["labelled"].any() else group
        for _, group in per_image.groupby("dataset")
    ]
    if not kept:
        return {"all": float("nan")}
    scored = pd.concat(kept)
    out = {str(k): float(v) for k, v in scored.groupby("dataset")["sensitivity"].mean().items()}
    out["all"] = float(scored["sensitivity"].mean())
    return out


def describe_by_class(sensitivity: Mapping[str, float]) -> str:
    """The reading of each image class, or one reading when every class reads the same."""
    per_class = {k: describe_sensitivity(v) for k, v in sensitivity.items() if k != "all"}
    if len(set(per_class.values())) == 1:
        return next(iter(per_class.values()))
    names = {"cracks": "crack images", "taping": "taping images"}
    return "; ".join(
        f"{names.get(cls, cls + ' images')}: {reading}" for cls, reading in per_class.items()
    )


def describe_sensitivity(value: float) -> str:
    """A plain-words reading of a sensitivity figure."""
    if value < 0:
        return "inverted: the wrong prompt marks more than the right one"
    if value < BLIND_BELOW:
        return "prompt-blind: the prompt barely changes the mask"
    if value < 0.5:
        return "partly prompt-aware: the wrong prompt still marks much"
    return "prompt-aware: the wrong prompt marks little"


def other_class_prompts(prompts: Mapping[str, list[str]] = PROMPTS) -> dict[str, list[str]]:
    """For each class, every prompt of the other classes (the "wrong" prompts)."""
    return {
        cls: [p for other, options in prompts.items() if other != cls for p in options]
        for cls in prompts
    }


def cross_prompt_scores(
    segmenter,
    manifest: pd.DataFrame,
    store: str | Path,
    key: str,
    right_table: pd.DataFrame,
    thresholds: Mapping[str, float],
    split: str = "test",
    batch_size: int = 8,
    progress: bool = True,
) -> tuple[pd.DataFrame, dict[str, float]]:
    """Score `split` with the other class's prompts too; (cross-prompt matrix, sensitivity).

    `right_table` is the model's evaluation with its own class's prompts (`evaluate_model`);
    the wrong-prompt pass is stored beside it in `<store>/other-class-prompts-<split>` and, like
    every evaluation, computed once per `key`.
    """
    from helpers.evaluate.predictions import evaluate_model

    wrong, _ = evaluate_model(
        segmenter, manifest, Path(store) / f"other-class-prompts-{split}",
        key=f"{key}-other-class-{split}",
        splits=(split,), prompts=other_class_prompts(), batch_size=batch_size, progress=progress,
    )
    both = pd.concat([right_table, wrong], ignore_index=True)
    return (
        cross_prompt_matrix(both, thresholds, manifest, split),
        prompt_sensitivity(both, thresholds, manifest, split),
    )


def prompt_embedding_similarity(model, tokenizer) -> dict[str, float]:
    """Mean cosine similarity of the text tower's embeddings of the course prompts: between
    prompts of the same class ("within") and of different classes ("across").

    The decoder tells prompts apart only through these embeddings (they condition it by FiLM),
    so where "across" is as high as "within" a frozen text tower leaves it nothing to go on.
    """
    import torch

    from helpers.model.forward import text_embeddings

    classes = [c for c, prompts in PROMPTS.items() for _ in prompts]
    tokens = tokenizer([p for c in PROMPTS for p in PROMPTS[c]], padding=True, return_tensors="pt")
    with torch.no_grad():
        emb = text_embeddings(model, tokens["input_ids"], tokens["attention_mask"])
    emb = torch.nn.functional.normalize(emb.float(), dim=-1)
    cos = (emb @ emb.T).cpu().numpy()
    same = np.equal.outer(classes, classes)
    off_diagonal = ~np.eye(len(classes), dtype=bool)
    return {
        "within": float(cos[same & off_diagonal].mean()),
        "across": float(cos[~same].mean()),
    }
