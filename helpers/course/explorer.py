"""The prompt explorer: one photo, any prompts, a threshold; probability map, mask and IoU.

`explore` is the plain computation, `explorer_figure` draws it, and `prompt_explorer` shows
the figure for the initial values and, in a live notebook, an ipywidgets interface around it
(a test image from the manifest or one's own photo, prompts typed comma- or line-separated,
the threshold, and optionally a second model such as the zero-shot one beside). Run headless
(papermill, nbval) it draws the static figure only and never waits for input.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.core.io import read_mask
from helpers.core.numbers import percent
from helpers.core.progress import headless
from helpers.course.viz import overlay
from helpers.data.images import load_rgb
from helpers.data.prompts import known_class
from helpers.evaluate.metrics import iou
from helpers.inference.segmenter import as_stored, check_prompts

OWN_PHOTO = "(own photo: path below)"


@dataclass
class Exploration:
    """One photo under several prompts: maps and masks (P, H, W), IoU per prompt if labelled."""

    prompts: list[str]
    threshold: float
    probs: np.ndarray  # float32 probabilities, as evaluation stores them (8-bit steps)
    masks: np.ndarray  # bool, probs >= threshold
    ious: list[float] | None = None

    @property
    def foreground(self) -> list[float]:
        """Share of the photo's pixels in each prompt's mask."""
        return [float(m.mean()) for m in self.masks]


def parse_prompts(text: str) -> list[str]:
    """Prompts typed comma- or line-separated, trimmed, empty ones dropped."""
    return [p.strip() for p in re.split(r"[,\n]", text) if p.strip()]


def explore(
    segmenter,
    image: np.ndarray,
    prompts: Sequence[str],
    threshold: float,
    label: np.ndarray | None = None,
) -> Exploration:
    """Probability maps, masks at `threshold` and (with a `label` mask) the IoU per prompt.

    The maps are rounded to 8 bits as evaluation scores them, so a threshold chosen there
    gives the same mask here.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be between 0 and 1, got {threshold}")
    prompts = check_prompts(list(prompts))
    probs = as_stored(segmenter.probability_maps([image], prompts)[0]).cpu().numpy()
    masks = probs >= threshold
    ious = None
    if label is not None:
        if label.shape != image.shape[:2]:
            raise ValueError(f"label shape {label.shape} does not match image {image.shape[:2]}")
        ious = [iou(m, label > 0) for m in masks]
    return Exploration(list(prompts), float(threshold), probs, masks, ious)


def explorer_figure(image: np.ndarray, result: Exploration, label: np.ndarray | None = None,
                    title: str = ""):
    """Per prompt a row: photo, probability map (colour bar), mask, and the label with IoU."""
    cols = 4 if label is not None else 3
    rows = len(result.prompts)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.0 * rows), squeeze=False)
    for r, prompt in enumerate(result.prompts):
        ax = axes[r]
        ax[0].imshow(image)
        ax[0].set_title(f'"{prompt}"', fontsize=9)
        shown = ax[1].imshow(result.probs[r], vmin=0, vmax=1, cmap="magma")
        ax[1].set_title("probability", fontsize=9)
        fig.colorbar(shown, ax=ax[1], fraction=0.046, pad=0.04)
        ax[2].imshow(overlay(image, result.masks[r]))
        ax[2].set_title(f"mask >= {result.threshold:.2f} ({result.foreground[r]:.1%} of pixels)",
                        fontsize=9)
        if label is not None:
            ax[3].imshow(overlay(image, label > 0, colour=(40, 200, 80)))
            ax[3].set_title(f"label; IoU {result.ious[r]:.3f}", fontsize=9)
        for a in ax:
            a.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _test_choices(manifest: pd.DataFrame | None, split: str) -> dict[str, int]:
    if manifest is None:
        return {}
    rows = manifest[manifest["split"] == split]
    return {f"{row.dataset}: {Path(row.image_path).name}": i for i, row in rows.iterrows()}


class PromptExplorer:
    """The ipywidgets interface; `update()` recomputes for the widgets' current values.

    `results` holds the latest `Exploration` per model ("model", and "zero-shot" when a
    second segmenter is compared), `status` the line of foreground shares and IoUs shown.
    """

    def __init__(self, segmenter, manifest: pd.DataFrame | None = None,
                 prompts: Sequence[str] = ("segment crack",), threshold: float = 0.5,
                 compare=None, compare_name: str = "zero-shot", split: str = "test") -> None:
        import ipywidgets as w

        self.segmenter, self.compare, self.compare_name = segmenter, compare, compare_name
        self.manifest = manifest
        self.choices = _test_choices(manifest, split)
        options = [*self.choices, OWN_PHOTO]
        self.image = w.Dropdown(options=options, value=options[0], description="image")
        self.path = w.Text(placeholder="path to a photo of your own", description="own photo")
        self.prompts = w.Textarea(value=", ".join(prompts), description="prompts",
                                  placeholder="comma- or line-separated")
        self.threshold = w.FloatSlider(value=threshold, min=0.0, max=1.0, step=0.05,
                                       description="threshold", continuous_update=False)
        self.compare_box = w.Checkbox(value=False, description=f"compare with {compare_name}",
                                      disabled=compare is None)
        self.status = w.HTML()
        self.output = w.Output()
        for control in (self.image, self.path, self.prompts, self.threshold, self.compare_box):
            control.observe(lambda _change: self.update(), names="value")
        self.widget = w.VBox([self.image, self.path, self.prompts, self.threshold,
                              self.compare_box, self.status, self.output])
        self.results: dict[str, Exploration] = {}
        self.update()

    def current(self) -> tuple[np.ndarray, np.ndarray | None, str]:
        """The chosen photo, its label mask (None for one's own photo) and its name."""
        if self.image.value == OWN_PHOTO:
            path = self.path.value.strip()
            if not path:
                raise ValueError("give the path to a photo")
            return load_rgb(path), None, Path(path).name
        row = self.manifest.loc[self.choices[self.image.value]]
        return load_rgb(row.image_path), read_mask(row.mask_path) > 0, self.image.value

    def update(self) -> None:
        """Recompute for the current values and redraw; a bad input shows as one line."""
        from IPython.display import display

        self.output.clear_output(wait=True)
        try:
            image, label, name = self.current()
            prompts = parse_prompts(self.prompts.value)
            models = {"model": self.segmenter}
            if self.compare_box.value and self.compare is not None:
                models[self.compare_name] = self.compare
            self.results = {k: explore(s, image, prompts, self.threshold.value, label)
                            for k, s in models.items()}
        except (ValueError, OSError) as err:
            self.results = {}
            self.status.value = f"<b>{err}</b>"
            return
        self.status.value = "<br>".join(_status_line(k, r) for k, r in self.results.items())
        with self.output:
            for key, result in self.results.items():
                fig = explorer_figure(image, result, label, title=f"{key}: {name}")
                display(fig)
                plt.close(fig)


def _status_line(name: str, result: Exploration) -> str:
    parts = []
    for i, prompt in enumerate(result.prompts):
        text = f'"{prompt}": {result.foreground[i]:.1%} foreground'
        if result.ious is not None:
            text += f", IoU {result.ious[i]:.3f}"
        parts.append(text)
    return f"{name}: " + "; ".join(parts)


SAME_IOU = 0.02  # IoUs closer than this on one photo: "about the same"
SAME_MASK = 0.01  # masks differing on at most this share of pixels: "almost the same"


def comparison_reading(model: Exploration, other: Exploration, other_name: str,
                       image_class: str | None = None) -> str:
    """What the example shows of the trained model against `other` on one photo of
    `image_class`: IoU under each prompt of the photo's class (within `SAME_IOU`: about the
    same), what each marks under the other prompts (there any mark is a false alarm), and how
    much either mask changes with the prompt. One photo is a case, not a rate."""
    parts = []
    for i, prompt in enumerate(model.prompts):
        right = image_class is None or known_class(prompt) == image_class
        if right and model.ious is not None and other.ious is not None:
            mine, theirs = model.ious[i], other.ious[i]
            if abs(theirs - mine) < SAME_IOU:
                how = f"about the same (within {SAME_IOU:g})"
            else:
                how = "higher" if theirs > mine else "lower"
            parts.append(f'under "{prompt}" the {other_name} model scores IoU {theirs:.3f} '
                         f"against the trained model's {mine:.3f}, {how}")
        elif not right:
            parts.append(f'under "{prompt}", a prompt of another class, where anything marked '
                         f"is a false alarm, the trained model marks {model.foreground[i]:.1%} of "
                         f"the photo and the {other_name} model {other.foreground[i]:.1%}")
    for name, result in (("trained", model), (other_name, other)):
        if len(result.prompts) > 1:
            differ = max(float((result.masks[0] != m).mean()) for m in result.masks[1:])
            parts.append(f"the {name} model's mask " + (
                f"is almost the same under every prompt (at most {percent(differ)} of the pixels "
                "differ): it barely tells the prompts apart" if differ <= SAME_MASK
                else f"changes with the prompt (up to {percent(differ)} of the pixels differ)"))
    return ("On this photo " + "; ".join(parts) + ". One photo is a case, not a rate: the "
            "cross-prompt matrix above measures every validation image.") if parts else ""


def prompt_explorer(segmenter, manifest: pd.DataFrame | None = None,
                    prompts: Sequence[str] = ("segment crack",), threshold: float = 0.5,
                    compare=None, compare_name: str = "zero-shot",
                    split: str = "test") -> PromptExplorer | None:
    """Show the explorer for the initial values: the static figure always (so an executed
    notebook keeps one example), the interactive widgets only in a live notebook.

    Returns the `PromptExplorer` (None when headless, where nothing waits for input).
    """
    from IPython.display import display

    choices = _test_choices(manifest, split)
    if not choices:
        raise ValueError(f"the manifest has no {split} images to explore")
    row = manifest.loc[next(iter(choices.values()))]
    image, label = load_rgb(row.image_path), read_mask(row.mask_path) > 0
    models = {"model": segmenter, **({compare_name: compare} if compare is not None else {})}
    results = {}
    for key, model in models.items():
        results[key] = result = explore(model, image, prompts, threshold, label)
        fig = explorer_figure(image, result, label, title=f"{key}: {Path(row.image_path).name}")
        display(fig)
        plt.close(fig)
        print(_status_line(key, result))
    if compare is not None:
        print(comparison_reading(results["model"], results[compare_name], compare_name,
                                 str(row.dataset) if "dataset" in row else None))
    if headless():
        return None
    explorer = PromptExplorer(segmenter, manifest, prompts, threshold, compare, compare_name,
                              split)
    display(explorer.widget)
    return explorer
