"""How close the course's own paths come to what the model alone allows, side by side.

    python -m helpers.bench --quick --device cpu            # tiny model, demo data, ~2 min
    python -m helpers.bench --full-size --cracks PATH --taping PATH --json bench.json

Each line compares a course path with the model-only work it wraps, at the same batch size,
device and precision, in one run:

- training: items/s of the course loop (`helpers.train.loop.train`: data loading, augmentation,
  transfer, forward, loss, backward, optimizer) against the model-only training step on a batch
  already on the device, per mode (decoder, lora, full);
- evaluation: images/s of `evaluate_model` (every prompt of the image's class, 5 of them, full
  resolution, sweep counts, stored probabilities) against the model-only forward of 5 prompts;
- predict: images/s of `predict_files` (JPEG in, PNG masks out, 2 prompts) against the
  model-only forward of 2 prompts;
- prompts: ms per image of this course's forward and of the stock
  `CLIPSegForImageSegmentation` forward, for 1 and 5 prompts, and where one prompt's time goes:
  the vision pass (shared by all prompts of an image) and one decoder pass (paid per prompt).

It is a benchmark, not a test: numbers depend on the machine and on what else runs there.
`--quick` uses the tiny model on the demo data; `--full-size` the real checkpoint's
architecture with random weights on real exports.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch

from helpers.core.distributed import forward_module
from helpers.core.io import write_json
from helpers.core.progress import quiet_library_bars
from helpers.core.runtime import Runtime, RuntimeUnavailable, get_runtime, synchronize
from helpers.course.profiles import get_profile
from helpers.course.runs import datasets, lora_settings, train_config
from helpers.course.sources import prepared_data
from helpers.data.dataset import make_collate
from helpers.data.images import load_rgb
from helpers.data.prompts import DEFAULT_PROMPT, PROMPTS
from helpers.evaluate.predictions import evaluate_model
from helpers.inference.loading import load_model
from helpers.inference.mask_files import predict_files
from helpers.inference.segmenter import Segmenter
from helpers.model.forward import decode_prompts, segment_prompts, vision_activations
from helpers.model.modes import MODES, apply_mode
from helpers.train.loop import default_forward, train
from helpers.train.losses import BCEDiceLoss
from helpers.train.step import TrainStep, make_optimizer
from helpers.train.validate import device_batch

JSON_KEYS = (
    "device",
    "precision",
    *(f"train.{m}.{k}" for m in MODES for k in ("items_per_s", "model_only_items_per_s")),
    "evaluate.images_per_s",
    "evaluate.model_only_images_per_s",
    "predict.images_per_s",
    "predict.model_only_images_per_s",
    "prompts.ours_ms_per_image_1",
    "prompts.ours_ms_per_image_5",
    "prompts.stock_ms_per_image_1",
    "prompts.stock_ms_per_image_5",
    "prompts.vision_ms_per_image",
    "prompts.decoder_ms_per_image_and_prompt",
)


def _timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Seconds per call of `fn` (after `warmup` calls), synchronising the device around it."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


# ----------------------------------------------------------------------------- set-up


@dataclass(frozen=True)
class BenchSize:
    """How much work each measurement does."""

    batch_size: int
    train_steps: int  # steps per timed epoch (one untimed warm-up epoch runs first)
    eval_images: int
    predict_images: int
    repeats: int  # timed calls of each model-only measurement


QUICK = BenchSize(batch_size=8, train_steps=12, eval_images=24, predict_images=24, repeats=5)
FULL_SIZE_CPU = BenchSize(batch_size=2, train_steps=3, eval_images=4, predict_images=4, repeats=2)
FULL_SIZE_GPU = BenchSize(
    batch_size=32, train_steps=30, eval_images=256, predict_images=512, repeats=20
)


def _setup(quick: bool, cracks: str | None, taping: str | None, rt: Runtime):
    """(profile, manifest): demo data + tiny model, or real exports + the full-size model."""

    runtime = {"device": str(rt.device), "precision": rt.precision, "num_workers": rt.num_workers}
    if quick:
        profile = get_profile("demo", **runtime)
    else:
        if not cracks or not taping:
            raise ValueError("--full-size needs --cracks PATH and --taping PATH (Roboflow exports)")
        profile = get_profile(
            "full", model="full-size-random", cracks_export=cracks, taping_export=taping, **runtime
        )
    return profile, prepared_data(profile).manifest


def _rows(manifest: pd.DataFrame, splits: Sequence[str], n: int) -> pd.DataFrame:
    """Up to n rows of the splits, alternating classes (deterministic)."""
    rows = manifest[manifest["split"].isin(splits)]
    groups = [g for _, g in rows.groupby("dataset", sort=True)]
    picked = [
        groups[i % len(groups)].iloc[i // len(groups)]
        for i in range(n)
        if i // len(groups) < len(groups[i % len(groups)])
    ]
    return pd.DataFrame(picked).reset_index(drop=True)


def _device_batch(segmenter, images: list[np.ndarray], prompts: Sequence[str]):
    """Pixel values and tokens of a batch, on the model's device."""
    pixels = segmenter.preprocess(images).to(segmenter.device)
    tokens = segmenter.processor.tokenizer(list(prompts), padding=True, return_tensors="pt")
    return pixels, tokens["input_ids"].to(segmenter.device), tokens[
        "attention_mask"
    ].to(segmenter.device)


# ----------------------------------------------------------------------------- measurements


def bench_train(profile, manifest: pd.DataFrame, rt: Runtime, mode: str, size: BenchSize):
    """(course loop items/s, model-only items/s) for one mode at the same batch and precision."""

    base, processor = load_model(profile.model)
    torch.manual_seed(profile.seed)
    model = apply_mode(base, mode, lora_settings(profile) if mode == "lora" else None)
    model.to(rt.device)
    train_ds, _ = datasets(profile, manifest, processor.image_processor)
    collate = make_collate(processor.tokenizer)
    cfg = train_config(
        profile, mode, epochs=2, max_steps_per_epoch=size.train_steps,
        batch_size=size.batch_size, patience=None, precision=rt.precision,
        num_workers=rt.num_workers, restore_best=False,
    )
    with tempfile.TemporaryDirectory() as tmp:
        result = train(model, train_ds, None, cfg, tmp, collate, progress=False)
    course = float(result.log["items_per_s"].iloc[-1])  # the second (warm) epoch

    optimizer = make_optimizer(model, mode, cfg.lr, cfg.tower_lr, cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    criterion = BCEDiceLoss(cfg.bce_weight, cfg.dice_weight, pos_weight=cfg.bce_pos_weight)
    step = TrainStep(
        forward_module(model, default_forward), criterion, optimizer, scheduler,
        rt.grad_scaler(), rt, cfg.grad_clip,
    )
    train_ds.set_epoch(1)
    batch = device_batch(collate([train_ds[i] for i in range(size.batch_size)]), rt.device)
    model.train()
    seconds = _timed(lambda: step(batch), rt.device, size.repeats * 2, warmup=2)
    del model, base, optimizer
    return course, size.batch_size / seconds


def bench_evaluate(segmenter, manifest: pd.DataFrame, size: BenchSize) -> tuple[float, float]:
    """(evaluate_model images/s, model-only images/s), every image with its class's 5 prompts."""

    rows = _rows(manifest, ("val", "test"), size.eval_images)
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        evaluate_model(
            segmenter, rows, tmp, key="bench", splits=("val", "test"),
            batch_size=size.batch_size, progress=False,
        )
        synchronize(segmenter.device)
        course = len(rows) / (time.perf_counter() - start)

    images = [load_rgb(p) for p in rows["image_path"][: size.batch_size]]
    images = (images * size.batch_size)[: size.batch_size]
    pixels, ids, mask = _device_batch(segmenter, images, PROMPTS["cracks"])

    def forward() -> None:
        with torch.inference_mode(), segmenter.runtime.autocast():
            segment_prompts(segmenter.model, pixels, ids, mask)

    seconds = _timed(forward, segmenter.device, size.repeats)
    return course, len(images) / seconds


def _jpegs(manifest: pd.DataFrame, folder: Path, n: int, side: int = 640) -> list[np.ndarray]:
    """n photos of the data as side x side JPEGs in `folder` (what predict reads)."""


    folder.mkdir(parents=True, exist_ok=True)
    paths = list(manifest["image_path"])
    images = []
    for i in range(n):
        rgb = cv2.resize(load_rgb(paths[i % len(paths)]), (side, side))
        cv2.imwrite(str(folder / f"photo_{i:04d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        images.append(rgb)
    return images


def bench_predict(segmenter, manifest: pd.DataFrame, size: BenchSize) -> tuple[float, float]:
    """(predict_files images/s, model-only images/s): 640x640 JPEGs in, PNGs out, 2 prompts."""

    prompts = [DEFAULT_PROMPT["cracks"], DEFAULT_PROMPT["taping"]]
    with tempfile.TemporaryDirectory() as tmp:
        images = _jpegs(manifest, Path(tmp) / "in", size.predict_images)
        _jpegs(manifest, Path(tmp) / "warm_in", size.batch_size)
        predict_files(  # warm-up on one batch (threads, allocator, kernels), as model-only gets
            segmenter, [Path(tmp) / "warm_in"], prompts, Path(tmp) / "warm_out", progress=False,
            batch_size=size.batch_size,
        )
        start = time.perf_counter()
        summary = predict_files(
            segmenter, [Path(tmp) / "in"], prompts, Path(tmp) / "out", progress=False,
            batch_size=size.batch_size,
        )
        course = summary["images"] / (time.perf_counter() - start)

    batch = (images * size.batch_size)[: size.batch_size]
    pixels, ids, mask = _device_batch(segmenter, batch, prompts)

    def forward() -> None:
        with torch.inference_mode(), segmenter.runtime.autocast():
            segment_prompts(segmenter.model, pixels, ids, mask)

    seconds = _timed(forward, segmenter.device, size.repeats)
    return course, len(batch) / seconds


def _best_of_rounds(
    calls: dict[str, Callable[[], Any]], device: torch.device, repeats: int, rounds: int = 3
) -> dict[str, float]:
    """Seconds per call of each of `calls`, timed in turn for `rounds` rounds; the best round.

    Timing the calls in turn spreads a slow spell of the machine over all of them, and the best
    of several rounds is the least disturbed reading, so ratios between the calls hold.
    """
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(rounds):
        for name, fn in calls.items():
            best[name] = min(best[name], _timed(fn, device, repeats))
    return best


def bench_prompts(model, processor, rt: Runtime, size: BenchSize) -> dict[str, float]:
    """ms per image, this course's forward and the stock forward, for 1 and 5 prompts, and
    where the time of one prompt goes: the vision pass (once per image, whatever the number of
    prompts) and one decoder pass (once per image and prompt). Every extra prompt costs one
    decoder pass, so 5 prompts cost (vision + 5 decoder) / (vision + 1 decoder) of one."""

    b = size.batch_size
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(b, 3, 352, 352, generator=g).to(rt.device)
    calls: dict[str, Callable[[], Any]] = {}
    for n in (1, 5):
        tokens = processor.tokenizer(PROMPTS["cracks"][:n], padding=True, return_tensors="pt")
        ids, mask = tokens["input_ids"].to(rt.device), tokens["attention_mask"].to(rt.device)

        def ours(ids=ids, mask=mask) -> None:
            with torch.inference_mode(), rt.autocast():
                segment_prompts(model, pixels, ids, mask)

        def stock(ids=ids, mask=mask, n=n) -> None:  # one row per image-prompt pair
            with torch.inference_mode(), rt.autocast():
                model(
                    pixel_values=pixels.repeat_interleave(n, dim=0),
                    input_ids=ids.repeat(b, 1),
                    attention_mask=mask.repeat(b, 1),
                )

        calls[f"ours_ms_per_image_{n}"] = ours
        calls[f"stock_ms_per_image_{n}"] = stock

    with torch.inference_mode(), rt.autocast():
        activations = vision_activations(model, pixels)
    generator = torch.Generator().manual_seed(1)
    embedding = torch.randn(1, model.config.projection_dim, generator=generator)
    embedding = embedding.to(rt.device, activations[0].dtype)

    def vision() -> None:
        with torch.inference_mode(), rt.autocast():
            vision_activations(model, pixels)

    def decoder() -> None:
        with torch.inference_mode(), rt.autocast():
            decode_prompts(model, activations, embedding)

    calls["vision_ms_per_image"] = vision
    calls["decoder_ms_per_image_and_prompt"] = decoder
    seconds = _best_of_rounds(calls, rt.device, size.repeats)
    return {name: 1000 * s / b for name, s in seconds.items()}


# ----------------------------------------------------------------------------- the run


def run_bench(
    quick: bool = True,
    device: str = "auto",
    precision: str = "auto",
    cracks: str | None = None,
    taping: str | None = None,
    modes: Sequence[str] = MODES,
    size: BenchSize | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Every measurement of the module docstring, as a nested dict (see `JSON_KEYS`)."""

    rt = get_runtime(device, precision)
    on_gpu = rt.device.type == "cuda"
    size = size or (QUICK if quick else FULL_SIZE_GPU if on_gpu else FULL_SIZE_CPU)
    profile, manifest = _setup(quick, cracks, taping, rt)
    log(f"bench: {'tiny model, demo data' if quick else 'full-size model, real exports'}; {rt}")
    result: dict[str, Any] = {
        "device": rt.device.type,
        "gpu": rt.gpu_name(),
        "precision": rt.precision,
        "model": profile.model,
        "batch_size": size.batch_size,
        "train": {},
    }
    for mode in modes:
        course, only = bench_train(profile, manifest, rt, mode, size)
        result["train"][mode] = {"items_per_s": course, "model_only_items_per_s": only}
        log(f"  train {mode}: {course:.1f} items/s (model only {only:.1f})")

    model, processor = load_model(profile.model)
    model.to(rt.device).eval()
    segmenter = Segmenter(model, processor, precision=rt.precision)
    course, only = bench_evaluate(segmenter, manifest, size)
    result["evaluate"] = {"images_per_s": course, "model_only_images_per_s": only}
    log(f"  evaluate: {course:.1f} images/s (model only {only:.1f})")
    course, only = bench_predict(segmenter, manifest, size)
    result["predict"] = {"images_per_s": course, "model_only_images_per_s": only}
    log(f"  predict: {course:.1f} images/s (model only {only:.1f})")
    result["prompts"] = bench_prompts(model, processor, rt, size)
    return result


def lookup(result: dict[str, Any], key: str) -> Any:
    """A dotted key of a nested result, e.g. "train.lora.items_per_s"."""
    value: Any = result
    for part in key.split("."):
        value = value[part]
    return value


def table(result: dict[str, Any]) -> pd.DataFrame:
    """Throughput side by side: the course's path, the model alone, and their ratio."""
    rows = []
    for mode, r in result["train"].items():
        rows.append((f"train {mode} (items/s)", r["items_per_s"], r["model_only_items_per_s"]))
    for name in ("evaluate", "predict"):
        r = result[name]
        rows.append((f"{name} (images/s)", r["images_per_s"], r["model_only_images_per_s"]))
    frame = pd.DataFrame(rows, columns=["path", "course", "model only"]).set_index("path")
    frame["ratio"] = frame["course"] / frame["model only"]
    return frame.round(3)


def prompts_table(result: dict[str, Any]) -> pd.DataFrame:
    """ms per image of this course's forward and the stock forward, for 1 and 5 prompts."""
    p = result["prompts"]
    frame = pd.DataFrame(
        {
            "this course (ms/image)": [p["ours_ms_per_image_1"], p["ours_ms_per_image_5"]],
            "stock (ms/image)": [p["stock_ms_per_image_1"], p["stock_ms_per_image_5"]],
        },
        index=["1 prompt", "5 prompts"],
    )
    frame["course / stock"] = frame.iloc[:, 0] / frame.iloc[:, 1]
    return frame.round(3)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.bench",
        description="Course paths against the model alone, side by side, in one run.",
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--quick", action="store_true", help="tiny model on the demo data")
    which.add_argument(
        "--full-size", action="store_true",
        help="the real checkpoint's architecture (random weights) on real exports",
    )
    parser.add_argument("--cracks", help="cracks export for --full-size (COCO or YOLOv8)")
    parser.add_argument("--taping", help="drywall-join export for --full-size")
    parser.add_argument("--device", default="auto", help="auto, cuda, mps or cpu (default auto)")
    parser.add_argument("--precision", default="auto", help="auto, bf16, fp16 or fp32")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    quiet_library_bars()
    try:
        result = run_bench(
            quick=not args.full_size, device=args.device, precision=args.precision,
            cracks=args.cracks, taping=args.taping,
        )
    except (RuntimeUnavailable, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    ratio = 1 / result["prompts"]["ours_ms_per_image_1"] * result["prompts"]["ours_ms_per_image_5"]
    print(table(result).to_string())
    print()
    print(prompts_table(result).to_string())
    p = result["prompts"]
    print(f"5 prompts cost {ratio:.2f}x one prompt (this course's forward): a vision pass of "
          f"{p['vision_ms_per_image']:.2f} ms per image is shared by every prompt, a decoder pass "
          f"of {p['decoder_ms_per_image_and_prompt']:.2f} ms is paid per prompt")
    if args.json:
        print("wrote", write_json(Path(args.json), result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
