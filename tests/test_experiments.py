"""The course protocol's run cache: what makes two training runs the same."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from helpers.core.cache import key_hash
from helpers.course.profiles import get_profile
from helpers.course.runs import run_key, train_config


def _manifest(fraction: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "image_path": ["a.jpg", "b.jpg"],
            "mask_path": ["a.png", "b.png"],
            "split": ["train", "val"],
            "dataset": ["cracks", "taping"],
            "mask_fraction": [fraction, 0.1],
        }
    )


def test_fingerprint_follows_mask_content_and_training_settings() -> None:
    demo = get_profile("demo")
    cfg = train_config(demo, "lora")

    def fingerprint(cfg, manifest) -> str:
        return key_hash(run_key(demo, cfg, manifest, None))

    key = fingerprint(cfg, _manifest(0.02))
    assert key == fingerprint(train_config(demo, "lora"), _manifest(0.02))
    # regenerated masks under the same file names are new data
    assert key != fingerprint(cfg, _manifest(0.03))
    heavier_bce = train_config(demo, "lora", bce_weight=2.0)
    assert key != fingerprint(heavier_bce, _manifest(0.02))
    heavier = get_profile("demo", bce_weight=demo.bce_weight + 1)
    assert train_config(heavier, "lora").bce_weight == demo.bce_weight + 1


def _changed(value):
    """Another valid value of a setting's type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 3
    if isinstance(value, float):
        return value / 2
    if value is None:
        return 3
    return {"auto": "fp32"}.get(value, value)


@pytest.mark.parametrize("mode", ["decoder", "lora", "full"])
def test_every_profile_setting_the_loop_uses_reaches_its_config(mode: str) -> None:
    """A changed profile value shows up in `train_config`; none is dropped or renamed."""
    from dataclasses import fields

    from helpers.course.profiles import Profile
    from helpers.course.runs import LOOP_ONLY
    from helpers.train.config import TrainConfig

    loop_fields = {f.name for f in fields(TrainConfig)}
    profile_fields = {f.name for f in fields(Profile)}
    assert not LOOP_ONLY & profile_fields  # a loop-only setting the profile holds is dropped
    assert loop_fields - LOOP_ONLY <= profile_fields
    demo = get_profile("demo")
    lr_field = {"full": "full_lr"}.get(mode, "lr")
    for name in sorted((loop_fields - LOOP_ONLY) | {lr_field}):
        source = name if name in profile_fields and name != "lr" else lr_field
        profile = get_profile("demo", **{source: _changed(getattr(demo, source))})
        cfg = train_config(profile, mode)
        target = "lr" if source == lr_field else name
        if name == "tower_lr" and mode != "full":
            assert cfg.tower_lr is None  # only full fine-tuning trains the towers
            continue
        assert getattr(cfg, target) == getattr(profile, source), (mode, name)


def _tiny_manifest(tmp_path) -> pd.DataFrame:
    import cv2
    import numpy as np

    rows = []
    for k in range(6):
        image = np.random.default_rng(k).integers(0, 255, (48, 64, 3), dtype=np.uint8)
        mask = np.zeros((48, 64), np.uint8)
        mask[10:30, 5 + k : 40] = 255
        cv2.imwrite(str(tmp_path / f"i{k}.png"), image)
        cv2.imwrite(str(tmp_path / f"m{k}.png"), mask)
        rows.append({
            "image_path": str(tmp_path / f"i{k}.png"), "mask_path": str(tmp_path / f"m{k}.png"),
            "split": "train" if k < 4 else "val", "dataset": ["cracks", "taping"][k % 2],
            "mask_fraction": float((mask > 0).mean()),
        })
    return pd.DataFrame(rows)


def _runs_in(tmp_path, monkeypatch) -> pd.DataFrame:
    """Training runs go under `tmp_path`; returns a tiny manifest of images there."""
    import helpers.course.runs as experiments

    monkeypatch.setattr(experiments, "run_folder", lambda run, mode: tmp_path / run / mode)
    return _tiny_manifest(tmp_path)


def _small(**overrides):
    """The demo profile cut to one optimiser step of batch 2 on the CPU."""
    return get_profile("demo", epochs=1, batch_size=2, max_steps_per_epoch=1, device="cpu",
                       **overrides)


def test_trained_model_runs_on_the_profile_runtime_and_records_it(tmp_path, monkeypatch) -> None:
    import helpers.course.runs as experiments
    from helpers.core.runtime import model_device

    rows = _runs_in(tmp_path, monkeypatch)
    profile = _small()
    run = experiments.trained_model(profile, "decoder", pd.DataFrame(rows), "r", progress=False)
    assert run.runtime is not None and run.runtime.device.type == "cpu"
    assert model_device(run.model) == run.runtime.device
    assert run.info["runtime"]["device"] == "cpu" and run.info["runtime"]["precision"] == "fp32"
    assert run.info["peak_memory_mb"] > 0
    again = experiments.trained_model(profile, "decoder", pd.DataFrame(rows), "r", progress=False)
    assert again.runtime == run.runtime and again.info["fingerprint"] == run.info["fingerprint"]


def test_a_run_with_other_settings_is_kept_aside_not_deleted(tmp_path, monkeypatch) -> None:
    import helpers.course.runs as experiments

    rows = _runs_in(tmp_path, monkeypatch)
    profile = _small()
    first = experiments.trained_model(profile, "decoder", rows, "r", progress=False)
    other = _small(lr=1e-3)
    second = experiments.trained_model(other, "decoder", rows, "r", progress=False)
    assert second.info["fingerprint"] != first.info["fingerprint"]
    kept = tmp_path / "r" / f"decoder.settings-{first.info['fingerprint']}"
    assert (kept / "best" / "checkpoint.json").is_file() and (kept / "log.csv").is_file()
    again = experiments.trained_model(other, "decoder", rows, "r", retrain=True, progress=False)
    assert again.info["fingerprint"] == second.info["fingerprint"] and kept.is_dir()


def test_an_interrupted_run_resumes_and_only_a_finished_one_is_reused(tmp_path, monkeypatch):
    import helpers.course.runs as experiments
    import helpers.train.loop as loop
    from helpers.core.cache import read_record

    rows = _runs_in(tmp_path, monkeypatch)
    profile = get_profile("demo", epochs=2, batch_size=2, max_steps_per_epoch=1, device="cpu")
    real_save = loop.save_state

    class Killed(Exception):
        """Stands in for a process killed right after epoch 1's checkpoint."""

    def save_then_die(*args):
        real_save(*args)
        raise Killed

    monkeypatch.setattr(loop, "save_state", save_then_die)
    with pytest.raises(Killed):
        experiments.trained_model(profile, "decoder", rows, "r", progress=False)
    folder = tmp_path / "r" / "decoder"
    first = json.loads((folder / "run.json").read_text())
    assert not first["completed"] and not read_record(folder).done
    first_epoch = pd.read_csv(folder / "log.csv").iloc[0].to_dict()
    assert first_epoch["epoch"] == 1

    monkeypatch.setattr(loop, "save_state", real_save)
    second = experiments.trained_model(profile, "decoder", rows, "r", progress=False)
    assert not second.from_cache and second.info["completed"] and read_record(folder).done
    assert list(second.log["epoch"]) == [1, 2]
    assert second.log.iloc[0].to_dict() == first_epoch  # resumed after epoch 1, not retrained
    assert second.info["fingerprint"] == first["fingerprint"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["decoder"]  # none kept aside

    third = experiments.trained_model(profile, "decoder", rows, "r", progress=False)
    assert third.from_cache and third.info == second.info


def test_a_run_stored_in_an_older_format_is_retrained_not_adopted(tmp_path, monkeypatch):
    """A run folder without a key record (an older format) is kept aside and trained again."""
    import helpers.course.runs as experiments
    from helpers.core.cache import KEY_FILE

    rows = _runs_in(tmp_path, monkeypatch)
    profile = _small()
    experiments.trained_model(profile, "decoder", rows, "r", progress=False)
    (tmp_path / "r" / "decoder" / KEY_FILE).unlink()  # as an older format left it
    again = experiments.trained_model(profile, "decoder", rows, "r", progress=False)
    assert not again.from_cache and again.info["completed"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "decoder", "decoder.settings-unrecorded"
    ]


def test_retrain_keeps_a_finished_run_of_other_settings_aside(tmp_path, monkeypatch):
    import helpers.course.runs as experiments

    rows = _runs_in(tmp_path, monkeypatch)
    profile = _small()
    first = experiments.trained_model(profile, "decoder", rows, "r", progress=False)
    other = _small(lr=1e-3)
    experiments.trained_model(other, "decoder", rows, "r", retrain=True, progress=False)
    kept = tmp_path / "r" / f"decoder.settings-{first.info['fingerprint']}"
    assert (kept / "best" / "checkpoint.json").is_file()


def test_the_evaluation_key_follows_the_best_checkpoint(tmp_path, monkeypatch):
    """A run trained again under the same settings gets evaluated again (GPUs differ)."""
    import helpers.course.runs as experiments

    rows = _runs_in(tmp_path, monkeypatch)
    profile = _small()
    run = experiments.trained_model(profile, "decoder", rows, "r", progress=False)
    key = run.evaluation_key
    assert key == experiments.trained_model(profile, "decoder", rows, "r",
                                            progress=False).evaluation_key
    meta = run.checkpoint / "checkpoint.json"
    experiments.write_json(meta, {**experiments.read_json(meta), "value": 0.123})
    assert run.evaluation_key != key


def test_a_run_kept_aside_comes_back_when_its_settings_do(tmp_path, monkeypatch):
    import helpers.course.runs as experiments

    rows = _runs_in(tmp_path, monkeypatch)
    profile = _small()
    other = _small(lr=1e-3)
    first = experiments.trained_model(profile, "decoder", rows, "r", progress=False)
    second = experiments.trained_model(other, "decoder", rows, "r", progress=False)
    back = experiments.trained_model(profile, "decoder", rows, "r", progress=False)
    assert back.from_cache and back.info == first.info
    kept = tmp_path / "r" / f"decoder.settings-{second.info['fingerprint']}"
    assert (kept / "best" / "checkpoint.json").is_file()  # the other run, kept in turn


def test_a_trained_models_segmenter_runs_at_the_precision_it_was_trained_at(monkeypatch):
    import helpers.inference.segmenter as inference
    from helpers.course.runs import TrainedModel

    made = []
    monkeypatch.setattr(
        inference, "Segmenter", lambda model, processor, precision: made.append(precision)
    )
    runtime = SimpleNamespace(precision="fp16")
    run = TrainedModel("lora", object(), object(), Path("."), pd.DataFrame(), {}, runtime)
    run.segmenter()
    TrainedModel("lora", object(), object(), Path("."), pd.DataFrame(), {}).segmenter()
    assert made == ["fp16", "auto"]
