"""CLIPSeg architectures and processors built from a config: the real checkpoint's (with
random weights) and the demo's tiny one with its own small tokenizer.

Loading a model by name (a Hub id, a folder, "tiny", "full-size-random") is
`helpers.base_models.load_model`: the tiny model is pretrained by the training loop, which
sits above this package, so the name dispatch lives above both.
"""

from __future__ import annotations

import torch
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor

from helpers.model.tokenizer import build_tiny_tokenizer

DEFAULT_MODEL = "CIDAS/clipseg-rd64-refined"
TINY = "tiny"
TINY_SEED = 0
IMAGE_SIZE = 352
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Bumped whenever the tiny recipe changes, so a stale saved copy is rebuilt.
TINY_VERSION = 2
PRETRAIN_FILE = "tiny_pretraining.json"


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


def tiny_config(vocab_size: int, bos_token_id: int, eos_token_id: int) -> CLIPSegConfig:
    """A small CLIPSeg: 5 vision layers feeding a 3-block decoder from layers 1, 2, 3.

    Like the real model (12 layers, extract 3/6/9) it has a vision layer after the last
    extract layer that never influences the output.
    """
    return CLIPSegConfig(
        vision_config={
            "hidden_size": 64,
            "intermediate_size": 256,
            "num_hidden_layers": 5,
            "num_attention_heads": 4,
            "patch_size": 16,
            "image_size": IMAGE_SIZE,
        },
        text_config={
            "hidden_size": 64,
            "intermediate_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "max_position_embeddings": 77,
            "vocab_size": vocab_size,
            "bos_token_id": bos_token_id,
            "eos_token_id": eos_token_id,
            "pad_token_id": eos_token_id,
        },
        projection_dim=64,
        extract_layers=[1, 2, 3],
        reduce_dim=32,
        decoder_num_attention_heads=4,
        decoder_intermediate_size=128,
        use_complex_transposed_convolution=True,
    )


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


def _rescale_decoder_init(model: CLIPSegForImageSegmentation) -> None:
    """Give the decoder's projections and convolutions PyTorch's default (fan-in scaled) init.

    The config-level init draws them with unit standard deviation, which makes random-weight
    logits of magnitude ~100-1000 and a first training step that only fights saturation.
    """
    decoder = model.decoder
    for module in [
        decoder.film_mul,
        decoder.film_add,
        *decoder.reduces,
        *decoder.transposed_convolution.modules(),
    ]:
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.reset_parameters()


def build_tiny_model(seed: int = TINY_SEED) -> tuple[CLIPSegForImageSegmentation, CLIPSegProcessor]:
    """The tiny model with random weights and its processor (deterministic for a given seed)."""
    tokenizer = build_tiny_tokenizer()
    config = tiny_config(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        model = CLIPSegForImageSegmentation(config)
        _rescale_decoder_init(model)
    finally:
        torch.random.set_rng_state(state)
    model.eval()
    return model, build_processor(tokenizer)
