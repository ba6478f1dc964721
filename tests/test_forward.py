"""The project forward equals the stock CLIPSeg forward, and shares work where it can."""

from __future__ import annotations

import time

import pytest
import torch

from helpers.demo.tiny_model import build_tiny_model
from helpers.model.architecture import build_full_size_model
from helpers.model.forward import (
    TextEmbeddingCache,
    decode,
    segment,
    segment_prompts,
    text_embeddings,
    vision_activations,
)
from helpers.model.modes import apply_mode


@pytest.fixture(scope="module")
def tiny():
    return build_tiny_model()


def _batch(processor, prompts, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(len(prompts), 3, 352, 352, generator=gen)
    text = processor.tokenizer(prompts, padding=True, return_tensors="pt")
    return pixel_values, text["input_ids"], text["attention_mask"]


def test_segment_equals_stock_forward_on_the_tiny_model(tiny):
    model, processor = tiny
    pixels, ids, mask = _batch(processor, ["segment crack", "segment drywall seam", "a"])
    with torch.no_grad():
        stock = model(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits
        ours = segment(model, pixels, ids, mask)
    assert ours.shape == stock.shape == (3, 352, 352)
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=0)


def test_vision_activations_are_the_stock_hidden_states(tiny):
    model, processor = tiny
    pixels, _, _ = _batch(processor, ["x", "y"])
    with torch.no_grad():
        stock = model.clip.vision_model(pixels, output_hidden_states=True).hidden_states
        ours = vision_activations(model, pixels)
    assert len(ours) == len(model.config.extract_layers)
    for act, layer in zip(ours, model.config.extract_layers, strict=True):
        torch.testing.assert_close(act, stock[layer + 1], atol=1e-6, rtol=0)


def test_batch_of_one_keeps_its_batch_dimension(tiny):
    model, processor = tiny
    pixels, ids, mask = _batch(processor, ["segment crack"])
    with torch.no_grad():
        assert segment(model, pixels, ids, mask).shape == (1, 352, 352)
        assert segment(model, pixels[0], ids, mask).shape == (1, 352, 352)


def test_mismatched_prompt_count_is_an_error(tiny):
    model, processor = tiny
    pixels, ids, mask = _batch(processor, ["segment crack", "segment tape line"])
    with torch.no_grad(), pytest.raises(ValueError, match="conditional embeddings for 2 images"):
        segment(model, pixels, ids[:1], mask[:1])


def test_segment_prompts_shares_one_vision_pass(tiny):
    model, processor = tiny
    prompts = ["segment crack", "segment taping area", "segment drywall joint"]
    pixels, _, _ = _batch(processor, ["a", "b"])
    text = processor.tokenizer(prompts, padding=True, return_tensors="pt")
    calls = []
    hook = model.clip.vision_model.embeddings.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            logits = segment_prompts(model, pixels, text["input_ids"], text["attention_mask"])
    finally:
        hook.remove()
    assert len(calls) == 1
    assert logits.shape == (2, 3, 352, 352)
    with torch.no_grad():
        for p, prompt in enumerate(prompts):
            one = processor.tokenizer([prompt] * 2, return_tensors="pt")
            expected = segment(model, pixels, one["input_ids"], one["attention_mask"])
            torch.testing.assert_close(logits[:, p], expected, atol=1e-5, rtol=1e-5)


def test_text_cache_computes_each_prompt_once_while_the_text_tower_is_frozen(tiny):
    model, processor = tiny
    model = apply_mode(model, "decoder")
    cache = TextEmbeddingCache()
    prompts = ["segment crack", "segment joint tape", "segment crack"]
    _, ids, mask = _batch(processor, prompts)
    direct = text_embeddings(model, ids, mask)
    cached = cache.embeddings(model, ids, mask, keys=prompts)
    torch.testing.assert_close(cached, direct, atol=1e-5, rtol=0)
    assert (cache.misses, cache.hits, len(cache)) == (2, 1, 2)
    # keyed by token ids when no prompt strings are given; padding length does not matter
    longer = processor.tokenizer(["segment crack"], padding="max_length", return_tensors="pt")
    again = cache.embeddings(model, longer["input_ids"], longer["attention_mask"])
    torch.testing.assert_close(again[0], direct[0], atol=1e-5, rtol=0)
    pixels, _, _ = _batch(processor, prompts)
    with torch.no_grad():
        via_cache = segment(model, pixels, ids, mask, text_cache=cache, prompts=prompts)
        plain = segment(model, pixels, ids, mask)
    torch.testing.assert_close(via_cache, plain, atol=1e-5, rtol=0)


def test_text_cache_is_bypassed_when_the_text_tower_learns(tiny):
    model, processor = tiny
    model.requires_grad_(True)
    try:
        cache = TextEmbeddingCache()
        _, ids, mask = _batch(processor, ["segment crack"])
        emb = cache.embeddings(model, ids, mask, keys=["segment crack"])
        assert emb.requires_grad
        assert len(cache) == 0
    finally:
        model.requires_grad_(False)


def test_towers_run_without_grad_when_frozen(tiny):
    model, processor = tiny
    model = apply_mode(model, "decoder")
    pixels, ids, mask = _batch(processor, ["segment crack"])
    activations = vision_activations(model, pixels)
    embeddings = text_embeddings(model, ids, mask)
    assert not any(a.requires_grad for a in activations)
    assert not embeddings.requires_grad
    assert decode(model, activations, embeddings).requires_grad
    with torch.no_grad():
        assert not segment(model, pixels, ids, mask).requires_grad


@pytest.mark.slow
def test_segment_equals_stock_forward_on_the_full_size_architecture(real_processor_dir):
    from transformers import CLIPSegProcessor

    model = build_full_size_model()
    processor = CLIPSegProcessor.from_pretrained(real_processor_dir)
    pixels, ids, mask = _batch(processor, ["segment crack"])
    with torch.no_grad():
        stock = model(pixel_values=pixels, input_ids=ids, attention_mask=mask).logits
        start = time.perf_counter()
        ours = segment(model, pixels, ids, mask)
        seconds = time.perf_counter() - start
    print(f"full-size forward, batch 1: {seconds:.2f} s")
    assert ours.shape == stock.shape == (1, 352, 352)
    # random weights give logits in the thousands; the computation is the same operations
    torch.testing.assert_close(ours, stock, atol=1e-5, rtol=1e-6)


def test_segment_prompts_decodes_all_prompts_in_one_call_equal_to_a_loop(tiny):
    model, processor = tiny
    prompts = ["segment crack", "segment taping area", "segment drywall joint", "segment x"]
    pixels, _, _ = _batch(processor, ["a", "b", "c"], seed=3)
    text = processor.tokenizer(prompts, padding=True, return_tensors="pt")
    calls = []
    hook = model.decoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        with torch.no_grad():
            logits = segment_prompts(model, pixels, text["input_ids"], text["attention_mask"])
    finally:
        hook.remove()
    assert len(calls) == 1
    with torch.no_grad():
        activations = vision_activations(model, pixels)
        embeddings = text_embeddings(model, text["input_ids"], text["attention_mask"])
        loop = torch.stack(
            [decode(model, activations, e.expand(3, -1)) for e in embeddings], dim=1
        )
    assert logits.shape == loop.shape == (3, 4, 352, 352)
    torch.testing.assert_close(logits, loop, atol=1e-5, rtol=0)
