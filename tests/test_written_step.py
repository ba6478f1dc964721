"""Notebook 04 writes the method out in cells: they must be the code the course runs.

The cells tagged `lora-config` and `written-step` are executed here as the notebook executes
them, beside `apply_mode` and the training loop's own step (`helpers.train.loop.training_step`):
a config or a step that drifts from the library fails here.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch

from helpers.core.paths import NOTEBOOKS_DIR

NOTEBOOK = NOTEBOOKS_DIR / "04_lora_training.ipynb"


def _cell(tag: str | None = None, containing: str | None = None) -> str:
    cells = json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"]
    found = [
        "".join(c["source"]) for c in cells if c["cell_type"] == "code"
        and (tag is None or tag in c.get("metadata", {}).get("tags", []))
        and (containing is None or containing in "".join(c["source"]))
    ]
    assert len(found) == 1, f"04 has {len(found)} code cells tagged {tag!r} / with {containing!r}"
    return found[0]


def _namespace(**values) -> dict:
    """The notebook's imports (its one toolkit statement) and the given names."""
    ns: dict = {}
    exec(_cell(containing="from helpers.course.toolkit import"), ns)
    ns.update(values)
    return ns


@pytest.fixture(scope="module")
def tiny():
    from helpers.course.profiles import get_profile
    from helpers.demo.tiny_model import build_tiny_model

    torch.manual_seed(0)
    model, processor = build_tiny_model()
    return get_profile("demo"), model, processor


def _batch(processor, size: int = 64) -> dict:
    """Two images with one prompt each and a square of foreground in one label."""
    tokens = processor.tokenizer(["segment crack", "segment taping area"], padding=True,
                                 return_tensors="pt")
    labels = torch.zeros(2, size, size)
    labels[0, 10:30, 20:40] = 1.0
    generator = torch.Generator().manual_seed(1)
    return {"pixel_values": torch.randn(2, 3, size, size, generator=generator),
            "input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"],
            "labels": labels, "datasets": ["cracks", "taping"]}


def test_the_lora_config_the_notebook_builds_is_the_one_apply_mode_hands_to_peft(
    tiny, monkeypatch
):
    import helpers.model.modes as modes
    from helpers.course.runs import lora_settings

    cfg, model, _ = tiny
    base, settings = copy.deepcopy(model), lora_settings(cfg)
    ns = _namespace(base=base, settings=settings)
    exec(_cell("lora-config"), ns)
    handed = []
    real = modes.get_peft_model
    monkeypatch.setattr(modes, "get_peft_model",
                        lambda m, config: handed.append(copy.deepcopy(config)) or real(m, config))
    modes.apply_mode(copy.deepcopy(model), "lora", settings)
    assert handed == [ns["lora_config"]]
    assert (ns["lora_config"].r, ns["lora_config"].lora_alpha) == (cfg.lora_r, cfg.lora_alpha)


def test_the_notebooks_written_step_is_the_training_loops_step(tiny):
    from helpers.core.runtime import get_runtime
    from helpers.course.runs import lora_settings, train_config
    from helpers.model.modes import apply_mode
    from helpers.train.loop import training_step
    from helpers.train.validate import default_forward, device_batch

    cfg, model, processor = tiny
    rt = get_runtime("cpu", "fp32", 0)
    written = apply_mode(copy.deepcopy(model), "lora", lora_settings(cfg))
    looped = copy.deepcopy(written)
    batch = _batch(processor)
    ns = _namespace(cfg=cfg, rt=rt, batch=batch, lora_model=written)
    torch.manual_seed(3)  # the same LoRA dropout draws on both sides
    exec(_cell("written-step"), ns)

    # the loop's step, at the run's settings; no warm-up, so its first step takes the full lr
    loop_cfg = train_config(cfg, "lora", warmup_fraction=0.0, precision="fp32")
    step, _ = training_step(looped, default_forward, loop_cfg, rt, total_steps=10)
    looped.train()
    torch.manual_seed(3)
    loss, bce, dice = step(device_batch(batch, rt.device)).tolist()

    terms = ns["terms"]
    assert terms["loss"].item() == pytest.approx(loss, rel=1e-6)
    assert (terms["bce"].item(), terms["dice"].item()) == pytest.approx((bce, dice), rel=1e-6)
    for (name, p), (_, q) in zip(written.named_parameters(), looped.named_parameters(),
                                 strict=True):
        if p.requires_grad:
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-7, msg=name)
    b_weights = [p for n, p in written.named_parameters() if "lora_B" in n]
    assert any(bool(p.abs().sum() > 0) for p in b_weights)  # the step moved B off zero
