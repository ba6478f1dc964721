"""Turn the raw exports into masks, a manifest with a leakage-free split, and a problem list.

    python -m helpers.prepare --cracks PATH --taping PATH --out DIR [--seed N]
    python -m helpers.prepare --demo

Writes, all atomically, under `out`:
    masks/<dataset>/<source_split>/<image stem>.png   uint8 {0, 255}, lined up with load_rgb
    manifest.csv    one row per usable image (columns: MANIFEST_COLUMNS)
    problems.csv    dataset, file, reason: everything skipped or repaired
    leakage.json    how much each export's own splits share source photos
    stamp.json      what the output was built from (ensure_prepared reuses it when unchanged)
Nothing is ever written inside an export folder.

Box annotations become filled rectangles by default (`box_masks="rectangle"`). With
`box_masks="lines"` or `"grabcut"` each box is refined into a tighter seam mask inside the box
(`helpers.refine`); polygons are rendered as always.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from helpers.data.images import ImageReadError, image_info, load_rgb
from helpers.data.masks import MaskSizeError, mask_for_image, source_id
from helpers.data.roboflow import ExportError, ImageRecord, Problem, read_export
from helpers.data.split import export_leakage, group_sources, group_split
from helpers.io import read_json, write_json, write_mask_png, write_text

# Bump when the output of prepare changes for the same input (invalidates cached output).
PREPARE_VERSION = 2
BOX_MASKS = ("rectangle", "lines", "grabcut")
MANIFEST_COLUMNS = [
    "image_path",
    "mask_path",
    "dataset",
    "source_split",
    "source_id",
    "group_id",
    "split",
    "width",
    "height",
    "n_objects",
    "n_box_fallbacks",
    "mask_fraction",
    "file_name",
    "true_mask_path",
    "extra_name",
    "export_format",
]
_TEXT_COLUMNS = [
    "image_path",
    "mask_path",
    "dataset",
    "source_split",
    "source_id",
    "group_id",
    "split",
    "file_name",
    "true_mask_path",
    "extra_name",
    "export_format",
]
_ANNOTATION_SUFFIXES = {".json", ".txt", ".yaml", ".yml"}
_HERE = Path(__file__).resolve().parent
_CODE_FILES = [
    _HERE / "prepare.py",
    *(_HERE / "data" / f"{m}.py" for m in ("images", "roboflow", "masks", "split")),
]


@dataclass
class Prepared:
    """What `prepare_datasets` built: the manifest (also on disk), problems and leakage."""

    manifest_path: Path
    manifest: pd.DataFrame
    problems: list[Problem]
    leakage: pd.DataFrame

    @property
    def out(self) -> Path:
        """The output folder."""
        return self.manifest_path.parent


def read_manifest(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a manifest.csv with its text columns kept as text (source ids like "0042")."""
    dtypes = {c: str for c in _TEXT_COLUMNS}
    return pd.read_csv(path, dtype=dtypes, keep_default_na=False, encoding="utf-8")


def _read_problems(path: Path) -> list[Problem]:
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    return [Problem(file=f, reason=r) for f, r in zip(df["file"], df["reason"], strict=True)]


# --------------------------------------------------------------------------- checks and stamp


def _inputs(cracks: Path | None, taping: Path | None) -> dict[str, Path]:
    exports = {
        name: Path(p).resolve()
        for name, p in (("cracks", cracks), ("taping", taping))
        if p is not None
    }
    if not exports:
        raise ValueError("give at least one export: cracks and/or taping")
    for name, path in exports.items():
        if not path.is_dir():
            raise FileNotFoundError(f"{name} export not found: {path}")
    return exports


def _check_out(out: Path, exports: dict[str, Path]) -> None:
    """Refuse an output folder that overlaps an export (the raw data is never written to)."""
    for name, root in exports.items():
        if out == root or out.is_relative_to(root) or root.is_relative_to(out / "masks"):
            raise ValueError(
                f"output folder {out} overlaps the {name} export {root}; choose another"
            )


def _hash_tree(h: hashlib._Hash, root: Path) -> None:
    """Annotation files by content, every other file by relative name and size."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        h.update(rel.encode("utf-8") + b"\0")
        if path.suffix.lower() in _ANNOTATION_SUFFIXES:
            h.update(hashlib.sha256(path.read_bytes()).digest())
        else:
            h.update(str(path.stat().st_size).encode() + b"\0")


def input_stamp(
    exports: dict[str, Path],
    seed: int,
    fractions: Sequence[float],
    seam_masks: Path | None,
    box_masks: str = "rectangle",
) -> str:
    """Hash of the annotation files' bytes, the image file list, the parameters and the code."""
    h = hashlib.sha256()
    params = {
        "version": PREPARE_VERSION,
        "seed": int(seed),
        "fractions": [float(f) for f in fractions],
        "exports": {k: str(v) for k, v in exports.items()},
        "seam_masks": str(Path(seam_masks).resolve()) if seam_masks else None,
        "box_masks": box_masks,
    }
    h.update(json.dumps(params, sort_keys=True).encode())
    for module in _CODE_FILES:  # the code that shapes the output, so an edit rebuilds
        h.update(module.read_bytes())
    for name in sorted(exports):
        h.update(f"[{name}]".encode())
        _hash_tree(h, exports[name])
    if seam_masks and Path(seam_masks).is_dir():
        h.update(b"[seam_masks]")
        _hash_tree(h, Path(seam_masks))
    return h.hexdigest()


# --------------------------------------------------------------------------- building


def _row(
    record: ImageRecord,
    dataset: str,
    fmt: str,
    mask: np.ndarray,
    mask_path: Path,
    seam_masks: Path | None,
) -> dict:
    true_mask = ""
    if seam_masks is not None and dataset == "taping":
        candidate = Path(seam_masks) / record.source_split / f"{Path(record.file_name).stem}.png"
        if candidate.is_file():
            true_mask = str(candidate.resolve())
    return {
        "image_path": str(record.image_path),
        "mask_path": str(mask_path),
        "dataset": dataset,
        "source_split": record.source_split,
        "source_id": source_id(record.file_name, record.extra_name),
        "width": int(mask.shape[1]),
        "height": int(mask.shape[0]),
        "n_objects": len(record.annotations),
        "n_box_fallbacks": sum(a.box_fallback for a in record.annotations),
        "mask_fraction": float(np.count_nonzero(mask)) / mask.size,
        "file_name": record.file_name,
        "true_mask_path": true_mask,
        "extra_name": record.extra_name or "",
        "export_format": fmt,
    }


def _refined(record: ImageRecord, info, mask: np.ndarray, method: str) -> tuple[np.ndarray, str]:
    """Polygons as rendered, every box refined into a seam mask inside it."""
    from dataclasses import replace

    from helpers.refine import refine_boxes

    boxes = [a.bbox for a in record.annotations if a.kind == "box"]
    if not boxes:
        return mask, ""
    if info.size != (record.width, record.height):
        return mask, "boxes not refined: image orientation differs from the annotations"
    rest = replace(record, annotations=[a for a in record.annotations if a.kind != "box"])
    base = mask_for_image(rest, info)[0] if rest.annotations else np.zeros_like(mask)
    return np.maximum(base, refine_boxes(load_rgb(record.image_path), boxes, method)), ""


def _render_export(
    dataset: str,
    root: Path,
    out: Path,
    seam_masks: Path | None,
    problems: list[tuple[str, Problem]],
    box_masks: str = "rectangle",
) -> list[dict]:
    """Read one export, check every image decodes, write its masks; rows for the manifest."""
    export = read_export(root)
    problems.extend((dataset, p) for p in export.problems)
    rows, used = [], set()
    for record in tqdm(export.records, desc=f"masks {dataset}", unit="img"):
        where = str(record.image_path)
        stem = Path(record.file_name).stem
        mask_path = out / "masks" / dataset / record.source_split / f"{stem}.png"
        if mask_path in used:
            reason = f"another image already has mask {mask_path.name}; skipped"
            problems.append((dataset, Problem(where, reason)))
            continue
        try:
            info = image_info(record.image_path)
            load_rgb(record.image_path)  # a truncated or corrupt file fails here, not in training
            mask, note = mask_for_image(record, info)
        except (ImageReadError, MaskSizeError) as exc:
            reason = exc.reason if isinstance(exc, ImageReadError) else str(exc)
            problems.append((dataset, Problem(where, f"{reason}; skipped")))
            continue
        if box_masks != "rectangle":
            mask, refine_note = _refined(record, info, mask, box_masks)
            note = "; ".join(n for n in (note, refine_note) if n)
        if note:
            problems.append((dataset, Problem(where, note)))
        write_mask_png(mask_path, mask)
        used.add(mask_path)
        rows.append(_row(record, dataset, export.format, mask, mask_path, seam_masks))
    return rows


def _remove_stale_masks(out: Path, keep: set[str]) -> None:
    masks = out / "masks"
    if masks.is_dir():
        for path in masks.rglob("*.png"):
            if str(path) not in keep:
                path.unlink()


def prepare_datasets(
    cracks: Path | None,
    taping: Path | None,
    out: Path,
    seed: int = 42,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seam_masks: Path | None = None,
    box_masks: str = "rectangle",
) -> Prepared:
    """Render masks, group sources, split by group and write manifest, problems and leakage.

    Bad files do not stop the run: each becomes a row of problems.csv and everything else is
    kept. `seam_masks/<source_split>/<image stem>.png` (demo data) fills `true_mask_path` of
    taping rows where such a file exists.
    """
    if box_masks not in BOX_MASKS:
        raise ValueError(f"unknown box_masks {box_masks!r}; choose one of {BOX_MASKS}")
    exports = _inputs(cracks, taping)
    out = Path(out).resolve()
    _check_out(out, exports)
    stamp = input_stamp(exports, seed, fractions, seam_masks, box_masks)
    (out / "stamp.json").unlink(missing_ok=True)  # an interrupted rebuild is never reused

    problems: list[tuple[str, Problem]] = []
    rows: list[dict] = []
    for dataset, root in exports.items():
        try:
            rows.extend(_render_export(dataset, root, out, seam_masks, problems, box_masks))
        except ExportError as exc:
            raise ExportError(f"{dataset} export: {exc}") from exc
    if not rows:
        raise ValueError(f"no usable image in {', '.join(map(str, exports.values()))}")

    df = pd.DataFrame(rows)
    df["group_id"] = group_sources(df)
    df["split"] = group_split(df, seed=seed, fractions=fractions, stratify="dataset")
    df = df[MANIFEST_COLUMNS].sort_values(["dataset", "source_split", "file_name"], kind="stable")
    df = df.reset_index(drop=True)
    leakage = export_leakage(df)

    manifest_path = out / "manifest.csv"
    write_text(manifest_path, df.to_csv(index=False))
    prob_df = pd.DataFrame(
        [{"dataset": d, "file": p.file, "reason": p.reason} for d, p in problems],
        columns=["dataset", "file", "reason"],
    )
    write_text(out / "problems.csv", prob_df.to_csv(index=False))
    write_json(out / "leakage.json", leakage.to_dict(orient="records"))
    _remove_stale_masks(out, set(df["mask_path"]))
    write_json(out / "stamp.json", {"stamp": stamp, "n_images": len(df)})
    # read back, so a fresh build and a reused one give identical frames
    return Prepared(manifest_path, read_manifest(manifest_path), [p for _, p in problems], leakage)


def load_prepared(out: Path) -> Prepared:
    """Read a prepared folder back (manifest, problems, leakage)."""
    out = Path(out)
    manifest_path = out / "manifest.csv"
    return Prepared(
        manifest_path=manifest_path,
        manifest=read_manifest(manifest_path),
        problems=_read_problems(out / "problems.csv"),
        leakage=pd.DataFrame(read_json(out / "leakage.json")),
    )


def _is_current(out: Path, stamp: str) -> bool:
    try:
        if read_json(out / "stamp.json").get("stamp") != stamp:
            return False
        manifest = read_manifest(out / "manifest.csv")
    except (OSError, ValueError, KeyError):
        return False
    needed = [out / "problems.csv", out / "leakage.json"]
    masks = manifest["mask_path"]
    return all(p.is_file() for p in needed) and all(Path(p).is_file() for p in masks)


def ensure_prepared(
    cracks: Path | None,
    taping: Path | None,
    out: Path,
    seed: int = 42,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seam_masks: Path | None = None,
    box_masks: str = "rectangle",
) -> Prepared:
    """`prepare_datasets`, reusing `out` when it was built from the same input and parameters."""
    exports = _inputs(cracks, taping)
    out = Path(out).resolve()
    if _is_current(out, input_stamp(exports, seed, fractions, seam_masks, box_masks)):
        return load_prepared(out)
    return prepare_datasets(cracks, taping, out, seed, fractions, seam_masks, box_masks)


# --------------------------------------------------------------------------- CLI


def summary(prepared: Prepared) -> str:
    """Images per dataset and split, problems, and the exports' own leakage, as text."""
    df = prepared.manifest
    lines = [f"manifest: {prepared.manifest_path}", ""]
    lines.append("images per dataset and export split:")
    lines.append(pd.crosstab(df["dataset"], df["source_split"], margins=True).to_string())
    lines += ["", "images per dataset and project split (grouped by source photo):"]
    lines.append(pd.crosstab(df["dataset"], df["split"], margins=True).to_string())
    groups = df.groupby("dataset")["group_id"].nunique()
    lines += ["", "source groups: " + ", ".join(f"{k} {v}" for k, v in groups.items())]
    fallbacks = df.groupby("dataset")["n_box_fallbacks"].sum()
    lines.append("box fallbacks: " + ", ".join(f"{k} {v}" for k, v in fallbacks.items()))
    lines += ["", f"problems: {len(prepared.problems)} (see {prepared.out / 'problems.csv'})"]
    for p in prepared.problems[:10]:
        lines.append(f"  {p.file}: {p.reason}")
    if len(prepared.problems) > 10:
        lines.append(f"  ... {len(prepared.problems) - 10} more")
    leak = prepared.leakage
    if len(leak):
        lines += ["", "sources shared between the exports' own splits (leakage):"]
        lines.append(leak.to_string(index=False))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers.prepare",
        description=(
            "Render masks from Roboflow exports (COCO or YOLOv8-seg), group augmented variants "
            "of one source photo, split whole groups into train/val/test and write "
            "manifest.csv, problems.csv and leakage.json. The exports are only read."
        ),
    )
    parser.add_argument("--cracks", type=Path, help="crack export folder (COCO or YOLOv8-seg)")
    parser.add_argument("--taping", type=Path, help="drywall taping/joint export folder")
    parser.add_argument(
        "--out", type=Path, help="output folder (default with --demo: data/prepared/demo)"
    )
    parser.add_argument("--seed", type=int, default=42, help="seed of the group split (default 42)")
    parser.add_argument(
        "--fractions",
        type=float,
        nargs=3,
        default=(0.7, 0.15, 0.15),
        metavar=("TRAIN", "VAL", "TEST"),
        help="split fractions (default 0.7 0.15 0.15)",
    )
    parser.add_argument(
        "--box-masks",
        choices=BOX_MASKS,
        default="rectangle",
        help="how box annotations become masks: filled rectangles (default) or refined seams",
    )
    parser.add_argument("--demo", action="store_true", help="use the generated demo exports")
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if the output is current"
    )
    args = parser.parse_args(argv)

    seam_masks = None
    if args.demo:
        from helpers.demo_data import ensure_demo_data
        from helpers.paths import prepared_dir

        demo = ensure_demo_data()
        args.cracks = args.cracks or demo.cracks
        args.taping = args.taping or demo.taping
        seam_masks = demo.seam_masks
        args.out = args.out or prepared_dir("demo")
    if args.cracks is None and args.taping is None:
        parser.error("give --cracks and/or --taping (or --demo)")
    if args.out is None:
        parser.error("give --out")
    build = prepare_datasets if args.force else ensure_prepared
    try:
        prepared = build(
            args.cracks,
            args.taping,
            args.out,
            args.seed,
            tuple(args.fractions),
            seam_masks,
            args.box_masks,
        )
    except (ExportError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summary(prepared))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
