"""Prompted segmentation of photos: a Python API and a command line.

    python -m helpers.predict photos/ extra.jpg --prompt "segment crack" \
        --prompt "segment taping area" --model outputs/demo/models/lora/model --out masks/

For every image and prompt it writes `<image stem>__<prompt with underscores>.png`: one
channel, values {0, 255}, the input image's own size. Images are read and preprocessed by
background threads, run through the model in batches (one vision pass per image and one
decoder call for all prompts, see `helpers.inference.segmenter`), thresholded on the device, and the
masks are post-processed and written by a background writer.

Bad input never stops a run: a file that is not an image, cannot be decoded, is larger than
`--max-pixels` (default `helpers.data.images.DEFAULT_MAX_PIXELS`, 150 million pixels, so
80 MP photos pass; it replaces PIL's own decompression-bomb limit) or has a side shorter than
`MIN_SIDE` pixels is skipped with its reason. `<out>/predict_run.json` is always written and
counts only the masks that are on disk.

Inputs are compared by their real paths: one file named twice (`d/x.jpg`, `d/../d/x.jpg`, a
link) is run once. A folder inside an input folder is not searched and is listed as skipped.
When `--out` is an input folder, the masks predict wrote there (`<stem>__<slug>.png` for this
run's prompts or those of the `predict_run.json` there) are listed as skipped, never segmented.
When `predict_run.json` cannot be written (a full disk), the run record is printed instead.

Refused before the model loads (one line, exit code 2): output names that would collide
(e.g. the prompts "segment crack" and "segment crack.", two inputs with the same stem, or any
two image/prompt pairs that give the same full file name),
prompts longer than the tokenizer's limit (77 tokens for CLIP), names too long for the file
system, an `--out` that is a file or cannot be written, a device that is absent, and a model
that cannot be loaded. Exact duplicate prompts are run once (with a warning); a prompt of no
known class gets the default threshold and post-processing (with a warning naming them).

Threshold and post-processing: `--threshold` and `--postprocess` when given; otherwise the
`predict_settings.json` saved beside the model (chosen on validation by notebook 05);
otherwise 0.5 and no post-processing. What was used is written to `<out>/predict_run.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from helpers.core.background import BackgroundWriter, read_ahead
from helpers.core.distributed import gather, is_main, start_from_env, stop, world
from helpers.core.io import sweep_temp_files, write_json, write_mask_png
from helpers.core.progress import bar, quiet_library_bars
from helpers.core.runtime import (
    DEVICES,
    PRECISIONS,
    RuntimeUnavailable,
    default_workers,
    get_runtime,
)
from helpers.data.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    ImageReadError,
    check_pixels,
    image_info,
    load_rgb,
)
from helpers.data.prompts import class_of_prompt, prompt_slug
from helpers.inference.postprocess import METHODS, postprocess
from helpers.inference.segmenter import (
    DEFAULT_THRESHOLD,
    SETTINGS_FILE,
    PredictSettings,
    Segmenter,
    check_prompts,
)

__all__ = [
    "DEFAULT_THRESHOLD",
    "SETTINGS_FILE",
    "PredictSettings",
    "Segmenter",
    "collect_images",
    "main",
    "mask_name",
    "plan_prompts",
    "predict_files",
]

MIN_SIDE = 8  # pixels; thinner images carry nothing to segment
NAME_LIMIT = 255 - 40  # bytes of a file name, minus room for the temporary name of atomic writes
TOKEN_LIMIT = 77  # CLIP's text positions, used when a tokenizer does not state its own
RUN_FILE = "predict_run.json"


class PredictWarning(UserWarning):
    """Something the user should know about a prediction run that does not stop it."""


def mask_name(image_path: str | Path, prompt: str) -> str:
    """`<image stem>__<prompt slug>.png`, e.g. `wall_01__segment_crack.png`."""
    return f"{Path(image_path).stem}__{prompt_slug(prompt)}.png"


def plan_prompts(
    prompts: Sequence[str], settings: PredictSettings | None = None
) -> tuple[list[str], list[str]]:
    """Prompts to run (exact duplicates dropped) and warnings for the user.

    Two different prompts with the same file-name slug would overwrite each other's masks: a
    `ValueError` lists them. A prompt of no known class is warned about, naming the threshold
    and post-processing it gets.
    """
    settings = settings or PredictSettings()
    cleaned = check_prompts(prompts)
    notes: list[str] = []
    unique = list(dict.fromkeys(cleaned))
    dropped = [p for p in dict.fromkeys(cleaned) if cleaned.count(p) > 1]
    if dropped:
        notes.append(f"duplicate prompt(s) {dropped} are run once")
    by_slug: dict[str, list[str]] = {}
    for p in unique:
        by_slug.setdefault(prompt_slug(p), []).append(p)
    clashes = [names for names in by_slug.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(" vs ".join(repr(n) for n in names) for names in clashes)
        raise ValueError(
            f"prompts that give the same mask file name: {listed}; keep one of each"
        )
    for p in unique:
        try:
            class_of_prompt(p)
        except ValueError:
            threshold, method = settings.for_prompt(p)
            notes.append(
                f"prompt {p!r} is not a known prompt of any class: it gets threshold "
                f"{threshold} and post-processing {method!r}"
            )
    return unique, notes


def check_prompt_lengths(tokenizer, prompts: Sequence[str]) -> None:
    """A `ValueError` naming each prompt longer than the tokenizer's limit (77 for CLIP)."""
    limit = getattr(tokenizer, "model_max_length", TOKEN_LIMIT)
    limit = limit if isinstance(limit, int) and 0 < limit < 100_000 else TOKEN_LIMIT
    for p in prompts:
        n = len(tokenizer(p, verbose=False)["input_ids"])
        if n > limit:
            short = p if len(p) <= 60 else p[:57] + "..."
            raise ValueError(
                f"prompt {short!r} is {n} tokens long; the model reads at most {limit} "
                "(start and end tokens included): shorten it"
            )


def own_mask_names(out_dir: str | Path, prompts: Sequence[str]) -> Callable[[Path], bool]:
    """A test for "a mask predict wrote in `out_dir`": a file there named `<stem>__<slug>.png`
    for a slug of `prompts` or of the prompts recorded in `out_dir`'s earlier run file."""
    out = Path(out_dir).resolve()
    slugs = {prompt_slug(p) for p in prompts}
    try:
        earlier = json.loads((out / RUN_FILE).read_text(encoding="utf-8")).get("prompts") or []
        slugs |= {prompt_slug(p) for p in earlier if isinstance(p, str)}
    except (OSError, ValueError, AttributeError):
        pass
    endings = tuple(f"__{slug}.png" for slug in slugs if slug)

    def is_own(path: Path) -> bool:
        return path.parent.resolve() == out and bool(endings) and path.name.endswith(endings)

    return is_own


def collect_images(
    inputs: Iterable[str | Path],
    is_own_mask: Callable[[Path], bool] | None = None,
) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files named directly or found in folders (sorted, each real file once), and the
    inputs skipped, why: not images, folders inside a folder, masks `is_own_mask` names."""
    found: dict[Path, Path] = {}  # real path -> the spelling first given
    skipped: list[tuple[str, str]] = []

    def add(f: Path) -> None:
        if f.suffix.lower() not in IMAGE_SUFFIXES:
            skipped.append((str(f), "not an image file (by its extension)"))
        elif is_own_mask is not None and is_own_mask(f):
            skipped.append((str(f), "a mask written by predict (in --out); not segmented"))
        else:
            found.setdefault(f.resolve(), f)

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for f in sorted(p for p in path.iterdir() if not p.name.startswith(".")):
                if f.is_file():
                    add(f)
                elif f.is_dir():
                    skipped.append((str(f), "a folder (folders inside an input are not searched)"))
        elif path.is_file():
            add(path)
        else:
            skipped.append((str(path), "no such file or folder"))
    return list(found.values()), skipped


def check_outputs(images: Sequence[Path], prompts: Sequence[str]) -> None:
    """Every (image, prompt) pair must get its own, not too long, mask file name.

    Stems are compared ignoring case (case-insensitive file systems would merge them).
    """
    stems: dict[str, Path] = {}
    for img in images:
        key = img.stem.casefold()
        if key in stems and stems[key] != img:
            raise ValueError(
                f"{img} and {stems[key]} share the stem {img.stem!r}, so their masks would "
                "overwrite each other; predict them into different --out folders"
            )
        stems[key] = img
    names: dict[str, tuple[Path, str]] = {}
    for img in images:
        for p in prompts:
            name = mask_name(img, p)
            other = names.setdefault(name.casefold(), (img, p))
            if other != (img, p):
                raise ValueError(
                    f"{img.name} with prompt {p!r} and {other[0].name} with prompt {other[1]!r} "
                    f"both give the mask name {name}; rename one image or change the prompt"
                )
            if len(name.encode()) > NAME_LIMIT:
                raise ValueError(
                    f"mask name {name[:40]}... for {img.name} would be {len(name.encode())} "
                    f"bytes; at most {NAME_LIMIT} fit: shorten the prompt or the file name"
                )


def check_out_dir(out_dir: str | Path) -> Path:
    """Create `out_dir` if needed; a `ValueError` when it is a file or cannot be written."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as err:
        raise ValueError(f"cannot write to --out {out}: {err.strerror or err}") from err
    return out


def _reason(err: Exception) -> str:
    """A one-line reason for a skipped file."""
    if isinstance(err, ImageReadError):
        return err.reason
    if isinstance(err, Image.DecompressionBombError):
        return f"refused by PIL's decompression-bomb limit ({err})"
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else 'no message'}"


def _loader(segmenter: Segmenter, max_pixels: int) -> Callable[[Path], tuple[tuple[int, int], Any]]:
    """Read, check and preprocess one file: ((height, width), pixel values (3, S, S))."""

    def load(path: Path) -> tuple[tuple[int, int], Any]:
        width, height = image_info(path).size
        check_pixels(path, (width, height), max_pixels)
        if min(width, height) < MIN_SIDE:
            raise ValueError(f"{width}x{height} pixels: sides under {MIN_SIDE} px are refused")
        image = load_rgb(path, max_pixels=max_pixels)
        if min(image.shape[:2]) < MIN_SIDE:  # e.g. a header that disagrees with the data
            raise ValueError(f"decoded to {image.shape[1]}x{image.shape[0]} pixels")
        return image.shape[:2], segmenter.preprocess([image])[0]

    return load


def _write(path: Path, mask: np.ndarray, method: str) -> Path:
    return write_mask_png(path, postprocess(mask, method))


def predict_files(
    segmenter: Segmenter,
    inputs: Iterable[str | Path],
    prompts: Sequence[str],
    out_dir: str | Path,
    settings: PredictSettings | None = None,
    progress: bool = True,
    batch_size: int = 8,
    num_workers: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Write a mask per image and prompt into `out_dir`; returns a summary of the run.

    `num_workers` threads read and preprocess images (default: the runtime's choice, at
    least 1); `warn` receives each warning line (default: `warnings.warn`).
    """

    if batch_size < 1 or max_pixels < 1:
        raise ValueError(f"batch_size and max_pixels must be >= 1, got {batch_size}, {max_pixels}")
    settings = settings or PredictSettings()
    prompts, notes = plan_prompts(prompts, settings)
    for note in notes:
        (warn or (lambda m: warnings.warn(m, PredictWarning, stacklevel=3)))(note)
    check_prompt_lengths(segmenter.processor.tokenizer, prompts)
    images, skipped = collect_images(inputs, own_mask_names(out_dir, prompts))
    check_outputs(images, prompts)
    images, skipped = shard_inputs(images, skipped)
    out_dir = check_out_dir(out_dir)
    sweep_temp_files(out_dir)  # what a killed earlier run left behind
    chosen = [settings.for_prompt(p) for p in prompts]
    thresholds = [t for t, _ in chosen]
    workers = num_workers if num_workers is not None else max(1, default_workers(segmenter.device))
    writer = BackgroundWriter(threads=2, max_pending=4 * batch_size * len(prompts))

    def run_batch(batch: list[tuple[Path, tuple[int, int], Any]]) -> None:
        """Masks of a batch, queued for writing; a failing batch is retried image by image."""
        try:
            masks = segmenter.binary_masks(
                None,
                prompts,
                thresholds,
                sizes=[size for _, size, _ in batch],
                pixel_values=torch.stack([pix for _, _, pix in batch]),
            )
        except Exception:
            if len(batch) == 1:
                raise
            for item in batch:  # find the one that fails
                run_one([item])
            return
        for (path, _, _), per_prompt in zip(batch, masks, strict=True):
            for p, mask, (_, method) in zip(prompts, per_prompt, chosen, strict=True):
                writer.submit(str(path), _write, out_dir / mask_name(path, p), mask, method)

    def run_one(batch: list[tuple[Path, tuple[int, int], Any]]) -> None:
        try:
            run_batch(batch)
        except Exception as err:
            skipped.append((str(batch[0][0]), f"the model failed on it ({_reason(err)})"))

    try:
        batch: list[tuple[Path, tuple[int, int], Any]] = []
        loaded = read_ahead(images, _loader(segmenter, max_pixels), workers=workers)
        for path, result in bar(loaded, total=len(images), desc="predict", enabled=progress):
            if isinstance(result, Exception):
                skipped.append((str(path), _reason(result)))
                continue
            batch.append((path, *result))
            if len(batch) == batch_size:
                run_one(batch)
                batch = []
        if batch:
            run_one(batch)
    finally:
        writer.close()
        for key, err in writer.failed:
            skipped.append((key, f"could not write a mask ({_reason(err)})"))
        on_disk = sorted(str(p) for _, p in writer.done if Path(p).is_file())
        summary = {
            "prompts": prompts,
            "settings": {
                p: {"threshold": t, "postprocess": m}
                for p, (t, m) in zip(prompts, chosen, strict=True)
            },
            "settings_source": settings.source,
            "images": len({key for key, p in writer.done if Path(p).is_file()}),
            "masks_written": len(on_disk),
            "skipped": [{"file": f, "reason": r} for f, r in skipped],
            "max_pixels": max_pixels,
        }
        summary = merge_records(gather(summary))
        if is_main():
            _record_run(out_dir / RUN_FILE, summary)
    return summary


def shard_inputs(
    images: list[Path], skipped: list[tuple[str, str]]
) -> tuple[list[Path], list[tuple[str, str]]]:
    """This process's share under torchrun: every world-size-th image from its rank on (all of
    them in one process); the inputs skipped before the model are reported by rank 0 only."""
    rank, size = world()
    return images[rank::size], skipped if rank == 0 else []


def merge_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """One run record from every process's: counts summed, skipped files listed together."""
    merged = dict(records[0])
    for key in ("images", "masks_written"):
        merged[key] = sum(r[key] for r in records)
    merged["skipped"] = sorted(
        (item for r in records for item in r["skipped"]), key=lambda item: item["file"]
    )
    return merged


def _record_run(path: Path, summary: dict[str, Any]) -> None:
    """Write the run record; when that fails (a full disk), print it on stderr instead and
    say why in `summary["run_file_error"]`."""
    try:
        write_json(path, summary)
    except OSError as err:
        summary["run_file_error"] = f"cannot write {path}: {err.strerror or err}"
        print(
            f"error: {summary['run_file_error']}; the run record follows\n"
            + json.dumps(summary, indent=2),
            file=sys.stderr,
        )


def _processor_for(model: str, base: str | None):
    """The processor a model will use, loaded without the model (for checks before loading)."""
    from transformers import CLIPSegProcessor

    from helpers.inference.loading import load_processor
    from helpers.model.modes import MODE_FILE

    folder = Path(model)
    if not (folder / MODE_FILE).is_file():
        return load_processor(model)
    if any((folder / f).is_file() for f in ("preprocessor_config.json", "processor_config.json")):
        return CLIPSegProcessor.from_pretrained(folder)
    run_file = folder.parent / "run.json"
    if base is None and run_file.is_file():
        base = json.loads(run_file.read_text(encoding="utf-8")).get("base_model")
    adapter = folder / "adapter_config.json"
    if base is None and adapter.is_file():
        base = json.loads(adapter.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if base is None:
        raise ValueError(
            f"{folder} holds a checkpoint whose base model is not recorded; pass --base"
        )
    return load_processor(base)


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.predict",
        description="Write a {0,255} mask per image and prompt: <stem>__<prompt>.png.",
    )
    parser.add_argument("inputs", nargs="+", help="image files and/or folders of images")
    parser.add_argument(
        "--prompt",
        action="append",
        required=True,
        help='a text prompt, e.g. "segment crack" (repeatable)',
    )
    parser.add_argument(
        "--model",
        required=True,
        help='a trained model folder, a save_pretrained folder, a Hub id or "tiny"',
    )
    parser.add_argument(
        "--base",
        default=None,
        help="base model for an adapter or decoder checkpoint (default: recorded)",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=None,
        help="probability threshold for every prompt (default: saved settings)",
    )
    parser.add_argument(
        "--postprocess",
        choices=METHODS,
        default=None,
        help="clean-up of the thresholded mask (default: saved settings)",
    )
    parser.add_argument("--out", required=True, help="folder for the masks")
    parser.add_argument(
        "--device", default="auto", help=f"one of {', '.join(DEVICES)} (default: auto)"
    )
    parser.add_argument(
        "--precision", default="auto", choices=PRECISIONS, help="autocast precision on CUDA"
    )
    parser.add_argument("--batch-size", type=int, default=8, help="images per model call")
    parser.add_argument(
        "--workers", type=int, default=None, help="threads reading images (default: automatic)"
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"skip images with more pixels than this (default {DEFAULT_MAX_PIXELS:,}: "
        "80 MP photos pass)",
    )
    args = parser.parse_args(argv)
    quiet_library_bars()

    def fail(message: str) -> None:
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    if args.threshold is not None and not 0 < args.threshold < 1:
        fail(f"--threshold must be between 0 and 1, got {args.threshold}")
    for name in ("batch_size", "max_pixels"):
        if getattr(args, name) < 1:
            fail(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.workers is not None and args.workers < 0:
        fail(f"--workers must be at least 0, got {args.workers}")
    model_dir = Path(args.model)
    settings = PredictSettings.read(model_dir) if model_dir.is_dir() else PredictSettings()
    if args.threshold is not None:
        settings.threshold, settings.default_threshold = {}, args.threshold
        settings.source = "command line"
    if args.postprocess is not None:
        settings.postprocess, settings.default_postprocess = {}, args.postprocess
        settings.source = "command line"
    try:
        prompts, notes = plan_prompts(args.prompt, settings)
        images, _ = collect_images(args.inputs, own_mask_names(args.out, prompts))
        check_outputs(images, prompts)
        runtime = get_runtime(start_from_env(args.device), args.precision)
    except (ValueError, RuntimeUnavailable) as err:
        fail(_one_line(err))
    try:
        check_prompt_lengths(_processor_for(args.model, args.base).tokenizer, prompts)
    except ValueError as err:
        fail(_one_line(err))
    except Exception as err:  # a model that cannot be found or read
        fail(f"cannot load the model {args.model}: {_one_line(err)}")
    try:
        check_out_dir(args.out)
    except ValueError as err:
        fail(_one_line(err))
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    try:
        segmenter = Segmenter.from_pretrained(
            args.model, base=args.base, device=runtime.device, precision=runtime.precision
        )
    except Exception as err:  # missing, truncated or corrupt weights
        fail(f"cannot load the model {args.model}: {_one_line(err)}")
    workers = args.workers if args.workers is not None else max(1, runtime.num_workers)
    rank, size = world()
    print(
        f"process {rank + 1} of {size}: " if size > 1 else "",
        f"predicting on {runtime.device}, precision {runtime.precision}, "
        f"{workers} reading thread(s)",
        file=sys.stderr,
        sep="",
    )
    try:
        summary = predict_files(
            segmenter,
            args.inputs,
            prompts,
            args.out,
            settings,
            batch_size=args.batch_size,
            num_workers=workers,
            max_pixels=args.max_pixels,
            warn=lambda _: None,  # already printed above
        )
    except ValueError as err:
        fail(_one_line(err))
    reports = is_main()  # under torchrun, rank 0 reports for every process
    stop()
    for item in summary["skipped"] if reports else []:
        print(f"skipped {item['file']}: {item['reason']}", file=sys.stderr)
    if reports:
        print(f"wrote {summary['masks_written']} mask(s) for {summary['images']} image(s) to "
              f"{args.out}")
    if "run_file_error" in summary:
        return 1
    return 0 if summary["masks_written"] or not summary["skipped"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
