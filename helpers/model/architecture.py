"""CLIPSeg architectures and processors built from a config: the real checkpoint's, with
random weights, and its preprocessing. The demo's tiny model is `helpers.demo.tiny_model`;
loading any model by name is `helpers.inference.loading`.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor

DEFAULT_MODEL = "CIDAS/clipseg-rd64-refined"
IMAGE_SIZE = 352
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def full_size_config() -> CLIPSegConfig:
    """The architecture of `CIDAS/clipseg-rd64-refined`, without its weights."""
    return CLIPSegConfig(vision_config={"patch_size": 16}, use_complex_transposed_convolution=True)


def build_full_size_model(seed: int = 0) -> CLIPSegForImageSegmentation:
    """The real checkpoint's architecture with random (seeded) weights, in eval mode."""
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = CLIPSegForImageSegmentation(full_size_config())
    finally:
        torch.random.set_rng_state(state)
    return model.eval()




def build_processor(tokenizer) -> CLIPSegProcessor:
    """The real checkpoint's image preprocessing (352x352, bilinear, ImageNet mean/std)."""
    try:  # transformers >= 5 names the torchvision-free class explicitly
        from transformers import ViTImageProcessorPil as ImageProcessor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import ViTImageProcessor as ImageProcessor
    image_processor = ImageProcessor(
        do_resize=True,
        size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        resample=2,  # PIL bilinear
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
    )
    return CLIPSegProcessor(image_processor=image_processor, tokenizer=tokenizer)


SAVED_MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def saved_model_present(folder: Path) -> bool:
    """A built model folder still holds what loading it needs."""
    return all((folder / name).is_file() for name in SAVED_MODEL_FILES)
