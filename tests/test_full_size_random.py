"""`load_model("full-size-random")`: the real architecture with random weights, saved once."""

from __future__ import annotations

import pytest
import torch

from helpers.demo.full_size_random import (
    FULL_SIZE_RANDOM_FILE,
    ensure_full_size_random_model,
    full_size_random_processor,
    real_processor_dir,
)
from helpers.demo.tokenizer import build_tiny_tokenizer
from helpers.inference.loading import load_model, load_processor

FULL_SIZE_PARAMETERS = 150_747_746


def test_without_the_real_processor_files_the_tiny_tokenizer_stands_in(tmp_path):
    processor, source = full_size_random_processor(tmp_path / "absent")
    assert source == "tiny-tokenizer"
    ids = processor.tokenizer("segment crack")["input_ids"]
    tiny = build_tiny_tokenizer()
    assert ids[0] == tiny.bos_token_id and ids[-1] == tiny.eos_token_id
    image = processor.image_processor
    assert (image.size["height"], image.size["width"]) == (352, 352)


def test_the_real_processor_is_used_when_present(real_processor_dir):
    processor, source = full_size_random_processor(real_processor_dir)
    assert source == "real"
    assert processor.tokenizer("segment crack")["input_ids"] == [49406, 15615, 10334, 49407]
    assert len(load_processor("full-size-random").tokenizer) == 49408


@pytest.mark.slow
def test_saved_once_with_the_tiny_tokenizer_and_loaded_like_any_folder(tmp_path):
    folder = ensure_full_size_random_model(tmp_path / "model", processor_dir=tmp_path / "absent")
    weights = (folder / "model.safetensors").stat().st_mtime_ns
    assert ensure_full_size_random_model(folder) == folder  # no rebuild
    assert (folder / "model.safetensors").stat().st_mtime_ns == weights
    assert (folder / FULL_SIZE_RANDOM_FILE).is_file()
    model, processor = load_model(folder)
    assert sum(p.numel() for p in model.parameters()) == FULL_SIZE_PARAMETERS
    tiny = build_tiny_tokenizer()
    # the text tower pools at the tokenizer's own end-of-text token, not CLIP's id 49407
    assert model.clip.text_model.eos_token_id == tiny.eos_token_id
    inputs = processor(
        text=["segment crack"],
        images=[torch.zeros(3, 64, 80).numpy().transpose(1, 2, 0)],
        return_tensors="pt",
        padding=True,
    )
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape[-2:] == (352, 352) and torch.isfinite(logits).all()


@pytest.mark.slow
def test_load_model_by_name_builds_the_default_folder_once():
    model, processor = load_model("full-size-random")
    assert sum(p.numel() for p in model.parameters()) == FULL_SIZE_PARAMETERS
    assert not model.training
    if (real_processor_dir() / "tokenizer.json").is_file():
        assert len(processor.tokenizer) == 49408
