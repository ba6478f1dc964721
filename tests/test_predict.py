"""The predict API and CLI: names, sizes, values, settings, feature reuse and bad input."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from helpers.core.io import write_json
from helpers.inference import mask_files as predict


def _photo(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def test_masks_are_named_single_channel_binary_and_at_original_size(tmp_path, segmenter):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _photo(inputs / "wall_a.jpg", 320, 320)
    _photo(inputs / "wall_b.png", 544, 384, seed=1)
    out = tmp_path / "out"
    prompts = ["segment crack", "segment taping area"]
    summary = predict.predict_files(segmenter, [inputs], prompts, out, progress=False)
    assert summary["masks_written"] == 4
    for stem, size in (("wall_a", (320, 320)), ("wall_b", (384, 544))):
        for slug in ("segment_crack", "segment_taping_area"):
            mask = cv2.imread(str(out / f"{stem}__{slug}.png"), cv2.IMREAD_UNCHANGED)
            assert mask is not None, f"{stem}__{slug}.png missing"
            assert mask.ndim == 2 and mask.shape == size and mask.dtype == np.uint8
            assert set(np.unique(mask)) <= {0, 255}


def test_vision_tower_runs_once_per_batch_for_all_prompts(monkeypatch, segmenter):
    import helpers.model.forward as forward

    calls = []
    original = forward.vision_activations

    def counting(model, pixel_values):
        calls.append(pixel_values.shape[0])
        return original(model, pixel_values)

    monkeypatch.setattr(forward, "vision_activations", counting)
    image = np.zeros((100, 150, 3), np.uint8)
    probs = segmenter.probability_maps(
        [image], ["segment crack", "segment fracture", "segment tape line"]
    )
    assert calls == [1]
    assert probs[0].shape == (3, 100, 150)


def test_threshold_decides_and_saved_settings_are_used_and_recorded(tmp_path, model_dir):
    seg = predict.Segmenter.from_pretrained(str(model_dir), device="cpu")
    image = np.full((64, 64, 3), 128, np.uint8)
    prob = seg.probability_maps([image], ["segment crack"])[0][0].numpy()
    stored = np.round(prob * 255) / np.float32(255)  # masks come from the 8-bit probabilities
    low = predict.PredictSettings(default_threshold=max(float(stored.min()), 1e-4))
    high = predict.PredictSettings(default_threshold=min(float(stored.max()) + 1e-3, 0.9999))
    assert seg.masks(image, ["segment crack"], low)["segment crack"].all()
    assert not seg.masks(image, ["segment crack"], high)["segment crack"].any()

    folder = tmp_path / "model"
    folder.symlink_to(model_dir, target_is_directory=True)
    write_json(
        tmp_path / "settings" / predict.SETTINGS_FILE,
        {"threshold": {"cracks": 0.35}, "postprocess": {"cracks": "remove_small"}},
    )
    settings = predict.PredictSettings.read(tmp_path / "settings")
    assert settings.for_prompt("segment wall crack") == (0.35, "remove_small")
    assert settings.for_prompt("segment taping area") == (0.5, "none")
    assert settings.for_prompt("segment something else") == (0.5, "none")


def test_cli_reports_bad_files_and_finishes_the_folder(tmp_path, model_dir, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _photo(inputs / "good.jpg", 96, 80)
    (inputs / "notes.txt").write_text("not an image")
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    out = tmp_path / "out"
    code = predict.main(
        [
            str(inputs),
            "--prompt",
            "segment crack",
            "--model",
            str(model_dir),
            "--out",
            str(out),
            "--threshold",
            "0.4",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    err = capsys.readouterr().err
    assert "notes.txt" in err and "broken.jpg" in err
    assert (out / "good__segment_crack.png").is_file()
    run = json.loads((out / "predict_run.json").read_text())
    assert run["settings"]["segment crack"] == {"threshold": 0.4, "postprocess": "none"}
    assert {s["file"].split("/")[-1] for s in run["skipped"]} == {"notes.txt", "broken.jpg"}


def test_empty_prompt_and_bad_threshold_are_refused(tmp_path, model_dir, segmenter):
    with pytest.raises(ValueError, match="empty prompt"):
        segmenter.masks(np.zeros((8, 8, 3), np.uint8), ["  "])
    with pytest.raises(SystemExit):
        predict.main([str(tmp_path), "--prompt", "", "--model", str(model_dir), "--out", "x"])
    with pytest.raises(SystemExit):
        predict.main(
            [
                str(tmp_path),
                "--prompt",
                "segment crack",
                "--model",
                str(model_dir),
                "--out",
                "x",
                "--threshold",
                "1.5",
            ]
        )


def test_two_inputs_with_one_stem_are_refused_before_anything_is_written(tmp_path, segmenter):
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
        _photo(tmp_path / sub / "wall.jpg", 32, 32)
    with pytest.raises(ValueError, match="share the stem"):
        predict.predict_files(
            segmenter,
            [tmp_path / "a", tmp_path / "b"],
            ["segment crack"],
            tmp_path / "out",
            progress=False,
        )
    assert not (tmp_path / "out").exists()


def test_training_checkpoint_loads_on_its_recorded_base(tmp_path, model_dir):
    from helpers.inference.loading import load_for_inference, load_model
    from helpers.model.modes import apply_mode, save_trainable

    base, _ = load_model(str(model_dir))
    lora = apply_mode(base, "lora")
    with __import__("torch").no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    run = tmp_path / "run"
    save_trainable(lora, "lora", run / "best")
    write_json(run / "run.json", {"base_model": str(model_dir)})
    model, processor = load_for_inference(run / "best")
    seg = predict.Segmenter(model, processor)
    ref = predict.Segmenter(lora, processor)
    image = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    np.testing.assert_allclose(
        seg.probability_maps([image], ["segment crack"])[0].numpy(),
        ref.probability_maps([image], ["segment crack"])[0].numpy(),
        atol=1e-5,
    )
    # without run.json the adapter config still names its base
    (run / "run.json").unlink()
    assert load_for_inference(run / "best")[0] is not None
    # a decoder checkpoint records no base: the error says what to pass
    decoder, _ = load_model(str(model_dir))
    save_trainable(apply_mode(decoder, "decoder"), "decoder", tmp_path / "dec" / "best")
    with pytest.raises(ValueError, match="base model"):
        load_for_inference(tmp_path / "dec" / "best")
