"""Training modes: which weights learn, how many there are, and that they round-trip to disk."""

from __future__ import annotations

import copy
import json
import math
import time

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from torch import nn

from helpers.core.paths import SHARED_MODELS_DIR
from helpers.demo.tiny_model import build_tiny_model
from helpers.model.architecture import build_full_size_model, full_size_config
from helpers.model.forward import segment, unwrap
from helpers.model.modes import (
    DEFAULT_LORA,
    LoraSettings,
    apply_mode,
    count_parameters,
    load_trainable,
    mode_sizes,
    parameter_groups,
    save_trainable,
    unused_parameter_names,
)

# A joint cracks + taping LoRA adapter trained elsewhere with the all-q/v placement, stored
# beside the repository (its folder name is the one it was shipped under).
PUBLISHED_ADAPTER = SHARED_MODELS_DIR / "seed1-joint-lora-adapter"
ALL_QV_LORA = LoraSettings(vision_layers="all")  # the usual target_modules=["q_proj", "v_proj"]
LORA_SETTINGS = {"default": DEFAULT_LORA, "all-qv": ALL_QV_LORA}


def lora_parameter_count(model: nn.Module, settings: LoraSettings) -> int:
    """LoRA parameters the settings would add, from the target layers' shapes alone."""
    modules = dict(unwrap(model).named_modules())
    return sum(
        settings.r * (modules[n].in_features + modules[n].out_features)
        for n in settings.module_names(model)
    )


def adapter_state_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the LoRA tensors as peft saves them (for comparing adapters)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(model, save_embedding_layers=False)
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.fixture(scope="module")
def tiny_base():
    return build_tiny_model()


@pytest.fixture
def tiny(tiny_base):
    model, processor = tiny_base
    return copy.deepcopy(model), processor


def _batch(processor, n=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    pixel_values = torch.randn(n, 3, 352, 352, generator=gen)
    prompts = ["segment crack", "segment drywall seam", "segment tape line"][:n]
    text = processor.tokenizer(prompts, padding=True, return_tensors="pt")
    labels = (torch.rand(n, 352, 352, generator=gen) > 0.8).float()
    return pixel_values, text["input_ids"], text["attention_mask"], labels


def _loss(logits, labels):
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)


def _dead_vision_layer(name: str, last: int) -> bool:
    marker = "vision_model.encoder.layers."
    if marker not in name:
        return False
    return int(name.split(marker, 1)[1].split(".", 1)[0]) > last


@pytest.mark.parametrize("mode", ["decoder", "lora", "full"])
def test_every_trainable_parameter_gets_a_gradient(tiny, mode):
    model, processor = tiny
    model = apply_mode(model, mode)
    model.train()
    pixels, ids, mask, labels = _batch(processor)
    # LoRA's B matrices start at zero, so A matrices get their first gradient in step two
    optimizer = torch.optim.AdamW(parameter_groups(model, mode, lr=1e-3))
    for _ in range(2):
        optimizer.zero_grad()
        _loss(segment(model, pixels, ids, mask), labels).backward()
        optimizer.step()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    missing = [n for n, p in trainable if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    # the parts that should learn in this mode have trainable weights
    parts = count_parameters(model)["trainable_by_part"]
    expected_parts = {"decoder": {"decoder"}, "lora": {"vision", "text", "decoder"}}
    learning = {p for p, n in parts.items() if n > 0}
    assert learning == expected_parts.get(mode, {"vision", "text", "decoder"})


def test_all_qv_preset_leaves_dead_adapters_after_the_last_extract_layer(tiny):
    model, processor = tiny
    model = apply_mode(model, "lora", ALL_QV_LORA)
    pixels, ids, mask, labels = _batch(processor)
    _loss(segment(model, pixels, ids, mask), labels).backward()
    last = max(unwrap(model).extract_layers)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    dead = {n for n in trainable if _dead_vision_layer(n, last)}
    assert dead  # the all-q/v placement puts adapters there too
    assert all(trainable[n].grad is None for n in dead)
    assert all(trainable[n].grad is not None for n in trainable if n not in dead)


def test_the_stock_forward_starves_tower_adapters_of_gradient(tiny):
    """The trap: CLIPSeg's own forward runs both towers under torch.no_grad()."""
    model, processor = tiny
    model = apply_mode(model, "lora")
    pixels, ids, mask, labels = _batch(processor)
    out = model(pixel_values=pixels, input_ids=ids, attention_mask=mask)
    _loss(out.logits, labels).backward()
    grads = {n: p.grad for n, p in model.named_parameters() if "lora_" in n}
    towers = [n for n in grads if ".vision_model." in n or ".text_model." in n]
    decoder = [n for n in grads if ".decoder." in n and "lora_B" in n]
    assert towers and decoder
    assert all(grads[n] is None for n in towers)
    assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in decoder)


def test_default_lora_skips_vision_layers_that_never_reach_the_decoder(tiny):
    model, _ = tiny
    last = max(model.config.extract_layers)
    names = DEFAULT_LORA.module_names(model)
    assert not any(_dead_vision_layer(n, last) for n in names)
    assert any(f"vision_model.encoder.layers.{last}." in n for n in names)
    peft_model = apply_mode(model, "lora")
    lora_modules = [n for n, _ in peft_model.named_modules() if n.endswith(".lora_A")]
    assert lora_modules
    assert not any(_dead_vision_layer(n, last) for n in lora_modules)


def test_lora_settings_choose_parts_and_layers(tiny):
    model, _ = tiny
    text_only = LoraSettings(parts=("text",)).module_names(model)
    assert text_only and all("text_model" in n for n in text_only)
    two = LoraSettings(parts=("vision",), vision_layers=(0, 2)).module_names(model)
    assert {n.split("layers.")[1].split(".")[0] for n in two} == {"0", "2"}
    assert ALL_QV_LORA.peft_target_modules(model) == ["q_proj", "v_proj"]
    with pytest.raises(ValueError, match="parts"):
        LoraSettings(parts=("encoder",))
    with pytest.raises(ValueError, match="out of range"):
        LoraSettings(vision_layers=(99,)).module_names(model)


def test_tiny_parameter_counts_per_mode(tiny_base):
    base, _ = tiny_base
    counts = {}
    for mode in ["decoder", "lora", "full"]:
        model = apply_mode(copy.deepcopy(base), mode)
        counts[mode] = count_parameters(model)
    print({m: (c["trainable"], c["trainable_by_part"]) for m, c in counts.items()})
    total = counts["decoder"]["total"]
    assert counts["decoder"]["trainable"] == counts["decoder"]["decoder"]
    assert counts["decoder"]["frozen"] == total - counts["decoder"]["decoder"]
    assert counts["full"]["trainable"] == total - sum(
        p.numel() for n, p in base.named_parameters() if n in set(unused_parameter_names(base))
    )
    # LoRA: r * (in + out) per adapted q_proj / v_proj (towers 64 wide, decoder 32 wide)
    vision = 2 * (max(base.config.extract_layers) + 1) * 16 * (64 + 64)
    text = 2 * 4 * 16 * (64 + 64)
    decoder = 2 * 3 * 16 * (32 + 32)
    assert counts["lora"]["trainable_by_part"] == {
        "vision": vision,
        "text": text,
        "decoder": decoder,
        "other": 0,
    }
    assert counts["lora"]["total"] == total + counts["lora"]["trainable"]


def test_full_fine_tuning_gives_the_towers_a_lower_learning_rate(tiny):
    model, _ = tiny
    model = apply_mode(model, "full")
    groups = parameter_groups(model, "full", lr=1e-3, tower_lr=1e-5, weight_decay=0.05)
    seen = [id(p) for g in groups for p in g["params"]]
    assert len(seen) == len(set(seen)) == sum(1 for p in model.parameters() if p.requires_grad)
    decoder_ids = {id(p) for p in model.decoder.parameters()}
    for group in groups:
        in_decoder = {id(p) in decoder_ids for p in group["params"]}
        assert len(in_decoder) == 1
        assert group["lr"] == (1e-3 if in_decoder == {True} else 1e-5)
        if group["weight_decay"] > 0:
            assert all(p.ndim >= 2 for p in group["params"])
    torch.optim.AdamW(groups)  # accepted as is


def test_bad_mode_is_named(tiny):
    model, _ = tiny
    with pytest.raises(ValueError, match="'encoder'"):
        apply_mode(model, "encoder")
    with pytest.raises(ValueError, match="already carries LoRA"):
        apply_mode(apply_mode(model, "lora"), "decoder")


@pytest.mark.parametrize("mode", ["decoder", "lora", "full"])
def test_save_and_load_restore_identical_logits(tiny_base, tmp_path, mode):
    base, processor = tiny_base
    model = apply_mode(copy.deepcopy(base), mode)
    model.train()
    pixels, ids, mask, labels = _batch(processor)
    optimizer = torch.optim.AdamW(parameter_groups(model, mode, lr=1e-2))
    _loss(segment(model, pixels, ids, mask), labels).backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        trained = segment(model, pixels, ids, mask)
        untouched = segment(base, pixels, ids, mask)
    assert not torch.allclose(trained, untouched)  # the step changed something worth saving
    folder = save_trainable(model, mode, tmp_path / "ckpt")
    restored = load_trainable(copy.deepcopy(base), mode, folder)
    assert isinstance(restored, PeftModel) == (mode == "lora")
    with torch.no_grad():
        torch.testing.assert_close(segment(restored, pixels, ids, mask), trained, atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=f"holds a '{mode}' checkpoint"):
        load_trainable(copy.deepcopy(base), "full" if mode != "full" else "decoder", folder)


def test_decoder_checkpoint_holds_only_the_decoder(tiny_base, tmp_path):
    base, _ = tiny_base
    model = apply_mode(copy.deepcopy(base), "decoder")
    folder = save_trainable(model, "decoder", tmp_path / "dec")
    with safe_open(str(folder / "decoder.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert keys == set(base.decoder.state_dict())


def _stored_weights(folder) -> tuple[int, set[str]]:
    """Weights in a checkpoint folder's safetensors files and their dtypes, read from the files."""
    total, dtypes = 0, set()
    for path in folder.rglob("*.safetensors"):
        with safe_open(str(path), "pt") as f:
            for key in f.keys():
                tensor = f.get_slice(key)
                total += math.prod(tensor.get_shape())
                dtypes.add(tensor.get_dtype())
    return total, dtypes


@pytest.mark.parametrize("lora", [None, LoraSettings(r=4, parts=("vision", "text"))])
def test_mode_sizes_predict_what_each_checkpoint_stores(tiny_base, tmp_path, lora):
    base, _ = tiny_base
    rows = {r["mode"]: r for r in mode_sizes(base.config, lora=lora)}
    for mode, row in rows.items():
        model = apply_mode(copy.deepcopy(base), mode, lora if mode == "lora" else None)
        assert row["trainable_parameters"] == count_parameters(model)["trainable"]
        folder = save_trainable(model, mode, tmp_path / f"{mode}-{lora is None}")
        stored, dtypes = _stored_weights(folder)
        assert stored == row["stored_parameters"], mode
        assert dtypes == {"F32"}, mode  # so stored_mb's 4 bytes a weight is what is on disk
    assert rows["full"]["stored_parameters"] == count_parameters(base)["total"]
    assert rows["lora"]["stored_parameters"] == lora_parameter_count(base, lora or DEFAULT_LORA)


def test_mode_sizes_of_the_real_architecture_need_no_weights():
    rows = {r["mode"]: r for r in mode_sizes(full_size_config())}  # meta device: instant
    assert rows["decoder"]["trainable_parameters"] == 1_127_009
    assert rows["lora"]["trainable_parameters"] == 897_024  # DEFAULT_LORA, as counted below
    assert rows["full"]["stored_parameters"] == 150_747_746
    assert 600 < rows["full"]["stored_mb"] < 610 and rows["lora"]["stored_mb"] < 5


# ---- the full-size architecture (random weights) ----


@pytest.fixture(scope="module")
def full_base():
    return build_full_size_model()


@pytest.mark.slow
def test_full_size_counts(full_base):
    model = full_base
    counts = count_parameters(model)
    assert counts["total"] == 150_747_746
    assert counts["decoder"] == 1_127_009
    assert counts["total"] - counts["decoder"] == 149_620_737
    apply_mode(model, "decoder")
    counts = count_parameters(model)
    assert (counts["trainable"], counts["frozen"]) == (1_127_009, 149_620_737)
    model.requires_grad_(True)


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["all-qv", "default"])
def test_full_size_lora_counts(full_base, preset):
    settings = LORA_SETTINGS[preset]
    model = apply_mode(copy.deepcopy(full_base), "lora", settings)
    by_part = count_parameters(model)["trainable_by_part"]
    # computed from the architecture alone: r * (in + out) for q_proj and v_proj per layer
    r = 16
    vision_layers = 12 if preset == "all-qv" else 10  # default: layers 0..9 feed the decoder
    expected = {
        "vision": vision_layers * 2 * r * (768 + 768),
        "text": 12 * 2 * r * (512 + 512),
        "decoder": 3 * 2 * r * (64 + 64),
        "other": 0,
    }
    print(f"{preset} LoRA trainable: {sum(by_part.values()):,} {by_part}")
    assert by_part == expected
    if preset == "all-qv":
        assert expected == {"vision": 589_824, "text": 393_216, "decoder": 12_288, "other": 0}
        assert sum(by_part.values()) == 995_328
    else:
        assert sum(by_part.values()) == 897_024


@pytest.mark.slow
def test_all_qv_preset_matches_a_published_adapters_tensors(full_base, tmp_path):
    if not PUBLISHED_ADAPTER.is_dir():
        pytest.skip(f"the published adapter is not at {PUBLISHED_ADAPTER}")
    peft_model = apply_mode(copy.deepcopy(full_base), "lora", ALL_QV_LORA)
    ours = adapter_state_shapes(peft_model)
    theirs = adapter_state_shapes(
        PeftModel.from_pretrained(copy.deepcopy(full_base), PUBLISHED_ADAPTER)
    )
    assert ours == theirs
    assert len(ours) == 108
    with safe_open(str(PUBLISHED_ADAPTER / "adapter_model.safetensors"), "pt") as f:
        on_disk = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    assert on_disk == ours
    # a saved preset reads like the published adapter's config
    folder = save_trainable(peft_model, "lora", tmp_path / "all-qv")
    keys = ("r", "lora_alpha", "lora_dropout", "target_modules", "bias", "peft_type")
    saved = json.loads((folder / "adapter_config.json").read_text())
    published = json.loads((PUBLISHED_ADAPTER / "adapter_config.json").read_text())
    def normalised(config: dict) -> dict:  # peft keeps target_modules as a set: order varies
        return {k: sorted(config[k]) if k == "target_modules" else config[k] for k in keys}

    assert normalised(saved) == normalised(published)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["decoder", "lora", "full"])
def test_full_size_training_step(full_base, real_processor_dir, mode):
    from transformers import CLIPSegProcessor

    processor = CLIPSegProcessor.from_pretrained(real_processor_dir)
    model = apply_mode(copy.deepcopy(full_base), mode)
    model.train()
    pixels, ids, mask, labels = _batch(processor, n=1)
    optimizer = torch.optim.AdamW(parameter_groups(model, mode, lr=1e-4))
    start = time.perf_counter()
    loss = _loss(segment(model, pixels, ids, mask), labels)
    loss.backward()
    optimizer.step()
    seconds = time.perf_counter() - start
    print(f"full-size {mode} training step, batch 1: {seconds:.2f} s")
    assert torch.isfinite(loss)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert all(p.grad is not None for p in trainable)
