"""The demo exports' writer: source plans (names, variants, splits, leaks, re-uploads), COCO
JSON in Roboflow's layout, and the build of the whole demo folder.

A demo folder is a `helpers.core.cache` output keyed by `generation_parameters` (its
`cache_key.json`); `demo_stamp.json` beside the exports says what was generated (the
parameters and image counts) and marks the folder as a demo. Folders from before the key
record are regenerated once.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from helpers.core.cache import build_once
from helpers.core.io import write_mask_png
from helpers.demo.synthetic.defects import (
    OUTLINE_MARGIN,
    add_screw_spots,
    draw_cracks,
    loosen,
    polygon_box,
    render_polygons,
    render_seams,
    seam_bands,
    trace_polygons,
)
from helpers.demo.synthetic.surfaces import BACKGROUNDS, DISTRACTORS, drywall, line_layer, lowfreq

GENERATOR_VERSION = 3
STAMP_NAME = "demo_stamp.json"
JPEG_QUALITY = 90
DATE_CREATED = "2025-06-02T09:15:00+00:00"
CRACK_FOLDER = "cracks"
TAPING_FOLDER = "drywall-join"
SEAM_FOLDER = "drywall-join-seams"
CRACK_SPLITS: dict[str, float] = {"train": 0.7, "valid": 0.2, "test": 0.1}
TAPING_SPLITS: dict[str, float] = {"train": 0.8, "valid": 0.2}
NO_CRACK_RATE = 0.15  # share of crack sources without any crack
DISTRACTOR_RATE = 0.2  # share of crack sources with unannotated crack look-alikes
EMPTY_SEGMENTATION_RATE = 0.02  # share of crack annotations written with `segmentation: []`
SPLIT_LEAK_RATE = 0.3  # share of non-train sources that also have a variant in train

LICENSES = [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}]
CRACK_CATEGORIES = [
    {"id": 0, "name": "cracks", "supercategory": "none"},
    {"id": 1, "name": "crack", "supercategory": "cracks"},
]
TAPING_CATEGORIES = [
    {"id": 0, "name": "Drywall-Join", "supercategory": "none"},
    {"id": 1, "name": "drywall-join", "supercategory": "Drywall-Join"},
]




@dataclass(frozen=True)
class DemoPaths:
    """Where the demo exports live."""

    root: Path
    cracks: Path
    taping: Path
    seam_masks: Path


def demo_paths(root: str | os.PathLike[str]) -> DemoPaths:
    """The `DemoPaths` of a demo folder (nothing is checked or written)."""
    root = Path(root)
    return DemoPaths(root, root / CRACK_FOLDER, root / TAPING_FOLDER, root / SEAM_FOLDER)


def generation_parameters(
    seed: int, image_size: int, n_crack_sources: int, n_taping_sources: int
) -> dict[str, int]:
    """The parameters that fully determine a demo folder (its cache key); checked here."""
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if image_size < 64:
        raise ValueError(f"image_size must be at least 64, got {image_size}")
    if n_crack_sources < 3 or n_taping_sources < 2:
        raise ValueError(
            f"need at least 3 crack and 2 taping sources, got {n_crack_sources}, {n_taping_sources}"
        )
    return {
        "generator_version": GENERATOR_VERSION,
        "seed": int(seed),
        "image_size": int(image_size),
        "n_crack_sources": int(n_crack_sources),
        "n_taping_sources": int(n_taping_sources),
    }



# ---------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """One augmented export of a source photo."""

    hflip: bool = False
    rot90: int = 0
    contrast: float = 1.0
    brightness: float = 0.0
    gains: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def geometry(self, arr: np.ndarray) -> np.ndarray:
        """Apply the flip and rotation to an image or mask (first two axes)."""
        if self.hflip:
            arr = arr[:, ::-1]
        if self.rot90:
            arr = np.rot90(arr, self.rot90, axes=(0, 1))
        return np.ascontiguousarray(arr)

    def colour(self, img: np.ndarray) -> np.ndarray:
        """Apply the colour and brightness jitter to a float RGB image."""
        out = (img - 128.0) * self.contrast + 128.0 + self.brightness
        return out * np.asarray(self.gains, np.float32)[None, None, :]


ORIGINAL = Variant()


def _random_variant(rng: np.random.Generator) -> Variant:
    hflip = bool(rng.random() < 0.5)
    rot90 = int(rng.choice([0, 1, 2, 3], p=[0.4, 0.2, 0.2, 0.2]))
    if not hflip and rot90 == 0:
        hflip = bool(rng.random() < 0.5)
        rot90 = 0 if hflip else int(rng.integers(1, 4))
    return Variant(
        hflip,
        rot90,
        float(rng.uniform(0.85, 1.15)),
        float(rng.uniform(-15, 15)),
        tuple(float(g) for g in rng.uniform(0.95, 1.05, 3)),
    )


def _near_identical(rng: np.random.Generator) -> Variant:
    return Variant(brightness=float(rng.uniform(-4, 4)), contrast=float(rng.uniform(0.98, 1.02)))


def _encode_jpeg(img_rgb: np.ndarray) -> bytes:
    bgr = cv2.cvtColor(np.clip(np.round(img_rgb), 0, 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise OSError("could not encode a JPEG image")
    return buf.tobytes()


# ------------------------------------------------------------------------------ planning


@dataclass
class SourcePlan:
    """A source photo: its name, content switches and where each exported variant goes."""

    index: int
    stem: str
    splits: list[str]
    content_index: int  # index of the source whose pixels it shows (differs for re-uploads)
    reupload: bool = False
    has_target: bool = True
    distractors: list[str] = field(default_factory=list)


def _source_names(rng: np.random.Generator, n: int, styles: list[str]) -> list[str]:
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        style = styles[int(rng.integers(0, len(styles)))]
        digits = int(style.split(":0")[1][0]) if ":0" in style else 4
        name = style.format(int(rng.integers(1, 10**digits)))
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _plan(
    rng: np.random.Generator, n_sources: int, split_fractions: dict[str, float], styles: list[str]
) -> list[SourcePlan]:
    """Names, variant counts and splits of every source, including leaks and re-uploads."""
    splits = list(split_fractions)
    counts = {
        sp: max(1, round(fr * n_sources)) for sp, fr in split_fractions.items() if sp != "train"
    }
    n_train = n_sources - sum(counts.values())
    if n_train < 1:
        raise ValueError(f"need more sources to fill the splits {splits}, got {n_sources}")
    homes = ["train"] * n_train + [sp for sp, c in counts.items() for _ in range(c)]
    homes = [homes[i] for i in rng.permutation(n_sources)]
    n_alias = min(2, max(1, round(n_sources / 20)))
    names = _source_names(rng, n_sources + n_alias, styles)
    plans = []
    for i in range(n_sources):
        n_variants = int(rng.integers(2, 5))
        plans.append(SourcePlan(i, names[i], [homes[i]] * n_variants, i))
    for split in splits[1:]:
        members = [p for p in plans if p.splits[0] == split]
        for j in rng.permutation(len(members))[: round(SPLIT_LEAK_RATE * len(members))]:
            p = members[int(j)]
            p.splits[int(rng.integers(1, len(p.splits)))] = "train"
    for k, j in enumerate(rng.permutation(n_sources)[:n_alias]):
        original = plans[int(j)]
        others = [sp for sp in splits if sp != original.splits[0]]
        where = others[int(rng.integers(0, len(others)))]
        plans.append(
            SourcePlan(
                n_sources + k,
                names[n_sources + k],
                [where, where],
                original.content_index,
                reupload=True,
            )
        )
    return plans


def _file_name(rng: np.random.Generator, stem: str) -> str:
    return f"{stem}_jpg.rf.{rng.bytes(16).hex()}.jpg"


def _source_rng(seed: int, dataset: int, index: int, purpose: int) -> np.random.Generator:
    """An independent generator per (seed, dataset, source, purpose); purpose 0 plans."""
    return np.random.default_rng(np.random.SeedSequence([seed, dataset, index, purpose]))


def _variants_of(rng: np.random.Generator, plan: SourcePlan) -> list[Variant]:
    if plan.reupload:
        return [ORIGINAL, _near_identical(rng)]
    return [ORIGINAL] + [_random_variant(rng) for _ in plan.splits[1:]]


# ------------------------------------------------------------------------------ writing


@dataclass
class _Entry:
    file_name: str
    extra_name: str | None
    annotations: list[dict[str, Any]]


def _write_export(
    folder: Path,
    entries: dict[str, list[_Entry]],
    categories: list[dict],
    rng: np.random.Generator,
    size: int,
    first_annotation_id: int,
    with_extra: bool,
    title: str,
) -> None:
    """Write `_annotations.coco.json` per split (images in shuffled order) and the READMEs."""
    for split, items in entries.items():
        images, annotations = [], []
        ann_id = first_annotation_id
        for image_id, k in enumerate(rng.permutation(len(items))):
            e = items[int(k)]
            image: dict[str, Any] = {
                "id": image_id,
                "license": 1,
                "file_name": e.file_name,
                "height": size,
                "width": size,
                "date_captured": DATE_CREATED,
            }
            if with_extra:
                image["extra"] = {"name": e.extra_name}
            images.append(image)
            for a in e.annotations:
                annotations.append({"id": ann_id, "image_id": image_id, **a})
                ann_id += 1
        data = {
            "info": {
                "year": DATE_CREATED[:4],
                "version": "1",
                "description": "Synthetic demo export in the Roboflow COCO layout",
                "contributor": "",
                "url": "https://public.roboflow.com/object-detection/undefined",
                "date_created": DATE_CREATED,
            },
            "licenses": LICENSES,
            "categories": categories,
            "images": images,
            "annotations": annotations,
        }
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        (folder / split / "_annotations.coco.json").write_text(text, encoding="utf-8")
    n_images = sum(len(v) for v in entries.values())
    (folder / "README.dataset.txt").write_text(
        f"# {title} > synthetic demo\n\nGenerated by helpers.demo.synthetic "
        f"(version {GENERATOR_VERSION}).\nLicense: CC BY 4.0\n",
        encoding="utf-8",
    )
    (folder / "README.roboflow.txt").write_text(
        f"\n{title} - synthetic demo\n==============================\n\n"
        f"Synthetic images and annotations laid out like a Roboflow COCO export.\n\n"
        f"The dataset includes {n_images} images.\n"
        f"{title} are annotated in COCO format.\n",
        encoding="utf-8",
    )


def _build_cracks(root: Path, seed: int, size: int, n_sources: int) -> dict[str, int]:
    s = size / 320.0
    plan_rng = _source_rng(seed, 1, 0, 0)
    plans = _plan(
        plan_rng,
        n_sources,
        CRACK_SPLITS,
        ["IMG_{:04d}", "wall_{:03d}", "DSC{:05d}", "{:d}", "crack_{:04d}"],
    )
    originals = [p for p in plans if not p.reupload]
    order = plan_rng.permutation(len(originals))
    n_empty = round(NO_CRACK_RATE * len(originals))
    for j in order[:n_empty]:
        originals[int(j)].has_target = False
    for j in plan_rng.permutation(len(originals))[: round(DISTRACTOR_RATE * len(originals))]:
        kinds = list(DISTRACTORS)
        n = int(plan_rng.integers(1, 3))
        originals[int(j)].distractors = [kinds[int(i)] for i in plan_rng.permutation(4)[:n]]

    entries: dict[str, list[_Entry]] = {sp: [] for sp in CRACK_SPLITS}
    for sp in CRACK_SPLITS:
        (root / CRACK_FOLDER / sp).mkdir(parents=True)
    for plan in plans:
        content = plans[plan.content_index]
        crng = _source_rng(seed, 1, content.index, 1)
        kind = list(BACKGROUNDS)[int(crng.choice(3, p=[0.35, 0.35, 0.3]))]
        bg = BACKGROUNDS[kind](crng, size, s)
        for name in content.distractors:
            DISTRACTORS[name](crng, bg, s)
        cracks = draw_cracks(crng, size, s) if content.has_target else None
        outline = None
        if cracks is not None:  # annotators outline a crack loosely: a margin on each side
            margin = _source_rng(seed, 1, content.index, 3).uniform(*OUTLINE_MARGIN) * s
            outline = loosen(cracks, margin)
        depth = np.clip(crng.uniform(0.35, 0.65) * (1 + 0.25 * lowfreq(crng, size, 6)), 0.15, 0.9)
        vrng = _source_rng(seed, 1, plan.index, 2)
        for split, variant in zip(plan.splits, _variants_of(vrng, plan), strict=True):
            img = variant.geometry(bg)
            annotations = []
            if cracks is not None:
                visible = trace_polygons(variant.geometry(cracks), size)
                pixels = render_polygons(visible, size).astype(np.float32)
                soft = np.maximum(cv2.GaussianBlur(pixels, (0, 0), 0.6), 0.85 * pixels)
                img = img * (1 - variant.geometry(depth) * soft)[..., None]
                polygons = trace_polygons(variant.geometry(outline), size)
                for poly in polygons:
                    box = polygon_box(poly, size)
                    annotations.append(
                        {
                            "category_id": 1,
                            "bbox": box,
                            "area": box[2] * box[3],
                            "segmentation": [poly],
                            "iscrowd": 0,
                        }
                    )
            name = _file_name(vrng, plan.stem)
            (root / CRACK_FOLDER / split / name).write_bytes(_encode_jpeg(variant.colour(img)))
            entries[split].append(_Entry(name, f"{plan.stem}.jpg", annotations))

    all_anns = [a for sp in CRACK_SPLITS for e in entries[sp] for a in e.annotations]
    n_quirk = max(1, round(EMPTY_SEGMENTATION_RATE * len(all_anns))) if all_anns else 0
    for j in plan_rng.permutation(len(all_anns))[:n_quirk]:
        all_anns[int(j)]["segmentation"] = []
    _write_export(root / CRACK_FOLDER, entries, CRACK_CATEGORIES, plan_rng, size, 1, True, "Cracks")
    return {sp: len(v) for sp, v in entries.items()}


def _build_taping(root: Path, seed: int, size: int, n_sources: int) -> dict[str, int]:
    s = size / 320.0
    plan_rng = _source_rng(seed, 2, 0, 0)
    plans = _plan(
        plan_rng,
        n_sources,
        TAPING_SPLITS,
        ["IMG_{:04d}_JPG", "IMG_{:04d}_JPG", "PXL_2024{:04d}", "drywall_{:03d}"],
    )
    entries: dict[str, list[_Entry]] = {sp: [] for sp in TAPING_SPLITS}
    for sp in TAPING_SPLITS:
        (root / TAPING_FOLDER / sp).mkdir(parents=True)
        (root / SEAM_FOLDER / sp).mkdir(parents=True)
    for plan in plans:
        crng = _source_rng(seed, 2, plan.content_index, 1)
        rgb = drywall(crng, size, s)
        lum = rgb.mean(axis=2)
        cast = rgb - lum[..., None]
        if crng.random() < 0.5:
            add_screw_spots(crng, lum, s)
        bands = seam_bands(crng, size, s)
        lum = render_seams(crng, lum, bands, s)
        if crng.random() < 0.2:  # a pencil mark
            p0 = crng.uniform(0.1, 0.9, 2) * size
            p1 = p0 + crng.normal(0, 0.1, 2) * size
            lum += line_layer(size, p0, p1, -25.0, 1, 0.4 * s)
        img_src = lum[..., None] + cast
        vrng = _source_rng(seed, 2, plan.index, 2)
        for split, variant in zip(plan.splits, _variants_of(vrng, plan), strict=True):
            img = variant.geometry(img_src)
            truth = np.zeros((size, size), np.uint8)
            annotations = []
            for band, _ in bands:
                b = variant.geometry(band)
                truth |= b
                ys, xs = np.nonzero(b)
                if len(xs) == 0:
                    continue
                pad = [int(vrng.integers(0, int(3 * s) + 2)) for _ in range(4)]
                x0, y0 = max(0, int(xs.min()) - pad[0]), max(0, int(ys.min()) - pad[1])
                x1 = min(size, int(xs.max()) + 1 + pad[2])
                y1 = min(size, int(ys.max()) + 1 + pad[3])
                box = [x0, y0, x1 - x0, y1 - y0]
                annotations.append(
                    {
                        "category_id": 1,
                        "bbox": box,
                        "area": box[2] * box[3],
                        "segmentation": [],
                        "iscrowd": 0,
                    }
                )
            name = _file_name(vrng, plan.stem)
            (root / TAPING_FOLDER / split / name).write_bytes(_encode_jpeg(variant.colour(img)))
            write_mask_png(root / SEAM_FOLDER / split / f"{Path(name).stem}.png", truth)
            entries[split].append(_Entry(name, None, annotations))
    _write_export(
        root / TAPING_FOLDER, entries, TAPING_CATEGORIES, plan_rng, size, 0, False, "Drywall-Join"
    )
    return {sp: len(v) for sp, v in entries.items()}


def generate_demo_exports(
    out_dir: str | os.PathLike[str],
    seed: int = 0,
    image_size: int = 320,
    n_crack_sources: int = 48,
    n_taping_sources: int = 36,
    *,
    force: bool = True,
) -> DemoPaths:
    """Write both demo exports and the true seam masks under `out_dir`.

    The folder is built beside `out_dir` under its lock and swapped in (`helpers.core.cache`), so
    an interrupted run leaves `out_dir` as it was. With `force=False` a folder already built
    from these parameters is kept as it is. An existing `out_dir` is replaced only if it is
    empty or holds an earlier demo (its stamp file); anything else raises `FileExistsError`.
    """
    out = Path(out_dir).resolve()
    params = generation_parameters(seed, image_size, n_crack_sources, n_taping_sources)
    build_once(
        out,
        params,
        lambda folder: _write_demo(folder, params),
        force=force,
        valid=_has_exports,
        before_build=lambda: _refuse_other_content(out),
    )
    return demo_paths(out)


def _write_demo(folder: Path, params: dict[str, int]) -> None:
    """Write the exports, the seam masks and the stamp into the empty `folder`."""
    seed, size = params["seed"], params["image_size"]
    counts = {
        CRACK_FOLDER: _build_cracks(folder, seed, size, params["n_crack_sources"]),
        TAPING_FOLDER: _build_taping(folder, seed, size, params["n_taping_sources"]),
    }
    stamp = {**params, "images": counts}
    (folder / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")


def _has_exports(out: Path) -> bool:
    paths = demo_paths(out)
    return all(p.is_dir() for p in (paths.cracks, paths.taping, paths.seam_masks))


def _refuse_other_content(out: Path) -> None:
    if out.is_dir() and any(out.iterdir()) and not (out / STAMP_NAME).is_file():
        raise FileExistsError(
            f"{out} exists and is not a demo folder (no {STAMP_NAME}); refusing to replace it"
        )
