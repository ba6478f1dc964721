"""predict on bad input: every failure is a named skip or a one-line refusal, never a traceback."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.core.runtime import RuntimeUnavailable, model_device
from helpers.demo.tiny_model import build_tiny_model
from helpers.inference import mask_files as predict


def _photo(path, width, height, seed=0):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def _cli(capsys, *args):
    """Exit code and stderr of the command line (SystemExit or return)."""
    try:
        code = predict.main([str(a) for a in args])
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


def _refused(code, err, *words):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for word in words:
        assert word in lines[0], lines[0]


def test_batched_masks_of_mixed_sizes_equal_one_image_at_a_time(segmenter):
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((40, 60), (64, 32))]
    prompts = ["segment crack", "segment taping area"]
    probs = [segmenter.probability_maps([img], prompts)[0].numpy() for img in images]
    thresholds = [float(np.median(p)) for p in probs[0]]
    batched = segmenter.binary_masks(images, prompts, thresholds)
    for img, prob, mask in zip(images, probs, batched, strict=True):
        assert mask.shape == (2, *img.shape[:2]) and mask.dtype == np.uint8
        stored = np.round(prob * 255) / np.float32(255)  # the 8-bit maps evaluation scores
        expected = stored.astype(np.float32) >= np.asarray(thresholds, np.float32)[:, None, None]
        np.testing.assert_array_equal(mask.astype(bool), expected)
    together = segmenter.probability_maps(images, prompts)
    for one, both in zip(probs, together, strict=True):
        np.testing.assert_allclose(one, both.numpy(), atol=1e-5)


def test_segmenter_keeps_the_model_where_it_is_and_asks_the_runtime(model_dir):
    model, processor = build_tiny_model()
    seg = predict.Segmenter(model, processor)
    assert seg.model is model and seg.device == model_device(model) == torch.device("cpu")
    assert seg.runtime.precision == "fp32"
    with pytest.raises(RuntimeUnavailable, match="needs a CUDA device"):
        predict.Segmenter(model, processor, precision="bf16")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeUnavailable, match="available: .*cpu"):
            predict.Segmenter.from_pretrained(str(model_dir), device="cuda")


def test_every_unreadable_file_is_a_named_skip_and_the_run_goes_on(tmp_path, segmenter):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _photo(inputs / "good.png", 48, 40)
    _photo(inputs / "big.png", 60, 50, seed=2)
    _photo(inputs / "sliver.png", 64, 1, seed=3)
    (inputs / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    summary = predict.predict_files(
        segmenter, [inputs], ["segment crack"], tmp_path / "out", progress=False,
        max_pixels=2500, batch_size=2,
    )
    reasons = {s["file"].split("/")[-1]: s["reason"] for s in summary["skipped"]}
    assert set(reasons) == {"big.png", "sliver.png", "broken.jpg"}
    assert "--max-pixels" in reasons["big.png"]
    assert f"under {predict.MIN_SIDE} px" in reasons["sliver.png"]
    assert summary["masks_written"] == 1 and summary["images"] == 1
    assert (tmp_path / "out" / "good__segment_crack.png").is_file()
    run = json.loads((tmp_path / "out" / predict.RUN_FILE).read_text())
    assert run["masks_written"] == 1 and len(run["skipped"]) == 3


def test_a_preprocessing_error_skips_only_that_file(tmp_path, segmenter, monkeypatch):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _photo(inputs / "a.png", 30, 30)
    _photo(inputs / "b.png", 33, 30)
    original = segmenter.preprocess

    def picky(images):
        if images[0].shape[1] == 33:
            raise ValueError("processor says no")
        return original(images)

    monkeypatch.setattr(segmenter, "preprocess", picky)
    summary = predict.predict_files(
        segmenter, [inputs], ["segment crack"], tmp_path / "out", progress=False
    )
    assert summary["masks_written"] == 1
    assert summary["skipped"] == [
        {"file": str(inputs / "b.png"), "reason": "ValueError: processor says no"}
    ]


def test_run_file_counts_only_masks_on_disk_even_when_interrupted(tmp_path, segmenter, monkeypatch):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        _photo(inputs / f"img{i}.png", 32, 32, seed=i)
    real_write = predict.write_mask_png

    def flaky(path, mask):
        if "img1" in str(path):
            raise OSError("disk full")
        return real_write(path, mask)

    monkeypatch.setattr(predict, "write_mask_png", flaky)
    summary = predict.predict_files(
        segmenter, [inputs], ["segment crack"], tmp_path / "out", progress=False, batch_size=1
    )
    assert summary["masks_written"] == 2 == len(list((tmp_path / "out").glob("*.png")))
    assert any("disk full" in s["reason"] for s in summary["skipped"])

    calls = []
    real_masks = segmenter.binary_masks

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_masks(*args, **kwargs)

    monkeypatch.setattr(predict, "write_mask_png", real_write)
    monkeypatch.setattr(segmenter, "binary_masks", interrupted)
    with pytest.raises(KeyboardInterrupt):
        predict.predict_files(
            segmenter, [inputs], ["segment crack"], tmp_path / "out2", progress=False,
            batch_size=1,
        )
    run = json.loads((tmp_path / "out2" / predict.RUN_FILE).read_text())
    assert run["masks_written"] == 1 == len(list((tmp_path / "out2").glob("*.png")))


def test_prompts_that_share_a_file_name_are_refused_and_duplicates_run_once(tmp_path, segmenter):
    _photo(tmp_path / "wall.png", 32, 32)
    with pytest.raises(ValueError, match=r"'segment crack' vs 'segment crack\.'"):
        predict.predict_files(
            segmenter, [tmp_path / "wall.png"], ["segment crack", "segment crack."],
            tmp_path / "out", progress=False,
        )
    assert not (tmp_path / "out").exists()
    with pytest.warns(predict.PredictWarning, match="duplicate"):
        summary = predict.predict_files(
            segmenter, [tmp_path / "wall.png"], ["segment crack", " segment crack"],
            tmp_path / "out", progress=False,
        )
    assert summary["prompts"] == ["segment crack"] and summary["masks_written"] == 1


def test_cli_refuses_misuse_in_one_line(tmp_path, model_dir, capsys, monkeypatch):
    _photo(tmp_path / "wall.png", 32, 32)
    base = [tmp_path / "wall.png", "--model", model_dir, "--device", "cpu"]
    out = ["--out", tmp_path / "out"]

    code, err = _cli(capsys, *base, *out, "--prompt", "segment crack", "--prompt", "segment crack.")
    _refused(code, err, "same mask file name")
    code, err = _cli(capsys, tmp_path / "wall.png", "--model", tmp_path / "nothing", *out,
                     "--prompt", "segment crack")
    _refused(code, err, "nothing")
    (tmp_path / "afile").write_text("x")
    code, err = _cli(capsys, *base, "--out", tmp_path / "afile", "--prompt", "segment crack")
    _refused(code, err, "is a file")
    crack = ["--prompt", "segment crack"]
    code, err = _cli(capsys, *base, "--out", tmp_path / "afile" / "sub", *crack)
    _refused(code, err, "cannot write to --out")
    if os.geteuid() != 0:  # root may write anywhere
        (tmp_path / "locked").mkdir(mode=0o500)
        code, err = _cli(capsys, *base, "--out", tmp_path / "locked", "--prompt", "segment crack")
        _refused(code, err, "cannot write to --out")
    (tmp_path / "b").mkdir()
    _photo(tmp_path / "b" / "wall.jpg", 32, 32)
    code, err = _cli(capsys, tmp_path / "b", *base, *out, "--prompt", "segment crack")
    _refused(code, err, "share the stem")
    code, err = _cli(capsys, *base, *out, "--prompt", "segment " + "x" * 240)
    _refused(code, err, "bytes")
    if not torch.cuda.is_available():
        code, err = _cli(capsys, *base, *out, "--prompt", "segment crack", "--device", "cuda")
        _refused(code, err, "cuda", "available: cpu")

    def no_loading(*args, **kwargs):
        raise AssertionError("the model must not load")

    monkeypatch.setattr(predict.Segmenter, "from_pretrained", no_loading)
    code, err = _cli(capsys, *base, *out, "--prompt", "segment " + "a, " * 50)
    _refused(code, err, "tokens long", "at most 77")
    assert not (tmp_path / "out").exists()


def test_cli_refuses_a_truncated_checkpoint(tmp_path, model_dir, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in model_dir.iterdir():
        data = f.read_bytes()
        cut = len(data) // 3 if f.suffix == ".safetensors" else len(data)
        (broken / f.name).write_bytes(data[:cut])
    _photo(tmp_path / "wall.png", 32, 32)
    code, err = _cli(capsys, tmp_path / "wall.png", "--model", broken, "--device", "cpu",
                     "--out", tmp_path / "out", "--prompt", "segment crack")
    _refused(code, err, "cannot load the model")


def test_cli_warns_about_an_unknown_prompt_naming_its_settings(tmp_path, model_dir, capsys):
    _photo(tmp_path / "wall.png", 32, 32)
    code, err = _cli(capsys, tmp_path / "wall.png", "--model", model_dir, "--device", "cpu",
                     "--out", tmp_path / "out", "--prompt", "segment cracks")
    assert code == 0
    assert "'segment cracks'" in err and "threshold 0.5" in err and "'none'" in err
    assert (tmp_path / "out" / "wall__segment_cracks.png").is_file()
