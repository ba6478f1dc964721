"""Prompted segmentation of photos: a Python API and a command line.

    python -m helpers.predict photos/ extra.jpg --prompt "segment crack" \
        --prompt "segment taping area" --model outputs/demo/models/lora/model --out masks/

For every image and prompt it writes `<image stem>__<prompt with underscores>.png`: one
channel, values {0, 255}, the input image's own size. Each image's vision features are
computed once and reused for all its prompts. A file that is not an image, or cannot be
read, is reported and skipped; the other files are still processed.

Threshold and post-processing: `--threshold` and `--postprocess` when given; otherwise the
`predict_settings.json` saved beside the model (chosen on validation by notebook 05);
otherwise 0.5 and no post-processing. What was used is written to `<out>/predict_run.json`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from helpers.data.images import IMAGE_SUFFIXES, ImageReadError, load_rgb
from helpers.data.prompts import class_of_prompt, prompt_slug
from helpers.evaluate.metrics import upsample_probs
from helpers.evaluate.postprocess import METHODS, postprocess
from helpers.io import read_json, write_json, write_mask_png

SETTINGS_FILE = "predict_settings.json"
DEFAULT_THRESHOLD = 0.5


@dataclass
class PredictSettings:
    """Threshold per class (or one for all) and a post-processing method per class."""

    threshold: dict[str, float] = field(default_factory=dict)
    postprocess: dict[str, str] = field(default_factory=dict)
    default_threshold: float = DEFAULT_THRESHOLD
    default_postprocess: str = "none"
    source: str = "defaults"

    def for_prompt(self, prompt: str) -> tuple[float, str]:
        """(threshold, post-processing) for a prompt, by the class the prompt belongs to."""
        try:
            cls = class_of_prompt(prompt)
        except ValueError:
            cls = None
        return (
            float(self.threshold.get(cls, self.default_threshold)),
            str(self.postprocess.get(cls, self.default_postprocess)),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "postprocess": self.postprocess,
            "default_threshold": self.default_threshold,
            "default_postprocess": self.default_postprocess,
            "source": self.source,
        }

    @classmethod
    def read(cls, folder: str | Path) -> PredictSettings:
        """Settings saved beside a model, or the defaults when there are none."""
        path = Path(folder) / SETTINGS_FILE
        if not path.is_file():
            return cls()
        data = read_json(path)
        return cls(
            threshold={k: float(v) for k, v in data.get("threshold", {}).items()},
            postprocess=dict(data.get("postprocess", {})),
            default_threshold=float(data.get("default_threshold", DEFAULT_THRESHOLD)),
            default_postprocess=str(data.get("default_postprocess", "none")),
            source=str(path),
        )

    def write(self, folder: str | Path, **extra: Any) -> Path:
        """Save beside a model (atomically), with any extra provenance fields."""
        return write_json(Path(folder) / SETTINGS_FILE, {**self.to_dict(), **extra})


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    cleaned = [str(p).strip() for p in prompts]
    if not cleaned:
        raise ValueError("give at least one prompt, e.g. --prompt 'segment crack'")
    for raw, p in zip(prompts, cleaned, strict=True):
        if not p:
            raise ValueError(f"empty prompt {raw!r}: a prompt needs words, e.g. 'segment crack'")
        prompt_slug(p)  # raises on a prompt that leaves no usable file name
    return cleaned


class Segmenter:
    """A model and its processor, ready to turn images and prompts into probabilities/masks."""

    def __init__(self, model, processor, device: str | torch.device | None = None) -> None:
        from helpers.model.forward import TextEmbeddingCache

        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.processor = processor
        self.text_cache = TextEmbeddingCache()

    @classmethod
    def from_pretrained(cls, model: str | Path, base: str | None = None, device=None) -> Segmenter:
        """Load a model by name or folder: see `helpers.model.load.load_for_inference`."""
        from helpers.model.load import load_for_inference

        net, processor = load_for_inference(model, base=base)
        return cls(net, processor, device=device)

    @torch.inference_mode()
    def logits(self, images: Sequence[np.ndarray], prompts: Sequence[str]) -> torch.Tensor:
        """Low-resolution logits (B, P, h, w) for every prompt on every image."""
        from helpers.model.forward import segment_prompts

        prompts = _check_prompts(prompts)
        pixels = self.processor.image_processor(images=list(images), return_tensors="pt")
        tokens = self.processor.tokenizer(prompts, padding=True, return_tensors="pt")
        return segment_prompts(
            self.model,
            pixels["pixel_values"].to(self.device),
            tokens["input_ids"].to(self.device),
            tokens["attention_mask"].to(self.device),
            text_cache=self.text_cache,
            prompts=prompts,
        ).float()

    def probabilities(
        self, images: Sequence[np.ndarray], prompts: Sequence[str]
    ) -> list[np.ndarray]:
        """Per image, a (P, H, W) float32 array of probabilities at the image's own size."""
        logits = self.logits(images, prompts)
        return [upsample_probs(logits[i], img.shape[:2]) for i, img in enumerate(images)]

    def masks(
        self,
        image: np.ndarray,
        prompts: Sequence[str],
        settings: PredictSettings | None = None,
    ) -> dict[str, np.ndarray]:
        """{prompt: uint8 {0, 255} mask at the image's size} for one RGB image."""
        settings = settings or PredictSettings()
        prompts = _check_prompts(prompts)
        probs = self.probabilities([image], prompts)[0]
        out = {}
        for p, prob in zip(prompts, probs, strict=True):
            threshold, method = settings.for_prompt(p)
            out[p] = postprocess(prob >= threshold, method)
        return out


def mask_name(image_path: str | Path, prompt: str) -> str:
    """`<image stem>__<prompt slug>.png`, e.g. `wall_01__segment_crack.png`."""
    return f"{Path(image_path).stem}__{prompt_slug(prompt)}.png"


def collect_images(inputs: Iterable[str | Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files named directly or found in folders (sorted), and the inputs skipped, why."""
    found: list[Path] = []
    skipped: list[tuple[str, str]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            for f in files:
                if f.suffix.lower() in IMAGE_SUFFIXES:
                    found.append(f)
                else:
                    skipped.append((str(f), "not an image file (by its extension)"))
        elif path.is_file():
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.append(path)
            else:
                skipped.append((str(path), "not an image file (by its extension)"))
        else:
            skipped.append((str(path), "no such file or folder"))
    return found, skipped


def predict_files(
    segmenter: Segmenter,
    inputs: Iterable[str | Path],
    prompts: Sequence[str],
    out_dir: str | Path,
    settings: PredictSettings | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Write a mask per image and prompt into `out_dir`; returns a summary of the run."""
    from tqdm.auto import tqdm

    prompts = _check_prompts(prompts)
    settings = settings or PredictSettings()
    out_dir = Path(out_dir)
    images, skipped = collect_images(inputs)
    stems: dict[str, Path] = {}
    for img in images:
        if img.stem in stems and stems[img.stem] != img:
            raise ValueError(
                f"{img} and {stems[img.stem]} share the stem {img.stem!r}, so their masks would "
                "overwrite each other; predict them into different --out folders"
            )
        stems[img.stem] = img
    written: list[str] = []
    for path in tqdm(images, desc="predict", disable=not progress):
        try:
            image = load_rgb(path)
        except ImageReadError as err:
            skipped.append((str(path), err.reason))
            continue
        for prompt, mask in segmenter.masks(image, prompts, settings).items():
            written.append(str(write_mask_png(out_dir / mask_name(path, prompt), mask)))
    summary = {
        "prompts": prompts,
        "settings": {
            p: dict(zip(("threshold", "postprocess"), settings.for_prompt(p), strict=True))
            for p in prompts
        },
        "settings_source": settings.source,
        "images": len(images) - sum(1 for s in skipped if Path(s[0]) in set(images)),
        "masks_written": len(written),
        "skipped": [{"file": f, "reason": r} for f, r in skipped],
    }
    write_json(out_dir / "predict_run.json", summary)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.predict",
        description="Write a {0,255} mask per image and prompt: <stem>__<prompt>.png.",
    )
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    parser.add_argument(
        "--prompt",
        action="append",
        required=True,
        help='a text prompt, e.g. "segment crack" (repeatable)',
    )
    parser.add_argument(
        "--model",
        required=True,
        help='a trained model folder, a save_pretrained folder, a Hub id or "tiny"',
    )
    parser.add_argument(
        "--base",
        default=None,
        help="base model for an adapter or decoder checkpoint (default: recorded)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="probability threshold for every prompt (default: saved settings)",
    )
    parser.add_argument(
        "--postprocess",
        choices=METHODS,
        default=None,
        help="clean-up of the thresholded mask (default: saved settings)",
    )
    parser.add_argument("--out", required=True, help="folder for the masks")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda if present)")
    args = parser.parse_args(argv)
    try:
        prompts = _check_prompts(args.prompt)
    except ValueError as err:
        parser.error(str(err))
    if args.threshold is not None and not 0 < args.threshold < 1:
        parser.error(f"--threshold must be between 0 and 1, got {args.threshold}")
    segmenter = Segmenter.from_pretrained(args.model, base=args.base, device=args.device)
    model_dir = Path(args.model)
    settings = PredictSettings.read(model_dir) if model_dir.is_dir() else PredictSettings()
    if args.threshold is not None:
        settings.threshold, settings.default_threshold = {}, args.threshold
        settings.source = "command line"
    if args.postprocess is not None:
        settings.postprocess, settings.default_postprocess = {}, args.postprocess
        settings.source = "command line"
    summary = predict_files(segmenter, args.inputs, prompts, args.out, settings)
    for item in summary["skipped"]:
        print(f"skipped {item['file']}: {item['reason']}", file=sys.stderr)
    print(
        f"wrote {summary['masks_written']} mask(s) for {summary['images']} image(s) to {args.out}"
    )
    return 0 if summary["masks_written"] or not summary["skipped"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
