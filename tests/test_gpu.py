"""The CUDA tier: the device policy end to end, mixed-precision steps at full size, prediction
on the GPU against the CPU, exact-enough resume, and the smoke profile on the GPU.

Every test here is marked `gpu` and skips with its reason on a machine without CUDA
(`make test-gpu` runs this tier alone).
"""

from __future__ import annotations

import copy
import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from test_train_loop import (  # the CPU loop tests' tiny model, data and recipe
    Interrupted,
    SquaresDataset,
    collate,
    config,
    stock_forward,
    tiny_clipseg,
)

from helpers.core.runtime import get_runtime, model_device

HAS_CUDA = torch.cuda.is_available()
HAS_BF16 = HAS_CUDA and torch.cuda.get_device_capability()[0] >= 8  # native bf16

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device; this machine has none"),
]


# ------------------------------------------------------------------ the device policy, end to end


@pytest.mark.slow
def test_trained_model_and_its_checkpoint_live_on_the_profiles_device():
    from helpers.course.profiles import get_profile
    from helpers.course.runs import trained_model
    from helpers.course.sources import prepared_data

    cfg = get_profile("demo", epochs=1, max_steps_per_epoch=2, device="cuda", precision="auto")
    manifest = prepared_data(cfg).manifest
    run = trained_model(cfg, "lora", manifest, "test-gpu", retrain=True, progress=False)
    assert model_device(run.model).type == "cuda"
    runtime = getattr(run, "runtime", None)
    assert runtime is not None, "trained_model should report the runtime it trained with"
    assert runtime.device.type == "cuda" and runtime.precision in ("bf16", "fp16")
    assert run.info["completed"]
    # the finished run is loaded from its checkpoint, again onto the profile's device
    again = trained_model(cfg, "lora", manifest, "test-gpu", progress=False)
    assert again.info["fingerprint"] == run.info["fingerprint"]
    assert model_device(again.model).type == "cuda"
    assert all(p.device.type == "cuda" for p in again.model.parameters())


# ------------------------------------------------- one mixed-precision training step at full size


def _full_size_batch(device: torch.device, n: int = 2) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    ids = torch.tensor([[49406, 15615, 10334, 49407]] * n)  # "segment crack", CLIP's own ids
    labels = (torch.rand(n, 352, 352, generator=gen) > 0.9).float()
    batch = {
        "pixel_values": torch.randn(n, 3, 352, 352, generator=gen),
        "input_ids": ids,
        "attention_mask": torch.ones_like(ids),
        "labels": labels,
    }
    return {k: v.to(device) for k, v in batch.items()}


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
@pytest.mark.parametrize("mode", ["decoder", "lora", "full"])
def test_one_full_size_training_step_per_mode_and_precision(mode, precision):
    if precision == "bf16" and not HAS_BF16:
        pytest.skip("this GPU does not support bf16")
    from helpers.model.architecture import build_full_size_model
    from helpers.model.modes import LoraSettings, apply_mode
    from helpers.train.loop import default_forward
    from helpers.train.losses import BCEDiceLoss

    rt = get_runtime("cuda", precision)
    torch.manual_seed(0)
    lora = LoraSettings() if mode == "lora" else None
    model = apply_mode(build_full_size_model(), mode, lora).to(rt.device).train()
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in trainable.items()}
    optimizer = torch.optim.AdamW(trainable.values(), lr=1e-4)
    scaler = rt.grad_scaler()
    assert (scaler is not None) == (precision == "fp16")
    batch = _full_size_batch(rt.device)
    criterion = BCEDiceLoss()
    moved = False
    for _ in range(20):  # fp16: the scaler skips steps whose scaled gradients overflow
        optimizer.zero_grad(set_to_none=True)
        with rt.autocast():
            logits = default_forward(model, batch)
        assert logits.shape == (2, 352, 352)
        loss = criterion(logits.float(), batch["labels"])
        assert torch.isfinite(loss), f"{mode}/{precision}: loss {loss.item()}"
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        if mode != "decoder":  # the course's forward sends gradients into the vision tower
            assert any(
                p.grad is not None for n, p in trainable.items() if "vision_model" in n
            ), f"{mode}: no vision-tower parameter received a gradient"
        moved = any(not torch.equal(before[n], p.detach()) for n, p in trainable.items())
        if moved:
            break
    assert moved, f"{mode}/{precision}: no optimiser step changed a trainable weight"
    assert all(torch.isfinite(p).all() for p in trainable.values())


# ---------------------------------------------------------------- prediction: CUDA against CPU


def _segmenter(model, processor, device: str):
    """A `Segmenter` on `device` in fp32, for the current and the device-following signature."""
    from helpers.inference.mask_files import Segmenter

    params = inspect.signature(Segmenter).parameters
    kwargs: dict[str, Any] = {}
    if "precision" in params:
        kwargs["precision"] = "fp32"
    if "device" in params:
        kwargs["device"] = device
    return Segmenter(model.to(device), processor, **kwargs)


@pytest.mark.slow
def test_segmenter_on_cuda_predicts_what_it_predicts_on_cpu():
    from helpers.inference.loading import load_model

    model, processor = load_model("tiny")
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((300, 420), (352, 352))]
    prompts = ["segment crack", "segment taping area"]
    on_cpu = _segmenter(copy.deepcopy(model), processor, "cpu").probability_maps(images, prompts)
    gpu = _segmenter(copy.deepcopy(model), processor, "cuda")
    assert model_device(gpu.model).type == "cuda"
    on_gpu = gpu.probability_maps(images, prompts)
    for a, b in zip(on_cpu, on_gpu, strict=True):
        a, b = a.numpy(), b.cpu().numpy()
        assert a.shape == b.shape
        # TF32 matmuls (allowed by the runtime for fp32 on CUDA) differ from CPU in the 3rd digit
        assert np.abs(a - b).max() < 2e-2
        assert ((a >= 0.5) == (b >= 0.5)).mean() > 0.995


@pytest.mark.slow
def test_predict_files_on_cuda_writes_the_masks_it_writes_on_cpu(tmp_path):
    from PIL import Image

    from helpers.inference.loading import load_model
    from helpers.inference.mask_files import predict_files

    model, processor = load_model("tiny")
    rng = np.random.default_rng(1)
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, (h, w) in enumerate(((480, 640), (640, 640), (352, 300))):
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(photos / f"w{i}.jpg")
    (photos / "broken.jpg").write_bytes(b"not a jpeg")
    prompts = ["segment crack", "segment taping area"]
    summaries = {}
    for device in ("cpu", "cuda"):
        segmenter = _segmenter(copy.deepcopy(model), processor, device)
        summaries[device] = predict_files(
            segmenter, [photos], prompts, tmp_path / device, progress=False, warn=lambda m: None
        )
    assert summaries["cpu"]["masks_written"] == summaries["cuda"]["masks_written"] == 6
    assert summaries["cpu"]["skipped"] == summaries["cuda"]["skipped"]
    assert [s["file"] for s in summaries["cuda"]["skipped"]] == [str(photos / "broken.jpg")]
    cpu_masks = sorted((tmp_path / "cpu").glob("*.png"))
    assert len(cpu_masks) == 6
    for on_cpu in cpu_masks:
        a = np.asarray(Image.open(on_cpu))
        b = np.asarray(Image.open(tmp_path / "cuda" / on_cpu.name))
        assert a.shape == b.shape and set(np.unique(b)) <= {0, 255}
        assert (a == b).mean() > 0.995, on_cpu.name  # TF32 on CUDA moves a few edge pixels


# ----------------------------------------------------------------------------- resume on CUDA

def _config():
    return config(restore_best=False)  # the CPU loop tests' recipe


def _train(out: Path):
    from helpers.train.loop import train

    model = tiny_clipseg().to("cuda")
    result = train(
        model, SquaresDataset(16, seed=1), SquaresDataset(8, seed=2), _config(), out, collate,
        forward_fn=stock_forward, progress=False,
    )
    return result, model


def run_interrupted_on_cuda(out: Path) -> None:
    """Train until epoch 1 is checkpointed, then die as a killed process would."""
    import helpers.train.loop as loop

    real = loop.save_state

    def save_then_die(*args: Any) -> None:
        real(*args)
        raise Interrupted

    with pytest.MonkeyPatch.context() as mp, pytest.raises(Interrupted):
        mp.setattr(loop, "save_state", save_then_die)
        _train(out)


@pytest.mark.slow
def test_resume_on_cuda_ends_with_the_metrics_of_an_uninterrupted_run(tmp_path):
    whole, model_a = _train(tmp_path / "whole")
    assert model_device(model_a).type == "cuda"
    run_interrupted_on_cuda(tmp_path / "resumed")
    assert pd.read_csv(tmp_path / "resumed" / "log.csv")["epoch"].tolist() == [1]
    torch.manual_seed(12345)  # a new process: the checkpoint supplies every random state
    resumed, model_b = _train(tmp_path / "resumed")
    assert model_device(model_b).type == "cuda"
    volatile = ["seconds", "items_per_s", "peak_mem_mb"]
    # GPU kernels may sum in a different order between runs: equal up to float noise
    pd.testing.assert_frame_equal(
        resumed.log.drop(columns=volatile, errors="ignore"),
        whole.log.drop(columns=volatile, errors="ignore"),
        check_exact=False, atol=1e-4, rtol=1e-4,
    )
    assert resumed.best_epoch == whole.best_epoch


def test_a_runs_peak_memory_leaves_out_what_other_models_hold(tmp_path):
    # 06 keeps each trained mode on the GPU while the next trains: its peak is not theirs
    alone, _ = _train(tmp_path / "alone")
    other = torch.empty(256 * 2**20, dtype=torch.uint8, device="cuda")  # 256 MB held elsewhere
    beside, _ = _train(tmp_path / "beside")
    del other
    assert beside.log["peak_mem_mb"].max() < 256
    assert beside.log["peak_mem_mb"].max() == pytest.approx(alone.log["peak_mem_mb"].max(), abs=8)


# ------------------------------------------------------------------ the smoke profile on CUDA


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.realdata
def test_smoke_profile_runs_on_cuda_and_records_it():
    from helpers.core.io import read_json
    from helpers.core.paths import SHARED_ROBOFLOW_DIR, metrics_dir
    from helpers.course import runner as run_notebooks
    from helpers.course.profiles import PROFILES

    smoke = PROFILES["smoke"]
    for export in (smoke.cracks_export, smoke.taping_export):
        if not Path(export).is_dir():
            pytest.skip(f"real Roboflow export not found at {export} (under {SHARED_ROBOFLOW_DIR})")
    run = "test-gpu-smoke"
    names = run_notebooks.available_notebooks()
    run_notebooks.run("smoke", names, {"run_name": run, "device": "cuda"})
    for name in names[3:]:  # 04-07 run models
        m = read_json(metrics_dir(run) / f"{name}.json")
        assert m["runtime"]["device"] == "cuda", name
        assert m["runtime"]["gpu"], name
        assert m["runtime"]["precision"] in ("bf16", "fp16"), name
        assert m["peak_memory_mb"] > 0, name
        assert m["evaluation_cap"]["max_images_per_split_and_class"] == smoke.eval_max_images
