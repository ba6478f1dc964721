"""The prompt switch of notebook 04: one model, two prompts, read from measured numbers.

- `distinct_photos`: the images a figure shows, one per source photo (`group_id`), so two
  panels never show augmented copies of the same wall;
- `switch_figure`: per photo its label and its mask under each prompt, with each panel's
  foreground share and IoU in its title (`switch_stats` holds them);
- `prompt_switch_scores`: the cross-prompt matrix, the prompt sensitivity in its four forms
  (`helpers.evaluate.sensitivity.sensitivity_forms`) and where the wrong prompt's pixels lie,
  all from one table of right- and wrong-prompt scores;
- `figure_reading` and `switch_reading`: the sentences a student reads beside them, written
  from those numbers with their cut-offs, so they never claim more than the numbers show.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.core.numbers import fixed
from helpers.data.prompts import class_images
from helpers.evaluate.sensitivity import BLIND_BELOW, sensitivity_band

LABEL_COLOUR = (40, 200, 80)
# Cut-offs of the readings: the wrong prompt's foreground as a share of the right prompt's...
RATIO_WORDS = ((0.1, "almost nothing"), (0.4, "a small fraction"), (0.6, "about half"),
               (0.9, "most"), (math.inf, "nearly as much or more"))
ON_LABEL_HALF = 0.5  # ...and where the wrong prompt's pixels lie: on the label or elsewhere
PROMPT_ADDS = 0.1  # deployed sensitivity above a prompt-blind copy's by more: the prompt works
FEW_IMAGES, MOST_PIXELS = 0.25, 0.5  # at most this share of images holding at least this share


def distinct_photos(
    manifest: pd.DataFrame, split: str, per_class: int = 2,
    classes: Sequence[str] = ("cracks", "taping"),
) -> pd.DataFrame:
    """Per class, `per_class` images of `split` from different source photos: each photo's
    image with the largest labelled area, then the photos with the largest such areas."""
    rows = manifest[manifest["split"] == split]
    picked = []
    for cls in classes:
        of_class = rows[rows["dataset"] == cls].sort_values("mask_fraction", ascending=False)
        one_per_photo = of_class.drop_duplicates("group_id")  # first: largest label per photo
        picked.append(one_per_photo.head(per_class))
    out = pd.concat(picked)
    if out["group_id"].duplicated().any():
        raise ValueError("two picked images come from the same photo")
    return out


def switch_stats(
    segmenter, rows: pd.DataFrame, prompts: Sequence[str], thresholds: Mapping[str, float]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per (image, prompt): the predicted foreground share and IoU with the label, each
    prompt at its own class's threshold (as `predict` does); and the images, labels and masks
    (`drawn`) for `switch_figure`."""
    from helpers.core.io import read_mask
    from helpers.data.images import load_rgb
    from helpers.data.prompts import class_of_prompt
    from helpers.evaluate.metrics import iou
    from helpers.inference.mask_files import PredictSettings

    settings = PredictSettings(threshold=dict(thresholds), source="thresholds chosen on val")
    records, drawn = [], {}
    for r in rows.itertuples():
        image, label = load_rgb(r.image_path), read_mask(r.mask_path) > 0
        masks = {p: m > 0 for p, m in segmenter.masks(image, list(prompts), settings).items()}
        drawn[Path(r.image_path).name] = (r.dataset, image, label, masks)
        for prompt, mask in masks.items():
            cls = class_of_prompt(prompt)
            records.append({
                "image": Path(r.image_path).name, "photo": r.group_id, "image_class": r.dataset,
                "prompt": prompt, "prompt_class": cls, "right_prompt": cls == r.dataset,
                "threshold": float(thresholds[cls]), "label_share": float(label.mean()),
                "foreground_share": float(mask.mean()), "iou": iou(mask, label),
            })
    return pd.DataFrame(records), drawn


def switch_figure(stats: pd.DataFrame, drawn: Mapping[str, Any], split: str = "validation"):
    """Per photo a row: the photo, its label, and its mask under each prompt (titles carry the
    threshold, foreground share and IoU with the label)."""
    from helpers.course.viz import CLASS_COLOURS, image_grid, overlay

    panels, titles = [], []
    for name, (cls, image, label, masks) in drawn.items():
        panels += [image, overlay(image, label, LABEL_COLOUR)]
        titles += [f"photo ({cls})", f"label: {label.mean():.2%} of the image"]
        for prompt, mask in masks.items():
            row = stats[(stats["image"] == name) & (stats["prompt"] == prompt)].iloc[0]
            panels.append(overlay(image, mask, CLASS_COLOURS[row["prompt_class"]]))
            titles.append(f'"{prompt}" (t={row["threshold"]:.2f})\n'
                          f'{row["foreground_share"]:.2%} marked, IoU {row["iou"]:.2f}')
    ncols = 2 + len(next(iter(drawn.values()))[3])
    return image_grid(panels, titles, ncols=ncols, size=2.8, suptitle=(
        f"one model, two prompts: {len(drawn)} {split} photos (one image per photo), each "
        "prompt at its class's threshold chosen on validation"))


def ratio_words(ratio: float) -> str:
    """The reading of a wrong-over-right foreground ratio by `RATIO_WORDS`' cut-offs."""
    return next(words for cut, words in RATIO_WORDS if ratio < cut)


def figure_reading(stats: pd.DataFrame) -> list[str]:
    """Per image class of the figure: mean foreground and IoU under the right and the wrong
    prompt, and on how many photos the right prompt marks more."""
    out = []
    for cls, rows in stats.groupby("image_class", sort=False):
        right, wrong = rows[rows["right_prompt"]], rows[~rows["right_prompt"]]
        more = sum(
            r.foreground_share > w.foreground_share
            for r, w in zip(right.itertuples(), wrong.itertuples(), strict=True)
        )
        out.append(
            f"In the figure's {len(right)} {class_images(cls).replace('images', 'photos')} the "
            "right prompt marks "
            f"{right['foreground_share'].mean():.2%} of the image on average (IoU "
            f"{right['iou'].mean():.2f} with the label, which covers "
            f"{right['label_share'].mean():.2%}), the wrong prompt "
            f"{wrong['foreground_share'].mean():.2%}; the right prompt marks more on {more} of "
            f"the {len(right)}."
        )
    photos = stats["photo"].nunique()
    return [*out, f"{photos} photos illustrate; the matrix below measures every validation image."]


@dataclass
class PromptSwitch:
    """Every prompt-switch number of one model on one split."""

    table: pd.DataFrame  # right- and wrong-prompt rows of the sweep table
    matrix: pd.DataFrame  # helpers.evaluate.sensitivity.cross_prompt_matrix
    sensitivity: dict[str, float]  # the "labelled" form, per class and "all"
    forms: pd.DataFrame  # sensitivity_forms: a row per form (and deployed_blind)
    on_label: dict[str, float]  # wrong_prompt_localisation, classes where it is defined
    excess: pd.DataFrame  # wrong_prompt_excess: where the wrong prompt marks more

    def ratios(self) -> dict[str, float]:
        """Per image class: the wrong prompt's mean foreground share over the right one's."""
        return foreground_ratios(self.matrix.to_dict("records"))


def prompt_switch_scores(
    segmenter, manifest: pd.DataFrame, store: str | Path, key: str, table: pd.DataFrame,
    thresholds: Mapping[str, float], split: str = "val", batch_size: int = 8,
    progress: bool = True,
) -> PromptSwitch:
    """Score `split` with the other class's prompts too (stored beside `table`, as
    `cross_prompt_scores` stores it) and measure the switch every way the course reads it."""
    from helpers.evaluate.predictions import evaluate_model
    from helpers.evaluate.sensitivity import (
        cross_prompt_matrix,
        other_class_prompts,
        per_image_sensitivity,
        prompt_sensitivity,
        sensitivity_forms,
        wrong_prompt_localisation,
    )

    wrong, _ = evaluate_model(
        segmenter, manifest, Path(store) / f"other-class-prompts-{split}",
        key=f"{key}-other-class-{split}", splits=(split,), prompts=other_class_prompts(),
        batch_size=batch_size, progress=progress,
    )
    both = pd.concat([table, wrong], ignore_index=True)
    located = wrong_prompt_localisation(both, thresholds, manifest, split)
    return PromptSwitch(
        table=both,
        matrix=cross_prompt_matrix(both, thresholds, manifest, split),
        sensitivity=prompt_sensitivity(both, thresholds, manifest, split),
        forms=sensitivity_forms(both, thresholds, manifest, split),
        on_label={k: v for k, v in located.items() if math.isfinite(v)},
        excess=wrong_prompt_excess(per_image_sensitivity(both, thresholds, manifest, split)),
    )


def wrong_prompt_excess(per_image: pd.DataFrame) -> pd.DataFrame:
    """Per image class (rows of `per_image_sensitivity`): the images, those on which the wrong
    prompt marks more pixels than the right one, and their share of every pixel the wrong
    prompt marks on that class (0 where it marks nothing). A few images holding most of the
    wrong prompt's pixels is how a high mean sensitivity and a large mean foreground share of
    the wrong prompt go together."""
    rows = []
    for cls, group in per_image.groupby("dataset", sort=False):
        more = group["wrong_pixels"] > group["right_pixels"]
        total = float(group["wrong_pixels"].sum())
        rows.append({
            "image_class": str(cls), "images": len(group), "wrong_marks_more": int(more.sum()),
            "their_share_of_wrong_pixels": (
                float(group.loc[more, "wrong_pixels"].sum()) / total if total > 0 else 0.0),
        })
    return pd.DataFrame(rows)


def foreground_ratios(matrix: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Per image class of a cross-prompt matrix (records): wrong-prompt over right-prompt mean
    foreground share (classes whose right prompt marks nothing are left out)."""
    share = {(r["image_class"], bool(r["right_prompt"])): r["foreground_share"] for r in matrix}
    return {
        cls: share[(cls, False)] / share[(cls, True)]
        for cls, right in share if right and share[(cls, True)] > 0 and (cls, False) in share
    }


def _finite(row: Mapping[str, Any] | None, key: str) -> float | None:
    value = (row or {}).get(key)
    return None if value is None or not math.isfinite(value) else float(value)


def _classes(row: Mapping[str, Any]) -> list[str]:
    """The image classes of a forms row (every key but the form, "all" and the count)."""
    return [k for k in row if k not in ("form", "all", "images") and _finite(row, k) is not None]


def _sensitivity_words(value: float) -> str:
    name, criterion = sensitivity_band(value)
    return f"{name} ({criterion})"


def _matrix_sentence(right: Mapping[str, Any], wrong: Mapping[str, Any], ratio: float | None,
                     where: str) -> str:
    if ratio is None:
        return (f"On {where} the right prompt marks nothing at these thresholds; the wrong "
                f"prompt marks {wrong['foreground_share']:.4f} of the image.")
    return (
        f"On {where} (every prompt of each class, at the image class's threshold chosen on "
        f"validation, full resolution) the right prompt marks "
        f"{right['foreground_share']:.4f} of the image on average (IoU with the label "
        f"{right['iou']:.3f}) and the wrong prompt {wrong['foreground_share']:.4f} "
        f"(IoU {wrong['iou']:.3f}): the wrong prompt "
        f"{'still ' if ratio >= RATIO_WORDS[0][0] else ''}marks {ratio_words(ratio)} "
        f"({ratio:.3f} times as much; cut-offs "
        f"{', '.join(f'{c:g}' for c, _ in RATIO_WORDS[:-1])})."
    )


def _forms_sentences(by_form: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The four sensitivity forms, per image class, with their reference points."""
    out = []
    labelled, every = by_form.get("labelled"), _finite(by_form.get("all"), "all")
    if labelled is not None and _finite(labelled, "all") is not None:
        per_class = "; ".join(
            f"{class_images(c)} {fixed(labelled[c])}, {_sensitivity_words(labelled[c])}"
            for c in _classes(labelled)
        )
        out.append(
            f"Prompt sensitivity s = (R - W) / (R + W) per image, averaged over the labelled "
            f"images: {fixed(labelled['all'])} ({per_class})"
            + (f"; over all images, empty walls included, {fixed(every)}" if every is not None
               else "")
            + ". One image at s = 0.5 has a wrong-prompt mask a third the size of the right "
            "one's; a mean weighs every image alike, so it can sit far from the ratio of the "
            "matrix's means."
        )
    deployed, blind = by_form.get("deployed"), by_form.get("deployed_blind")
    if deployed is not None and blind is not None:
        parts = []
        for c in _classes(deployed):
            if _finite(blind, c) is None:
                continue
            gain = deployed[c] - blind[c]
            verdict = ("the prompt adds to what the thresholds do" if gain > PROMPT_ADDS
                       else "no more than the thresholds alone give")
            parts.append(
                f"{class_images(c)} {fixed(deployed[c])} against {fixed(blind[c])}: {verdict}")
        if parts:
            out.append(
                "Deployed (each prompt at its own class's threshold, as predict runs), against "
                "a prompt-blind copy at the same thresholds: " + "; ".join(parts)
                + f" (cut-off {PROMPT_ADDS:g} above the blind copy)."
            )
    on_object = by_form.get("on_object")
    if on_object is not None and _classes(on_object):
        out.append(
            "Counted on the label's pixels only (on_object): " + "; ".join(
                f"{class_images(c)} {fixed(on_object[c])}, {_sensitivity_words(on_object[c])}"
                for c in _classes(on_object)
            ) + "."
        )
    return out


def _excess_sentence(row: Mapping[str, Any]) -> str:
    k, n, share = row["wrong_marks_more"], row["images"], row["their_share_of_wrong_pixels"]
    if k == 0:
        return f"The wrong prompt marks more than the right one on none of the {n} images."
    few = k <= n * FEW_IMAGES and share >= MOST_PIXELS
    return (
        f"The wrong prompt marks more than the right one on {k} of the {n} images, which hold "
        f"{share:.3f} of every pixel it marks there: "
        + ("a few images carry its mean (at most a quarter of the images, at least half of the "
           "pixels)" if few else "its pixels are not confined to a few images")
        + "."
    )


def switch_reading(
    matrix: Sequence[Mapping[str, Any]],
    forms: Sequence[Mapping[str, Any]],
    on_label: Mapping[str, float],
    ratios: Mapping[str, float],
    split: str = "validation",
    excess: Sequence[Mapping[str, Any]] = (),
) -> list[str]:
    """The prompt switch in sentences: per image class the matrix's foreground under each
    prompt, the four sensitivity forms with their reference points, and where the wrong
    prompt's pixels lie. Every number is one of the arguments."""
    out = []
    share = {(r["image_class"], bool(r["right_prompt"])): r for r in matrix}
    excess_of = {r["image_class"]: r for r in excess}
    for cls in dict.fromkeys(r["image_class"] for r in matrix):
        if (cls, False) in share and (cls, True) in share:
            sentence = _matrix_sentence(share[(cls, True)], share[(cls, False)],
                                        ratios.get(cls), f"{split} {class_images(cls)}")
            if cls in excess_of:
                sentence += " " + _excess_sentence(excess_of[cls])
            out.append(sentence)
    out += _forms_sentences({r["form"]: r for r in forms})
    for cls, value in on_label.items():
        if cls == "all":
            continue
        little = ratios.get(cls, 1.0) < RATIO_WORDS[0][0]
        if value >= ON_LABEL_HALF:
            where = ("on the label: the little it marks is the object itself" if little
                     else "on the label: it finds the object whatever the prompt")
        else:
            where = "mostly off the label: false alarms elsewhere"
        out.append(
            f"Of the pixels the wrong prompt marks on {class_images(cls)}, {value:.3f} lie on the "
            f"image's label: {where} (cut-off {ON_LABEL_HALF:g})."
        )
    return out


def reading_cut_offs() -> dict[str, Any]:
    """Every cut-off the readings of notebook 04 use, to record beside its numbers."""
    from helpers.course.empty_baseline import EMPTY_MARGIN

    return {
        "wrong_to_right_ratio": [cut for cut, _ in RATIO_WORDS[:-1]],
        "wrong_on_label": ON_LABEL_HALF,
        "prompt_adds_over_blind": PROMPT_ADDS,
        "blind_below": BLIND_BELOW,
        "empty_margin": EMPTY_MARGIN,
        "few_images": FEW_IMAGES,
        "most_pixels": MOST_PIXELS,
    }


def negative_pair_foreground(
    model, profile, manifest: pd.DataFrame, processor, threshold: float, split: str = "val"
) -> dict[str, float]:
    """Per image class and "all": the mean share of the image a model marks when every image
    of `split` is shown with a prompt of the other class (a negative pair: its right answer is
    an empty mask), at the model's input size and `threshold`."""
    import torch

    from helpers.core.runtime import model_device
    from helpers.data.dataset import JointSegmentationDataset, make_collate
    from helpers.train.validate import default_forward, device_batch

    data = JointSegmentationDataset(
        manifest, split, processor.image_processor, size=profile.image_size, augment=False,
        negative_rate=1.0, seed=profile.seed, finish_on_device=True,
    )
    n = len(data.frame)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(data, range(n, len(data))), batch_size=profile.batch_size,
        collate_fn=make_collate(processor.tokenizer),
    )
    shares: dict[str, list[float]] = {}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in loader:
            batch = device_batch(batch, model_device(model))
            marked = torch.sigmoid(default_forward(model, batch).float()) >= threshold
            for cls, share in zip(batch["datasets"], marked.flatten(1).float().mean(1).tolist(),
                                  strict=True):
                shares.setdefault(cls, []).append(share)
    model.train(was_training)
    out = {cls: sum(v) / len(v) for cls, v in shares.items()}
    out["all"] = sum(sum(v) for v in shares.values()) / sum(len(v) for v in shares.values())
    return out
