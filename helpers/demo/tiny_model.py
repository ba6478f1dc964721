"""The demo's tiny CLIPSeg: a small architecture of the real model's family with its own
tokenizer, pretrained for two minutes on prompted shapes (`helpers.demo.pretrain`) and saved in
`outputs/models/tiny-clipseg`, a `helpers.core.cache` output keyed by its recipe (`tiny_key`:
TINY_VERSION, seed and pretraining settings).

The course ships that checkpoint, as the full profile downloads its own: `checkpoint/` beside
this module holds the weights, processor and pretraining summary that the shipped recipe built
on a CPU in fp32, with their key record. A run with the shipped recipe copies them instead of
pretraining again, so every machine starts the demo from the same weights (pretraining's
floating-point sums differ between CPUs) and a fresh clone saves two minutes. After a recipe
change, rebuild it:

    python -m helpers.demo.tiny_model
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor

from helpers.core.cache import KEY_FILE, build_once, is_current
from helpers.core.io import write_json
from helpers.core.paths import models_dir
from helpers.core.runtime import Runtime
from helpers.demo.shapes import PretrainSettings
from helpers.demo.tokenizer import build_tiny_tokenizer
from helpers.model.architecture import IMAGE_SIZE, build_processor, saved_model_present

TINY = "tiny"


TINY_SEED = 0


# Bumped whenever the tiny recipe changes, so a stale saved copy is rebuilt.
TINY_VERSION = 3


PRETRAIN_FILE = "tiny_pretraining.json"


SHIPPED_DIR = Path(__file__).with_name("checkpoint")  # the checkpoint the shipped recipe built


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


def build_pretrained_tiny_model(
    seed: int = TINY_SEED,
    settings: PretrainSettings | None = None,
    progress: bool = True,
    runtime: Runtime | None = None,
) -> tuple[CLIPSegForImageSegmentation, CLIPSegProcessor, dict]:
    """The tiny model pretrained on prompted shapes, its processor and the pretraining summary.

    Deterministic for a given seed and settings (on the same machine, device and thread
    count). The model comes back on the CPU.
    """
    from helpers.demo.pretrain import pretrain_tiny

    model, processor = build_tiny_model(seed)
    state = torch.random.get_rng_state()
    try:
        summary = pretrain_tiny(model, processor, settings, progress=progress, runtime=runtime)
    finally:
        torch.random.set_rng_state(state)
    summary = {"tiny_version": TINY_VERSION, "seed": seed, **summary}
    return model.eval(), processor, json.loads(json.dumps(summary))


def tiny_key(settings: PretrainSettings, seed: int = TINY_SEED) -> dict:
    """What a saved tiny model is built from: the recipe version, seed and pretraining."""
    return {"tiny_version": TINY_VERSION, "seed": seed, "pretrain": settings.to_dict()}


def ensure_tiny_model(
    path: str | os.PathLike[str] | None = None,
    pretrain: PretrainSettings | None = None,
    progress: bool = True,
) -> Path:
    """The tiny model's folder, built once (atomically): the shipped checkpoint when it is of
    this recipe, else pretrained now (about two minutes on 2 CPU cores).

    `pretrain` defaults to the shipped settings; a folder built with other settings or an
    older recipe is rebuilt.
    """
    path = Path(path) if path is not None else models_dir() / "tiny-clipseg"
    settings = pretrain or PretrainSettings()
    key = tiny_key(settings)

    def build(folder: Path) -> None:
        if is_current(SHIPPED_DIR, key) and saved_model_present(SHIPPED_DIR):
            for file in SHIPPED_DIR.iterdir():
                if file.is_file() and file.name != KEY_FILE:
                    shutil.copy2(file, folder / file.name)
        else:
            _pretrain_into(folder, settings, progress)

    return build_once(path, key, build, valid=saved_model_present)


def _pretrain_into(folder: Path, settings: PretrainSettings, progress: bool) -> None:
    model, processor, summary = build_pretrained_tiny_model(settings=settings, progress=progress)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    write_json(folder / PRETRAIN_FILE, summary)


def ship_tiny_model(folder: str | os.PathLike[str] = SHIPPED_DIR, progress: bool = True) -> Path:
    """Pretrain the tiny model with the shipped recipe and write it to `folder` (atomically)."""
    settings = PretrainSettings()
    return build_once(
        folder, tiny_key(settings), lambda tmp: _pretrain_into(tmp, settings, progress),
        force=True, valid=saved_model_present,
    )


def main(argv: list[str] | None = None) -> int:
    """`python -m helpers.demo.tiny_model`: rebuild the shipped checkpoint from the recipe."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        print("usage: python -m helpers.demo.tiny_model  (no arguments: rebuilds "
              f"{SHIPPED_DIR.name}/ from the shipped recipe)", file=sys.stderr)
        return 2
    folder = ship_tiny_model()
    summary = json.loads((folder / PRETRAIN_FILE).read_text(encoding="utf-8"))
    print(f"wrote {folder}: held-out IoU per shape {summary['held_out_iou']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
