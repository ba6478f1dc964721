"""Training loop: learning, logs, checkpoints, exact resume, early stopping, config checks.

On one CPU a resumed run is bitwise equal to an uninterrupted one, so resume is compared
exactly.

A CLIPSeg built from a tiny config (32x32 images) learns a toy task: segment the bright
square. Two "classes" with fixed prompts stand in for cracks and taping.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset
from transformers import CLIPSegConfig, CLIPSegForImageSegmentation

import helpers.train.loop as loop
from helpers.core.runtime import RuntimeUnavailable, get_runtime
from helpers.train.checkpoint import (
    STATE_FILE,
    CheckpointError,
    find_checkpoint,
    load_meta,
)
from helpers.train.loop import (
    TrainConfig,
    TrainResult,
    evaluate_segmentation,
    train,
)

SIZE = 32
PROMPT_IDS = {"cracks": [0, 5, 6, 1, 1], "taping": [0, 7, 8, 9, 1]}
PROMPT_MASK = {"cracks": [1, 1, 1, 1, 0], "taping": [1, 1, 1, 1, 1]}
LOG_COLUMNS = [
    "epoch", "step", "train_loss", "lr", "val_loss", "val_iou_cracks", "val_dice_cracks",
    "val_iou_taping", "val_dice_taping", "val_miou", "val_mdice", "items", "items_per_s",
    "seconds", "peak_mem_mb",
]


def tiny_clipseg(seed: int = 0) -> CLIPSegForImageSegmentation:
    """A CLIPSeg of ~60k parameters with frozen towers (decoder-only training)."""
    config = CLIPSegConfig(
        text_config={
            "vocab_size": 16, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 8,
            "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1,
        },
        vision_config={
            "image_size": SIZE, "patch_size": 8, "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 3, "num_attention_heads": 2,
        },
        projection_dim=16, extract_layers=[1, 2], reduce_dim=16,
        decoder_num_attention_heads=2, decoder_intermediate_size=32,
    )
    torch.manual_seed(seed)
    model = CLIPSegForImageSegmentation(config)
    for param in model.clip.parameters():
        param.requires_grad_(False)
    return model


class SquaresDataset(Dataset):
    """Noise images with a bright square; the label is the square. `set_epoch` is recorded."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.images = rng.normal(0, 0.3, (n, 3, SIZE, SIZE)).astype(np.float32)
        self.labels = np.zeros((n, SIZE, SIZE), dtype=np.float32)
        for i in range(n):
            side = int(rng.integers(8, 16))
            y, x = rng.integers(0, SIZE - side, 2)
            self.images[i, :, y : y + side, x : x + side] += 2.0
            self.labels[i, y : y + side, x : x + side] = 1.0
        self.datasets = ["cracks" if i % 2 == 0 else "taping" for i in range(n)]
        self.epochs_seen: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "pixel_values": torch.from_numpy(self.images[i]),
            "labels": torch.from_numpy(self.labels[i]),
            "dataset": self.datasets[i],
            "is_negative": False,
            "index": i,
        }


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    names = [it["dataset"] for it in items]
    return {
        "pixel_values": torch.stack([it["pixel_values"] for it in items]),
        "labels": torch.stack([it["labels"] for it in items]),
        "input_ids": torch.tensor([PROMPT_IDS[n] for n in names]),
        "attention_mask": torch.tensor([PROMPT_MASK[n] for n in names]),
        "datasets": names,
        "prompts": names,
        "is_negative": torch.tensor([it["is_negative"] for it in items]),
        "indices": torch.tensor([it["index"] for it in items]),
    }


def stock_forward(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    out = model(
        pixel_values=batch["pixel_values"], input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
    )
    return out.logits


DECODER_FILE = "decoder.safetensors"  # what a "decoder" checkpoint holds


class Interrupted(Exception):
    """Stands in for a process killed right after a checkpoint."""


def run_interrupted(out_dir: Path, cfg: TrainConfig, after: int = 1, **kwargs: Any) -> None:
    """Train until epoch `after` is checkpointed, then die as a killed process would."""
    real = loop.save_state

    def save_then_die(*args: Any) -> None:
        real(*args)
        if args[1].epoch == after:
            raise Interrupted

    with pytest.MonkeyPatch.context() as mp, pytest.raises(Interrupted):
        mp.setattr(loop, "save_state", save_then_die)
        run(out_dir, cfg, **kwargs)


def config(**overrides: Any) -> TrainConfig:
    base = {
        "mode": "decoder", "epochs": 3, "batch_size": 4, "lr": 3e-3, "warmup_fraction": 0.1,
        "patience": None, "seed": 7,
    }
    base.update(overrides)
    return TrainConfig(**base)


def run(out_dir: Path, cfg: TrainConfig, **kwargs: Any) -> tuple[TrainResult, torch.nn.Module]:
    model = kwargs.pop("model", None) or tiny_clipseg()
    kwargs.setdefault("forward_fn", stock_forward)
    train_ds = kwargs.pop("train_ds", None) or SquaresDataset(16, seed=1)
    result = train(
        model, train_ds, SquaresDataset(6, seed=2), cfg, out_dir, collate, progress=False,
        **kwargs,
    )
    return result, model


def trainable(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> tuple[TrainResult, dict, Path]:
    out = tmp_path_factory.mktemp("run_a")
    result, model = run(out, config(restore_best=False))
    return result, trainable(model), out


def test_loss_decreases_on_a_learnable_task(tmp_path: Path) -> None:
    result, _ = run(tmp_path, config(epochs=4, lr=1e-2, warmup_fraction=0.0))
    losses = result.log["train_loss"].to_numpy()
    assert losses[-1] < 0.8 * losses[0]
    assert result.log["val_miou"].max() > result.log["val_miou"].iloc[0]
    assert not result.stopped_early


def test_log_files_and_checkpoints(uninterrupted: tuple[TrainResult, dict, Path]) -> None:
    result, _, out = uninterrupted
    for name in ("log.json", "log.csv"):
        assert (out / name).is_file()
    csv = pd.read_csv(out / "log.csv")
    assert set(LOG_COLUMNS) <= set(csv.columns)
    assert csv["epoch"].tolist() == [1, 2, 3]
    assert csv["step"].tolist() == [4, 8, 12]  # 16 images, batch 4
    assert (csv["peak_mem_mb"] > 0).all()
    rows = json.loads((out / "log.json").read_text())
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["val_miou"] == pytest.approx(csv["val_miou"].iloc[-1])
    assert set(result.log.columns) == set(csv.columns)
    # validation mIoU is the mean of the two per-class IoUs
    assert csv["val_miou"].to_numpy() == pytest.approx(
        ((csv["val_iou_cracks"] + csv["val_iou_taping"]) / 2).to_numpy()
    )
    # cosine schedule: the lr ends near 0 after the warm-up
    assert csv["lr"].iloc[-1] < csv["lr"].max() * 0.1
    last, best = find_checkpoint(out / "last"), find_checkpoint(out / "best")
    assert last is not None and best is not None
    assert (last / STATE_FILE).is_file() and (last / DECODER_FILE).is_file()
    assert (best / DECODER_FILE).is_file() and not (best / STATE_FILE).exists()
    assert load_meta(last)["epoch"] == 3
    assert load_meta(best)["epoch"] == result.best_epoch
    assert result.best_metric == pytest.approx(csv["val_miou"].max())
    assert json.loads((out / "config.json").read_text())["seed"] == 7
    assert not list(out.glob(".*"))  # no temporary or half-written folders left behind


def test_resume_after_interruption_matches_uninterrupted_run(
    uninterrupted: tuple[TrainResult, dict, Path], tmp_path: Path
) -> None:
    result_a, params_a, _ = uninterrupted
    cfg = config(restore_best=False)
    run_interrupted(tmp_path, cfg, after=1)
    assert pd.read_csv(tmp_path / "log.csv")["epoch"].tolist() == [1]
    # a new process would build a fresh model and dataset; the checkpoint supplies the rest
    torch.manual_seed(12345)  # the global RNG state of the new process is irrelevant
    train_ds = SquaresDataset(16, seed=1)
    result_b, model_b = run(tmp_path, cfg, train_ds=train_ds)
    assert train_ds.epochs_seen == [2, 3]
    volatile = ["seconds", "items_per_s", "peak_mem_mb"]
    pd.testing.assert_frame_equal(
        result_b.log.drop(columns=volatile), result_a.log.drop(columns=volatile), check_exact=True
    )
    params_b = trainable(model_b)
    assert params_b.keys() == params_a.keys()
    for name, value in params_a.items():
        torch.testing.assert_close(params_b[name], value, atol=0, rtol=0, msg=name)
    assert result_b.best_epoch == result_a.best_epoch
    # calling again on a finished run trains nothing and returns the same result
    again, _ = run(tmp_path, cfg)
    assert again.log["epoch"].tolist() == [1, 2, 3]


def test_resume_with_another_config_is_refused(tmp_path: Path) -> None:
    run_interrupted(tmp_path, config(epochs=2, max_steps_per_epoch=1))
    with pytest.raises(ValueError, match=r"another TrainConfig \(lr"):
        run(tmp_path, config(epochs=2, max_steps_per_epoch=1, lr=1e-4))


def test_early_stopping_on_a_plateau(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scores = iter([0.2, 0.5, 0.5, 0.4, 0.9, 0.9])

    def scripted(*args: Any, **kwargs: Any) -> dict[str, float]:
        return {"miou": next(scores)}

    monkeypatch.setattr(loop, "evaluate_segmentation", scripted)
    cfg = config(epochs=6, patience=2, max_steps_per_epoch=1)
    model = tiny_clipseg()
    result, _ = run(tmp_path, cfg, model=model)
    assert result.stopped_early
    assert result.log["epoch"].tolist() == [1, 2, 3, 4]
    assert result.best_epoch == 2 and result.best_metric == pytest.approx(0.5)
    assert result.log["improved"].tolist() == [True, True, False, False]
    assert load_meta(tmp_path / "best")["epoch"] == 2
    # restore_best: the model holds the weights of epoch 2, not epoch 4
    from safetensors.torch import load_file

    best = load_file(str(tmp_path / "best" / DECODER_FILE))
    for name, value in trainable(model).items():
        torch.testing.assert_close(value, best[name.removeprefix("decoder.")], atol=0, rtol=0)


def test_evaluation_scores_per_class_and_skips_negatives() -> None:
    labels = torch.zeros(3, 4, 4)
    labels[0, :2] = 1.0  # cracks: half the image
    labels[1, :, :1] = 1.0  # taping: one column
    logits = torch.full((3, 4, 4), -5.0)
    logits[0, :1] = 5.0  # predicts half of the crack: IoU 0.5, Dice 2/3
    logits[1, :, :1] = 5.0  # exact: IoU 1
    batch = {
        "labels": labels, "datasets": ["cracks", "taping", "taping"],
        "is_negative": torch.tensor([False, False, True]), "pixel_values": torch.zeros(3),
    }
    model = torch.nn.Linear(1, 1)
    scores = evaluate_segmentation(model, [batch], lambda m, b: logits, threshold=0.5)
    assert scores["iou_cracks"] == pytest.approx(0.5)
    assert scores["dice_cracks"] == pytest.approx(2 / 3)
    assert scores["iou_taping"] == pytest.approx(1.0)  # the negative taping pair is skipped
    assert scores["miou"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("mode", "adapter", "unknown mode 'adapter'"),
        ("precision", "fp8", "unknown precision 'fp8'"),
        ("epochs", 0, "epochs must be an int >= 1"),
        ("warmup_fraction", 1.5, "warmup_fraction"),
        ("patience", 0, "patience"),
        ("threshold", 1.0, "threshold"),
        ("lr", 0.0, "lr must be > 0"),
        ("bce_pos_weight", 0.0, "bce_pos_weight must be > 0"),
    ],
)
def test_config_validation_errors_are_clear(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value})


def test_precision_is_fp32_on_cpu_and_untrainable_models_are_refused(tmp_path: Path) -> None:
    assert get_runtime("cpu", "auto").amp_dtype is None
    with pytest.raises(RuntimeUnavailable, match="needs a CUDA device"):
        run(tmp_path, config(precision="bf16"))
    model = tiny_clipseg()
    model.requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        run(tmp_path, config(), model=model)


def test_lora_with_default_forward_and_save_resumes_exactly(tmp_path: Path) -> None:
    """The project's own forward (gradients into the towers) and adapter saving."""
    modes = pytest.importorskip("helpers.model.modes")

    def lora_model() -> torch.nn.Module:
        torch.manual_seed(3)
        settings = modes.LoraSettings(r=2, alpha=4, dropout=0.1)
        return modes.apply_mode(tiny_clipseg(), "lora", settings)

    cfg = config(mode="lora", epochs=2, max_steps_per_epoch=2, lr=1e-2, restore_best=False)
    start = trainable(lora_model())
    whole, model_a = run(tmp_path / "a", cfg, model=lora_model(), forward_fn=None)
    run_interrupted(tmp_path / "b", cfg, model=lora_model(), forward_fn=None)
    resumed, model_b = run(tmp_path / "b", cfg, model=lora_model(), forward_fn=None)
    params_a, params_b = trainable(model_a), trainable(model_b)
    for name in params_a:
        torch.testing.assert_close(params_b[name], params_a[name], atol=0, rtol=0, msg=name)
    # adapters in the vision and text towers learned (not only the decoder's)
    changed = {n for n in params_a if not torch.equal(params_a[n], start[n])}
    assert any("vision_model" in n for n in changed)
    assert any("text_model" in n for n in changed)
    assert (tmp_path / "b" / "last" / "adapter_model.safetensors").is_file()
    volatile = ["seconds", "items_per_s", "peak_mem_mb"]
    pd.testing.assert_frame_equal(
        resumed.log.drop(columns=volatile), whole.log.drop(columns=volatile), check_exact=True
    )


WEIGHT_FILES = {
    "decoder": "decoder.safetensors", "lora": "adapter_model.safetensors",
    "full": "model.safetensors",
}


@pytest.mark.parametrize("mode", ["decoder", "lora", "full"])
def test_a_course_checkpoint_stores_its_weights_once_and_resumes_exactly(
    tmp_path: Path, mode: str
) -> None:
    """Only the mode's own weight files; resume and best read those."""
    modes = pytest.importorskip("helpers.model.modes")

    def model() -> torch.nn.Module:
        torch.manual_seed(3)
        lora = modes.LoraSettings(r=2, alpha=4) if mode == "lora" else None
        return modes.apply_mode(tiny_clipseg(), mode, lora)

    cfg = config(mode=mode, epochs=2, max_steps_per_epoch=2, lr=1e-2, restore_best=True)
    whole, model_a = run(tmp_path / "a", cfg, model=model(), forward_fn=None)
    run_interrupted(tmp_path / "b", cfg, model=model(), forward_fn=None)
    resumed, model_b = run(tmp_path / "b", cfg, model=model(), forward_fn=None)
    for folder in ("last", "best"):
        files = sorted(p.name for p in (tmp_path / "b" / folder).glob("*.safetensors"))
        assert files == [WEIGHT_FILES[mode]], (folder, files)
    params_a, params_b = trainable(model_a), trainable(model_b)
    for name in params_a:
        torch.testing.assert_close(params_b[name], params_a[name], atol=0, rtol=0, msg=name)
    assert resumed.log["val_miou"].tolist() == whole.log["val_miou"].tolist()


def test_a_damaged_adapter_is_named_in_one_line(tmp_path: Path) -> None:
    modes = pytest.importorskip("helpers.model.modes")

    def model() -> torch.nn.Module:
        torch.manual_seed(3)
        return modes.apply_mode(tiny_clipseg(), "lora", modes.LoraSettings(r=2, alpha=4))

    cfg = config(mode="lora", epochs=2, max_steps_per_epoch=1)
    run_interrupted(tmp_path, cfg, model=model(), forward_fn=None)
    path = tmp_path / "last" / WEIGHT_FILES["lora"]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(CheckpointError) as err:
        run(tmp_path, cfg, model=model(), forward_fn=None)
    assert str(path) in str(err.value) and "damaged" in str(err.value)
    assert "\n" not in str(err.value)


def test_failed_checkpoint_write_keeps_the_previous_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import helpers.train.state as state

    cfg = config(epochs=3, max_steps_per_epoch=1)
    run_interrupted(tmp_path, cfg)

    def failing_save(model: torch.nn.Module, mode: str, folder: Path) -> None:
        (Path(folder) / "partial.bin").write_bytes(b"half")
        raise OSError("disk full")

    with monkeypatch.context() as mp, pytest.raises(OSError, match="disk full"):
        mp.setattr(state, "save_trainable", failing_save)
        run(tmp_path, cfg)
    assert load_meta(tmp_path / "last")["epoch"] == 1
    assert not (tmp_path / "last" / "partial.bin").exists()
    assert not list(tmp_path.glob(".*"))
    # a crash between the two renames of a swap leaves the old folder beside the target
    (tmp_path / "last").rename(tmp_path / ".last.old")
    result, _ = run(tmp_path, cfg)
    assert result.log["epoch"].tolist() == [1, 2, 3]


def test_rng_snapshot_and_epoch_generators() -> None:
    import random

    from helpers.train.seed import capture_rng_state, make_generator, restore_rng_state

    snapshot = capture_rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    restore_rng_state(snapshot)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first

    def order(seed: int, epoch: int) -> list[int]:
        return torch.randperm(50, generator=make_generator(seed, epoch)).tolist()

    assert order(42, 1) == order(42, 1)
    assert order(42, 1) != order(42, 2)
    assert order(42, 1) != order(43, 1)


def test_a_run_without_a_complete_last_checkpoint_is_never_wiped(tmp_path: Path) -> None:
    out = tmp_path / "run"
    run_interrupted(out, config(epochs=2))
    (out / "last" / "checkpoint.json").unlink()  # e.g. killed while writing it
    before = sorted(p.name for p in out.iterdir())
    with pytest.raises(CheckpointError) as err:
        run(out, config(epochs=2))
    message = str(err.value)
    assert str(out / "last" / "checkpoint.json") in message and "remove the run folder" in message
    assert "\n" not in message
    assert sorted(p.name for p in out.iterdir()) == before  # best/, logs: all still there
    assert (out / "best" / "checkpoint.json").is_file()
    shutil.rmtree(out)  # asked to start over
    result, _ = run(out, config(epochs=2))
    assert result.log["epoch"].tolist() == [1, 2]


@pytest.mark.parametrize("damaged", [DECODER_FILE, "training_state.pt"])
def test_a_truncated_checkpoint_file_is_named_in_one_line(tmp_path: Path, damaged: str) -> None:
    out = tmp_path / "run"
    run_interrupted(out, config(epochs=2))
    path = out / "last" / damaged
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    with pytest.raises(CheckpointError) as err:
        run(out, config(epochs=2))
    assert str(path) in str(err.value) and "damaged" in str(err.value)
    assert "\n" not in str(err.value)


class EpochSquares(SquaresDataset):
    """Items that change with `set_epoch`, as augmented items do: a worker that missed the
    epoch would serve the previous epoch's pixels."""

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = super().__getitem__(i)
        epoch = self.epochs_seen[-1] if self.epochs_seen else 0
        return {**item, "pixel_values": item["pixel_values"] + 0.05 * epoch}


def test_loader_workers_train_exactly_as_loading_in_process(tmp_path: Path) -> None:
    """Two loader workers give the same run as loading in-process, with items that change
    every epoch (the loop builds each epoch's loader after `set_epoch`; validation keeps its
    workers)."""
    cfg = {"epochs": 3, "lr": 1e-2}
    in_process, model_a = run(
        tmp_path / "a", config(**cfg, num_workers=0), train_ds=EpochSquares(16, seed=1)
    )
    workers, model_b = run(
        tmp_path / "b", config(**cfg, num_workers=2), train_ds=EpochSquares(16, seed=1)
    )
    columns = ["train_loss", "val_loss", "val_miou"]
    pd.testing.assert_frame_equal(in_process.log[columns], workers.log[columns])
    weights_b = model_b.state_dict()
    for name, a in model_a.state_dict().items():
        assert torch.equal(a, weights_b[name]), name
