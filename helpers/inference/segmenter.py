"""Batched inference: a model and its processor turning images and prompts into probabilities.

    seg = Segmenter.from_pretrained("tiny")               # loads, then moves to the runtime device
    seg = Segmenter(model, processor)                     # uses the model where it already is
    probs = seg.probability_maps(images, ["segment crack", "segment taping area"])
    masks = seg.binary_masks(images, prompts, thresholds)  # thresholded on the device
    named = seg.masks(image, prompts, settings)           # one image, post-processed

One batch of images costs one vision pass and one decoder call for all its prompts
(`helpers.model.forward.segment_prompts`). Logits are upsampled to each image's own size
(bilinear, then a sigmoid: `upsample_logits`) and thresholded on the
model's device; only the final masks (uint8) come back to the CPU. Images of different sizes
can share a batch: the processor resizes them all to the model's input size, and each image's
logits are upsampled to that image's size.

Precision follows `helpers.core.runtime`: "auto" is bf16/fp16 autocast on CUDA, fp32 elsewhere.
`PredictSettings` (threshold and post-processing per class) also lives here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from helpers.core.io import read_json, write_json
from helpers.core.runtime import get_runtime, model_device
from helpers.data.prompts import known_class, prompt_slug
from helpers.inference.postprocess import postprocess

SETTINGS_FILE = "predict_settings.json"
DEFAULT_THRESHOLD = 0.5



def quantise(probs: torch.Tensor) -> torch.Tensor:
    """Probabilities as uint8 round(255 p) (half to even), on their device."""
    return torch.round(probs * 255.0).clamp(0, 255).to(torch.uint8)


def as_stored(probs: torch.Tensor) -> torch.Tensor:
    """Probabilities rounded to 8 bits (float32 q / 255 with q = round(255 p)), as evaluation
    stores and scores them: thresholds chosen there are applied here to the same values."""
    return quantise(probs).to(torch.float32) / 255.0


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Probabilities at `size` = (height, width) from (..., h, w) logits, on their device.

    Bilinear (`torch.nn.functional.interpolate`, align_corners=False) in float32, then a
    sigmoid: the one upsampling rule of the project.
    """
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"size must be (height, width) with positive values, got {size}")
    lead = logits.shape[:-2]
    x = logits.detach().float().reshape(-1, 1, *logits.shape[-2:])
    out = torch.sigmoid(F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False))
    return out.reshape(*lead, *size)


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
        cls = known_class(prompt)
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


def check_prompts(prompts: Sequence[str]) -> list[str]:
    """Prompts stripped of outer spaces; an empty list, an empty prompt or one without any
    character usable in a file name is a one-line `ValueError`."""
    if isinstance(prompts, str):
        prompts = [prompts]
    cleaned = [str(p).strip() for p in prompts]
    if not cleaned:
        raise ValueError("give at least one prompt, e.g. --prompt 'segment crack'")
    for raw, p in zip(prompts, cleaned, strict=True):
        if not p:
            raise ValueError(f"empty prompt {raw!r}: a prompt needs words, e.g. 'segment crack'")
        prompt_slug(p)  # raises on a prompt that leaves no usable file name
    return cleaned


class Segmenter:
    """A model and its processor, ready to turn batches of images and prompts into masks.

    The model stays on the device it is on (it is only switched to eval mode); `precision`
    ("auto", "bf16", "fp16", "fp32") is resolved for that device by `helpers.core.runtime`.
    """

    def __init__(self, model: torch.nn.Module, processor, precision: str | None = "auto") -> None:
        from helpers.model.forward import TextEmbeddingCache

        self.model = model.eval()
        self.processor = processor
        self.runtime = get_runtime(model_device(model), precision, num_workers=0)
        self.text_cache = TextEmbeddingCache()

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return model_device(self.model)

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path,
        base: str | None = None,
        device: str | torch.device | None = "auto",
        precision: str | None = "auto",
    ) -> Segmenter:
        """Load a model by name or folder (`helpers.inference.loading.load_for_inference`) and
        move it to `device` as `helpers.core.runtime.get_runtime` resolves it."""
        from helpers.inference.loading import load_for_inference

        runtime = get_runtime(device, precision)  # a missing device fails before loading
        net, processor = load_for_inference(model, base=base)
        return cls(net.to(runtime.device), processor, precision=runtime.precision)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Pixel values (B, 3, S, S) on the CPU for (H, W, 3) uint8 RGB images of any sizes."""
        for i, img in enumerate(images):
            if img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f"image {i} must be (H, W, 3) RGB, got shape {img.shape}")
        # channels_last is explicit: an image 1 or 3 pixels tall would otherwise be misread
        out = self.processor.image_processor(
            images=list(images), return_tensors="pt", input_data_format="channels_last"
        )
        return out["pixel_values"]

    def _logits(
        self,
        images: Sequence[np.ndarray] | None,
        prompts: Sequence[str],
        sizes: Sequence[tuple[int, int]] | None,
        pixel_values: torch.Tensor | None,
    ) -> tuple[torch.Tensor, Sequence[tuple[int, int]]]:
        """Low-resolution logits (B, P, h, w), float32 on the model's device, and the sizes
        (height, width) to upsample them to."""
        from helpers.model.forward import segment_prompts

        if pixel_values is None:
            if images is None:
                raise ValueError("give images or pixel_values with sizes")
            pixel_values = self.preprocess(images)
        if sizes is None:
            if images is None:
                raise ValueError("pixel_values need the images' sizes (height, width)")
            sizes = [img.shape[:2] for img in images]
        if len(sizes) != pixel_values.shape[0]:
            raise ValueError(f"{len(sizes)} sizes for {pixel_values.shape[0]} images")
        prompts = check_prompts(prompts)
        tokens = self.processor.tokenizer(prompts, padding=True, return_tensors="pt")
        device = self.device
        with self.runtime.autocast():
            logits = segment_prompts(
                self.model,
                pixel_values.to(device, non_blocking=True),
                tokens["input_ids"].to(device),
                tokens["attention_mask"].to(device),
                text_cache=self.text_cache,
                prompts=prompts,
            )
        return logits.float(), sizes

    @torch.inference_mode()
    def probability_maps(
        self,
        images: Sequence[np.ndarray] | None,
        prompts: Sequence[str],
        sizes: Sequence[tuple[int, int]] | None = None,
        pixel_values: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        """Per image, (P, H, W) float32 probabilities at its own size, on the model's device.

        Give `images`, or already preprocessed `pixel_values` with the images' `sizes`.
        """
        logits, sizes = self._logits(images, prompts, sizes, pixel_values)
        return [upsample_logits(logits[i], tuple(size)) for i, size in enumerate(sizes)]

    @torch.inference_mode()
    def binary_masks(
        self,
        images: Sequence[np.ndarray] | None,
        prompts: Sequence[str],
        thresholds: Sequence[float],
        sizes: Sequence[tuple[int, int]] | None = None,
        pixel_values: torch.Tensor | None = None,
    ) -> list[np.ndarray]:
        """Per image, (P, H, W) uint8 {0, 1}: `probability >= threshold` of each prompt.

        The probabilities are first rounded to 8 bits (`as_stored`), as evaluation scores them,
        so a mask here is the mask the evaluation scored at that threshold. Thresholds are
        compared in float32 on the device; only the uint8 masks are copied to the CPU, and
        only one image's full-size probabilities exist on the device at a time.
        """
        if len(thresholds) != len(prompts):
            raise ValueError(f"{len(thresholds)} thresholds for {len(prompts)} prompts")
        logits, sizes = self._logits(images, prompts, sizes, pixel_values)
        thr = torch.tensor(list(thresholds), dtype=torch.float32, device=logits.device)
        return [  # one image's full-size maps at a time (none kept): photos can be large
            (as_stored(upsample_logits(logits[i], tuple(size))) >= thr[:, None, None])
            .to(torch.uint8)
            .cpu()
            .numpy()
            for i, size in enumerate(sizes)
        ]

    def masks(
        self,
        image: np.ndarray,
        prompts: Sequence[str],
        settings: PredictSettings | None = None,
    ) -> dict[str, np.ndarray]:
        """{prompt: uint8 {0, 255} mask at the image's size} for one RGB image, post-processed
        with each prompt's threshold and method from `settings`."""
        settings = settings or PredictSettings()
        prompts = check_prompts(prompts)
        chosen = [settings.for_prompt(p) for p in prompts]
        binary = self.binary_masks([image], prompts, [t for t, _ in chosen])[0]
        return {
            p: postprocess(m, method)
            for p, m, (_, method) in zip(prompts, binary, chosen, strict=True)
        }
