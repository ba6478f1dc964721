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

One figure can flatter, so `sensitivity_forms` reports four (`FORMS`):

- **labelled**: the figure above (images whose label marks something);
- **all**: every image, so a false alarm under the wrong prompt on an empty wall counts
  (s = -1 there when the right prompt rightly marks nothing);
- **deployed**: each prompt's pixels thresholded at its *own* class's threshold, as `predict`
  does, over every image. Here a prompt-blind model is not 0 when the classes' thresholds
  differ: `deployed_blind` gives what a model returning the right prompt's probabilities for
  every prompt would score at these thresholds, the reference this form is read against;
- **on_object**: s computed from the predicted pixels that lie on the image's label (TP), over
  the labelled images: a model that marks the right object whatever the prompt scores 0 here,
  however little the wrong prompt marks elsewhere.

`wrong_prompt_localisation` says where the wrong prompt's mask lies: the share of its pixels
on the image's label. A high share means the model marks the right object for the wrong
prompt: it finds the object, but not because of the prompt.
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
FORMS = ("labelled", "all", "deployed", "on_object")


def _at_thresholds(
    table: pd.DataFrame,
    thresholds: Mapping[str, float],
    manifest: pd.DataFrame,
    split: str,
    deployed: bool = False,
) -> pd.DataFrame:
    """Rows of `split` at the threshold of each image's class (with `deployed`: of each
    prompt's class, as `predict` thresholds), with prompt class and pixels."""
    classes = {p: class_of_prompt(p, PROMPTS) for p in table["prompt"].unique()}
    table = table.assign(prompt_class=table["prompt"].map(classes))
    by = ("prompt_class",) if deployed else ("dataset",)
    rows = apply_thresholds(table, thresholds, split=split, by=by)
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


def _contrast(right: np.ndarray, wrong: np.ndarray) -> np.ndarray:
    """(R - W) / (R + W), and 0 where both are 0."""
    total = right + wrong
    return np.divide(right - wrong, total, out=np.zeros_like(total, dtype=float), where=total > 0)


def _per_image(rows: pd.DataFrame) -> pd.DataFrame:
    """Per image, from rows at some thresholds: mean predicted and on-label pixels under the
    right and the wrong class's prompts, the sensitivity of each, and whether it is labelled."""
    rows = rows.assign(right=rows["prompt_class"] == rows["dataset"])
    keys = ["image_id", "dataset", "right"]
    mean = rows.groupby(keys)[["predicted", "tp"]].mean().unstack("right")
    if True not in mean["predicted"].columns or False not in mean["predicted"].columns:
        raise ValueError("the table needs rows for the right and the wrong class's prompts")
    mean = mean.dropna()
    label = (rows["tp"] + rows["fn"]).groupby([rows["image_id"], rows["dataset"]]).max()
    right, wrong = mean["predicted"][True].to_numpy(), mean["predicted"][False].to_numpy()
    right_on, wrong_on = mean["tp"][True].to_numpy(), mean["tp"][False].to_numpy()
    return pd.DataFrame(
        {"right_pixels": right, "wrong_pixels": wrong, "sensitivity": _contrast(right, wrong),
         "right_on_label": right_on, "wrong_on_label": wrong_on,
         "on_object": _contrast(right_on, wrong_on),
         "labelled": label.reindex(mean.index).to_numpy() > 0},
        index=mean.index,
    ).reset_index()


def per_image_sensitivity(
    table: pd.DataFrame,
    thresholds: Mapping[str, float],
    manifest: pd.DataFrame,
    split: str = "test",
    deployed: bool = False,
) -> pd.DataFrame:
    """Per image: predicted pixels under right and wrong prompts, s = (R - W) / (R + W), the
    same from the pixels on the label (`on_object`), and whether the label marks something.
    With `deployed`, each prompt is thresholded at its own class's threshold."""
    return _per_image(_at_thresholds(table, thresholds, manifest, split, deployed=deployed))


def _means(per_image: pd.DataFrame, column: str) -> dict[str, float]:
    """Mean of `column` per image class and over all images ("all")."""
    if per_image.empty:
        return {"all": float("nan")}
    out = {str(k): float(v) for k, v in per_image.groupby("dataset")[column].mean().items()}
    out["all"] = float(per_image[column].mean())
    return out


def _labelled(per_image: pd.DataFrame) -> pd.DataFrame:
    """The labelled images of each class; a class without any keeps all its images."""
    kept = [
        group[group["labelled"]] if group["labelled"].any() else group
        for _, group in per_image.groupby("dataset")
    ]
    return pd.concat(kept) if kept else per_image


def _blind_deployed(
    table: pd.DataFrame, thresholds: Mapping[str, float], split: str
) -> pd.DataFrame:
    """Per image, the deployed sensitivity of a prompt-blind copy of the model: every prompt
    gets the right prompt's probabilities, thresholded at the prompt's own class's threshold."""
    classes = {p: class_of_prompt(p, PROMPTS) for p in table["prompt"].unique()}
    rows = table[(table["split"] == split) & (table["prompt"].map(classes) == table["dataset"])]
    # one copy of the right-prompt rows per prompt class, as if that class's prompt gave them
    copies = [rows.assign(prompt_class=cls) for cls in sorted(set(classes.values()))]
    both = pd.concat(copies, ignore_index=True)
    picked = apply_thresholds(both, thresholds, split=split, by=("prompt_class",))
    picked["predicted"] = picked["tp"] + picked["fp"]
    return _per_image(picked)


def sensitivity_forms(
    table: pd.DataFrame,
    thresholds: Mapping[str, float],
    manifest: pd.DataFrame,
    split: str = "test",
) -> pd.DataFrame:
    """Prompt sensitivity in each of `FORMS` (module docstring), and `deployed_blind`, the
    deployed form's value for a prompt-blind copy of the model: a row per form, columns per
    image class and "all" (means over the images the form counts) and `images`."""
    same = per_image_sensitivity(table, thresholds, manifest, split)
    deployed = per_image_sensitivity(table, thresholds, manifest, split, deployed=True)
    labelled = _labelled(same)
    parts = {
        "labelled": (labelled, "sensitivity"),
        "all": (same, "sensitivity"),
        "deployed": (deployed, "sensitivity"),
        "deployed_blind": (_blind_deployed(table, thresholds, split), "sensitivity"),
        "on_object": (labelled, "on_object"),
    }
    rows = [
        {"form": form, **_means(frame, column), "images": len(frame)}
        for form, (frame, column) in parts.items()
    ]
    return pd.DataFrame(rows).set_index("form")


def wrong_prompt_localisation(
    table: pd.DataFrame,
    thresholds: Mapping[str, float],
    manifest: pd.DataFrame,
    split: str = "test",
) -> dict[str, float]:
    """Per image class and "all": the share of the wrong prompts' predicted pixels that lie on
    the image's label (pooled over images, at the image class's threshold); NaN where the wrong
    prompts mark nothing. Near 1: the wrong prompt marks the right object (not prompt-aware)."""
    per_image = per_image_sensitivity(table, thresholds, manifest, split)

    def share(frame: pd.DataFrame) -> float:
        marked = frame["wrong_pixels"].sum()
        return float(frame["wrong_on_label"].sum() / marked) if marked > 0 else float("nan")

    out = {str(cls): share(group) for cls, group in per_image.groupby("dataset")}
    out["all"] = share(per_image)
    return out


def prompt_sensitivity(
    table: pd.DataFrame,
    thresholds: Mapping[str, float],
    manifest: pd.DataFrame,
    split: str = "test",
) -> dict[str, float]:
    """Mean sensitivity per image class and over all of them ("all"), over the images whose
    label marks something (module docstring)."""
    per_image = per_image_sensitivity(table, thresholds, manifest, split)
    return _means(_labelled(per_image), "sensitivity")


def describe_by_class(sensitivity: Mapping[str, float]) -> str:
    """The reading of each image class, or one reading when every class reads the same."""
    per_class = {k: describe_sensitivity(v) for k, v in sensitivity.items() if k != "all"}
    if len(set(per_class.values())) == 1:
        return next(iter(per_class.values()))
    names = {"cracks": "crack images", "taping": "taping images"}
    return "; ".join(
        f"{names.get(cls, cls + ' images')}: {reading}" for cls, reading in per_class.items()
    )


AWARE_FROM = 0.5  # a sensitivity at least this: prompt-aware (the right prompt marks 3x the wrong)


def sensitivity_band(value: float) -> tuple[str, str]:
    """The course's one reading of a sensitivity figure, as (name, criterion): inverted,
    prompt-blind (within `BLIND_BELOW` of 0 either way: -0.001 is noise, not an inverted
    model), partly prompt-aware, or prompt-aware (at least `AWARE_FROM`)."""
    if value <= -BLIND_BELOW:
        return "inverted", f"at most -{BLIND_BELOW:g}"
    if value < BLIND_BELOW:
        return "prompt-blind", f"within {BLIND_BELOW:g} of 0"
    if value < AWARE_FROM:
        return "partly prompt-aware", f"{BLIND_BELOW:g} to {AWARE_FROM:g}"
    return "prompt-aware", f"at least {AWARE_FROM:g}"


def describe_sensitivity(value: float) -> str:
    """`sensitivity_band` in plain words, with what its criterion means."""
    name, criterion = sensitivity_band(value)
    meaning = {
        "inverted": "the wrong prompt marks more than the right one",
        "prompt-blind": "the prompt barely changes the mask",
        "partly prompt-aware": "at s = 0.5 an image's right prompt marks 3 times the wrong one's "
        "pixels",
        "prompt-aware": "at s = 0.5 an image's right prompt marks 3 times the wrong one's pixels: "
        "the matrix says how much the wrong prompt still marks",
    }[name]
    return f"{name} ({criterion}): {meaning}"


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
