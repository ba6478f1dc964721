"""Load CLIPSeg and its processor: the Hub checkpoint, a saved folder, or a tiny local model.

The tiny model is a CLIPSeg of the same architecture family built from a `CLIPSegConfig`
with its own small tokenizer. Its seeded random weights are first pretrained on a generic
prompted-shapes task (`helpers.model.pretrain`, trained by `helpers.train.pretrain`),
standing in for the real checkpoint's pretraining; then it is saved once with
`save_pretrained` (with a `tiny_pretraining.json` summary, see `helpers.tiny_model`) and
loaded with `from_pretrained` exactly like the real checkpoint, so every code path downstream
is the same.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor

from helpers.io import atomic_folder, write_json
from helpers.model.pretrain import PretrainSettings
from helpers.model.tokenizer import build_tiny_tokenizer
from helpers.paths import models_dir

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
    """The architecture of `CIDAS/clipseg-rd64-refined` (for tests with random weights)."""
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


def ensure_tiny_model(
    path: str | os.PathLike[str] | None = None,
    pretrain: PretrainSettings | None = None,
    progress: bool = True,
) -> Path:
    """Build, pretrain and save the tiny model once; return its folder.

    See `helpers.tiny_model.ensure_tiny_model` (pretraining runs the training loop, which
    lives above this module, so it is imported only when the tiny model is asked for).
    """
    from helpers.tiny_model import ensure_tiny_model as ensure

    return ensure(path, pretrain, progress)


# The real checkpoint's architecture with random weights, saved once like a downloaded model:
# the `smoke` profile runs the full-size path (shapes, memory, speed) without the weights.
FULL_SIZE_RANDOM = "full-size-random"
FULL_SIZE_RANDOM_FILE = "full_size_random.json"


def real_processor_dir() -> Path:
    """Where the real checkpoint's processor files lie beside the repository (may be absent)."""
    from helpers.paths import SHARED_MODELS_DIR

    return SHARED_MODELS_DIR / "clipseg-rd64-refined-processor"


def full_size_random_processor(processor_dir: str | os.PathLike[str] | None = None):
    """The real processor when its files are present, else the tiny tokenizer's processor.

    Returns `(processor, source)` with source "real" or "tiny-tokenizer".
    """
    folder = Path(processor_dir) if processor_dir is not None else real_processor_dir()
    if (folder / "tokenizer.json").is_file():
        return CLIPSegProcessor.from_pretrained(folder), "real"
    return build_processor(build_tiny_tokenizer()), "tiny-tokenizer"


def _match_token_ids(model: CLIPSegForImageSegmentation, tokenizer) -> None:
    """Point the text tower's end-of-text pooling at the tokenizer's own special tokens."""
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    for key, value in ids.items():
        setattr(model.config.text_config, key, value)
    model.clip.text_model.eos_token_id = tokenizer.eos_token_id


def ensure_full_size_random_model(
    path: str | os.PathLike[str] | None = None,
    processor_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> Path:
    """Build `build_full_size_model(seed)` once, save it with its processor (atomically).

    The processor is the real checkpoint's when `processor_dir` (default: the shared models
    folder) holds it, else the tiny tokenizer's; the folder then loads like any saved model.
    """
    path = Path(path) if path is not None else models_dir() / FULL_SIZE_RANDOM
    marker = path / FULL_SIZE_RANDOM_FILE
    if marker.is_file() and (path / "config.json").is_file() and (
        path / "model.safetensors"
    ).is_file():
        return path
    processor, source = full_size_random_processor(processor_dir)
    with atomic_folder(path) as tmp:
        model = build_full_size_model(seed)
        _match_token_ids(model, processor.tokenizer)
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        write_json(tmp / FULL_SIZE_RANDOM_FILE, {"seed": seed, "processor": source})
    return path


def _is_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes", "on"}


def load_model(
    name: str | os.PathLike[str] = DEFAULT_MODEL,
) -> tuple[CLIPSegForImageSegmentation, CLIPSegProcessor]:
    """Load `(model, processor)` from a Hub id, a saved folder, `"tiny"` or `"full-size-random"`.

    The model is returned in eval mode; training code switches it with `model.train()`.
    """
    if str(name) == TINY:
        folder: str | Path = ensure_tiny_model()
    elif str(name) == FULL_SIZE_RANDOM:
        folder = ensure_full_size_random_model()
    else:
        local = Path(name).expanduser()
        if local.exists():
            if not (local / "config.json").is_file():
                raise FileNotFoundError(
                    f"{local} is not a saved CLIPSeg folder: config.json is missing "
                    "(expected a folder written by save_pretrained of the model and processor)"
                )
            folder = local
        elif local.is_absolute() or str(name).startswith((".", "~")) or str(name).count("/") > 1:
            raise FileNotFoundError(f"model folder {name} does not exist")
        else:
            folder = str(name)
    try:
        model = CLIPSegForImageSegmentation.from_pretrained(folder)
        processor = CLIPSegProcessor.from_pretrained(folder)
    except OSError as err:
        if isinstance(folder, Path):
            raise OSError(
                f"could not load CLIPSeg model and processor from {folder}: {err}"
            ) from err
        hint = (
            "HF_HUB_OFFLINE is set, so nothing can be downloaded"
            if _is_offline()
            else "the Hugging Face Hub could not be reached or the id is wrong"
        )
        raise OSError(
            f"could not load '{name}' ({hint}). On a machine with internet access run "
            f"load_model('{name}') once to fill the Hugging Face cache (or save it with "
            "save_pretrained to a folder and pass that folder); without internet use "
            "load_model('tiny') for a small locally pretrained model."
        ) from err
    model.eval()
    return model, processor


def load_processor(name: str | os.PathLike[str] = DEFAULT_MODEL) -> CLIPSegProcessor:
    """Only the processor of a model (Hub id, folder or "tiny"); cheap for the tiny model."""
    if str(name) == FULL_SIZE_RANDOM:  # no need to build the 600 MB model for its processor
        return full_size_random_processor()[0]
    folder: str | Path = ensure_tiny_model() if str(name) == TINY else name
    try:
        return CLIPSegProcessor.from_pretrained(folder)
    except OSError as err:
        raise OSError(
            f"could not load the processor of '{name}': {err}. Without internet use 'tiny' or "
            "a folder written by save_pretrained."
        ) from err


def load_for_inference(
    name: str | os.PathLike[str], base: str | None = None
) -> tuple[torch.nn.Module, CLIPSegProcessor]:
    """A model ready to predict, from a Hub id, "tiny", a saved folder, or a training checkpoint.

    A checkpoint written during training (`trainable.json` inside: adapters, a decoder or a
    whole model) is put on its base model: `base` when given, else the base recorded in the
    run's `run.json` one folder up. Its processor is read from the checkpoint when saved there.
    """
    import json

    from helpers.model.modes import MODE_FILE, load_trainable, saved_mode

    folder = Path(name)
    if not (folder / MODE_FILE).is_file():
        return load_model(name)
    mode = saved_mode(folder)
    if base is None:
        run_file = folder.parent / "run.json"
        if run_file.is_file():
            base = json.loads(run_file.read_text(encoding="utf-8")).get("base_model")
    if base is None and mode == "lora":
        adapter = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8"))
        base = adapter.get("base_model_name_or_path")
    if base is None:
        raise ValueError(
            f"{folder} holds a '{mode}' checkpoint but its base model is not recorded; "
            "pass the base model (e.g. --base CIDAS/clipseg-rd64-refined or --base tiny)"
        )
    model, processor = load_model(base)
    if (folder / "preprocessor_config.json").is_file() or (
        folder / "processor_config.json"
    ).is_file():
        processor = CLIPSegProcessor.from_pretrained(folder)
    return load_trainable(model, mode, folder), processor
