"""Loading CLIPSeg: the tiny local model, its tokenizer and processor, and clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import CLIPSegForImageSegmentation, CLIPSegProcessor

from helpers.core.cache import is_current
from helpers.core.io import atomic_folder
from helpers.demo import tiny_model
from helpers.demo.shapes import PretrainSettings, shapes_iou
from helpers.demo.tiny_model import (
    PRETRAIN_FILE,
    SHIPPED_DIR,
    TINY_VERSION,
    build_pretrained_tiny_model,
    build_tiny_model,
    ensure_tiny_model,
    tiny_key,
)
from helpers.demo.tokenizer import build_tiny_tokenizer
from helpers.inference.loading import load_model
from helpers.model.architecture import full_size_config, saved_model_present

# The course prompts (helpers.data.prompts.PROMPTS) as the contracts fix them.
COURSE_PROMPTS = [
    "segment crack",
    "segment wall crack",
    "segment surface crack",
    "segment drywall crack",
    "segment fracture",
    "segment taping area",
    "segment joint tape",
    "segment drywall seam",
    "segment drywall joint",
    "segment tape line",
]


def _all_prompts() -> list[str]:
    try:
        from helpers.data.prompts import PROMPTS
    except ImportError:
        return COURSE_PROMPTS
    return sorted({p for prompts in PROMPTS.values() for p in prompts} | set(COURSE_PROMPTS))


# A few pretraining steps on small images: the shipped settings take about two minutes.
CHEAP = PretrainSettings(steps=2, batch_size=2, size=64, warmup=1)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return ensure_tiny_model(
        tmp_path_factory.mktemp("models") / "tiny-clipseg", pretrain=CHEAP, progress=False
    )


def _inputs(processor: CLIPSegProcessor, n: int = 2):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (120 + 10 * i, 160, 3), dtype=np.uint8) for i in range(n)]
    prompts = (COURSE_PROMPTS * n)[:n]
    return processor(text=prompts, images=images, padding=True, return_tensors="pt")


def test_tiny_model_reloads_with_from_pretrained_to_the_same_logits(tiny_dir):
    built, processor, _ = build_pretrained_tiny_model(settings=CHEAP, progress=False)
    loaded = CLIPSegForImageSegmentation.from_pretrained(tiny_dir).eval()
    loaded_processor = CLIPSegProcessor.from_pretrained(tiny_dir)
    inputs = _inputs(processor)
    assert torch.equal(inputs["input_ids"], _inputs(loaded_processor)["input_ids"])
    torch.testing.assert_close(inputs["pixel_values"], _inputs(loaded_processor)["pixel_values"])
    with torch.no_grad():
        expected = built(**inputs).logits
        got = loaded(**inputs).logits
    assert got.shape == (2, 352, 352)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)


def test_tiny_model_is_deterministic_and_small():
    a, _ = build_tiny_model()
    b, _ = build_tiny_model()
    for (name, pa), (_, pb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(pa, pb), name
    total = sum(p.numel() for p in a.parameters())
    decoder = sum(p.numel() for p in a.decoder.parameters())
    assert total < 1_000_000
    assert decoder / total > 0.05  # the decoder is a real part of the model, not a rounding error
    # like the real model, a vision layer after the last extract layer never feeds the decoder
    assert len(a.clip.vision_model.encoder.layers) > max(a.config.extract_layers) + 1


def test_pretraining_changes_the_random_weights_and_is_recorded(tiny_dir):
    random_model, _ = build_tiny_model()
    saved = CLIPSegForImageSegmentation.from_pretrained(tiny_dir)
    assert not torch.equal(saved.decoder.film_mul.weight, random_model.decoder.film_mul.weight)
    summary = json.loads((tiny_dir / PRETRAIN_FILE).read_text(encoding="utf-8"))
    assert summary["settings"] == CHEAP.to_dict()
    assert summary["tiny_version"] == TINY_VERSION
    assert {"line", "band"} <= set(summary["held_out_iou"])


def test_ensure_tiny_model_builds_once(tiny_dir):
    stamp = (tiny_dir / "model.safetensors").stat().st_mtime_ns
    assert ensure_tiny_model(tiny_dir, pretrain=CHEAP) == tiny_dir
    assert (tiny_dir / "model.safetensors").stat().st_mtime_ns == stamp
    leftovers = [p.name for p in tiny_dir.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_ensure_tiny_model_rebuilds_when_the_settings_change(tiny_dir, tmp_path):
    import shutil

    copy = tmp_path / "tiny-clipseg"
    shutil.copytree(tiny_dir, copy)
    other = PretrainSettings(steps=1, batch_size=2, size=64, warmup=1)
    ensure_tiny_model(copy, pretrain=other, progress=False)
    summary = json.loads((copy / PRETRAIN_FILE).read_text(encoding="utf-8"))
    assert summary["settings"] == other.to_dict()


def test_load_model_reads_a_saved_folder(tiny_dir):
    model, processor = load_model(tiny_dir)
    assert isinstance(model, CLIPSegForImageSegmentation)
    assert not model.training
    assert processor.tokenizer.model_max_length == 77
    assert model.config.text_config.vocab_size == len(processor.tokenizer)


def test_load_model_tiny_uses_the_shared_cache():
    model, processor = load_model("tiny")
    folder = ensure_tiny_model()
    assert (folder / PRETRAIN_FILE).is_file()
    cached = CLIPSegForImageSegmentation.from_pretrained(folder)
    torch.testing.assert_close(
        model.decoder.film_mul.weight, cached.decoder.film_mul.weight, atol=0, rtol=0
    )
    built, _ = build_tiny_model()
    for part in ("vision_config", "text_config"):
        got, want = getattr(model.config, part), getattr(built.config, part)
        assert got.hidden_size == want.hidden_size
        assert got.num_hidden_layers == want.num_hidden_layers
    assert model.config.extract_layers == built.config.extract_layers
    assert processor("segment crack")["input_ids"][0] == processor.tokenizer.bos_token_id


def test_tiny_tokenizer_keeps_prompt_words_whole():
    tok = build_tiny_tokenizer()
    for word in ["crack", "segment", "taping", "drywall", "seam", "joint", "fracture"]:
        assert len(tok.tokenize(word)) == 1, word
    for prompt in _all_prompts():
        ids = tok(prompt)["input_ids"]
        assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id
        assert len(ids) == len(prompt.split()) + 2, (prompt, tok.convert_ids_to_tokens(ids))
        assert tok.unk_token_id not in ids[1:-1]
    assert tok.pad_token_id == tok.eos_token_id
    assert tok.model_max_length == 77
    # lower-casing and unknown words still work (split into smaller pieces, never dropped)
    assert tok("Segment CRACK")["input_ids"] == tok("segment crack")["input_ids"]
    assert len(tok("segment zebra")["input_ids"]) > 4
    assert len(tok("word " * 200, truncation=True)["input_ids"]) == 77


def test_tiny_processor_preprocesses_images_like_the_real_one(real_processor_dir):
    real = CLIPSegProcessor.from_pretrained(real_processor_dir)
    _, tiny = build_tiny_model()
    image = np.random.default_rng(1).integers(0, 256, (200, 300, 3), dtype=np.uint8)
    expected = real(images=image, return_tensors="pt")["pixel_values"]
    got = tiny(images=image, return_tensors="pt")["pixel_values"]
    assert got.shape == expected.shape == (1, 3, 352, 352)
    torch.testing.assert_close(got, expected)


def test_folder_with_real_processor_tokenises_like_the_checkpoint(
    tiny_dir, real_processor_dir, tmp_path
):
    folder = tmp_path / "with-real-processor"
    CLIPSegForImageSegmentation.from_pretrained(tiny_dir).save_pretrained(folder)
    CLIPSegProcessor.from_pretrained(real_processor_dir).save_pretrained(folder)
    _, processor = load_model(folder)
    assert processor("segment crack")["input_ids"] == [49406, 15615, 10334, 49407]


def test_missing_hub_model_offline_says_what_to_do():
    with pytest.raises(OSError, match=r"load_model\('tiny'\)"):
        load_model("example-org/clipseg-not-in-the-cache")


def test_folder_without_config_is_named(tmp_path):
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing" / "model")


def test_atomic_folder_keeps_the_old_folder_when_writing_fails(tmp_path):
    target = tmp_path / "out"
    with atomic_folder(target) as tmp:
        (tmp / "a.json").write_text(json.dumps({"v": 1}))
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "a.json").write_text(json.dumps({"v": 2}))
        raise RuntimeError("interrupted")
    assert json.loads((target / "a.json").read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_full_size_config_is_the_checkpoint_architecture():
    config = full_size_config()
    assert config.vision_config.patch_size == 16
    assert config.use_complex_transposed_convolution
    assert list(config.extract_layers) == [3, 6, 9]
    assert config.reduce_dim == 64
    assert config.text_config.vocab_size == 49408


# The shipped checkpoint (helpers/demo/checkpoint/): what a fresh clone starts the demo from.


def test_the_shipped_checkpoint_is_of_the_current_recipe():
    # A recipe change (TINY_VERSION, seed, pretraining settings) without
    # `python -m helpers.demo.tiny_model` would silently pretrain on every fresh clone.
    assert is_current(SHIPPED_DIR, tiny_key(PretrainSettings())), (
        "helpers/demo/checkpoint/ is of another recipe: run python -m helpers.demo.tiny_model"
    )
    assert saved_model_present(SHIPPED_DIR)


def test_the_default_tiny_model_is_copied_from_the_shipped_checkpoint(tmp_path, monkeypatch):
    def no_pretraining(**_):
        raise AssertionError("pretrained although the shipped checkpoint is current")

    monkeypatch.setattr(tiny_model, "build_pretrained_tiny_model", no_pretraining)
    folder = ensure_tiny_model(tmp_path / "tiny-clipseg", progress=False)
    for name in ("model.safetensors", "config.json", PRETRAIN_FILE):
        assert (folder / name).read_bytes() == (SHIPPED_DIR / name).read_bytes(), name
    assert is_current(folder, tiny_key(PretrainSettings()))


def test_other_settings_pretrain_instead_of_copying(tiny_dir):
    shipped = (SHIPPED_DIR / "model.safetensors").read_bytes()
    assert (tiny_dir / "model.safetensors").read_bytes() != shipped
    summary = json.loads((tiny_dir / PRETRAIN_FILE).read_text(encoding="utf-8"))
    assert summary["settings"]["steps"] == CHEAP.steps


def test_the_shipped_summary_is_true_of_the_shipped_weights():
    model = CLIPSegForImageSegmentation.from_pretrained(SHIPPED_DIR).eval()
    processor = CLIPSegProcessor.from_pretrained(SHIPPED_DIR)
    summary = json.loads((SHIPPED_DIR / PRETRAIN_FILE).read_text(encoding="utf-8"))
    settings = PretrainSettings()
    assert summary["settings"] == settings.to_dict() and summary["tiny_version"] == TINY_VERSION
    measured = shapes_iou(model, processor, settings.size, seed=settings.seed + 1)
    for kind, value in summary["held_out_iou"].items():  # other CPUs may flip a few pixels
        assert measured[kind] == pytest.approx(value, abs=0.002), (kind, measured, summary)


def test_ship_tiny_model_writes_a_checkpoint_ensure_accepts(tmp_path, monkeypatch):
    def quick(**_):  # the random tiny model stands in for two minutes of pretraining
        model, processor = build_tiny_model()
        return model, processor, {"tiny_version": TINY_VERSION, "held_out_iou": {}}

    monkeypatch.setattr(tiny_model, "build_pretrained_tiny_model", quick)
    folder = tiny_model.ship_tiny_model(tmp_path / "checkpoint", progress=False)
    assert is_current(folder, tiny_key(PretrainSettings())) and saved_model_present(folder)
    assert tiny_model.main(["--force"]) == 2  # the command takes no arguments
