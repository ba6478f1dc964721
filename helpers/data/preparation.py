"""Turn the raw exports into masks, a manifest with a leakage-free split, and a problem list.

    python -m helpers.prepare --cracks PATH --taping PATH --out DIR [--seed N]
    python -m helpers.prepare --demo

Writes under `out`:
    masks/<dataset>/<source_split>/<image stem>.png   uint8 {0, 255}, lined up with load_rgb
    manifest.csv    one row per usable image (columns: MANIFEST_COLUMNS)
    problems.csv    dataset, file, reason: everything skipped or repaired
    leakage.json    how much each export's own splits share source photos
    cache_key.json  the hash of what the output was built from (`helpers.core.cache`): every
                    export file's bytes, the parameters and prepare's code; ensure_prepared
                    reuses the output while it is unchanged. A folder without this
                    record is rebuilt.
Nothing is ever written inside an export folder.

Safe to interrupt and to run twice at once (`helpers.core.cache.build_once`): a run holds a lock
(`.<out name>.lock` beside `out`; a second run waits for it and says so), builds everything
in a hidden folder beside `out` and swaps it in when complete, so a reader never sees a
manifest listing absent masks. Files in `out` that prepare did not write are carried over.
Leftovers of a killed run are removed by the next one. Every file that cannot be read or
rendered (corrupt, above `max_pixels`, a name that is not UTF-8, any failure while rendering)
is a row of problems.csv and the run goes on.

Box annotations become filled rectangles by default (`box_masks="rectangle"`). With
`box_masks="lines"` or `"grabcut"` each box is refined into a tighter seam mask inside the box
(`helpers.data.refine`); polygons are rendered as always.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.core.cache import KEY_FILE, build_once, file_digest, tree_digest
from helpers.core.io import read_json, temp_name, write_json, write_mask_png, write_text
from helpers.core.paths import prepared_dir
from helpers.core.progress import bar
from helpers.data.images import DEFAULT_MAX_PIXELS, ImageReadError, image_info, load_rgb
from helpers.data.masks import mask_for_image, source_id
from helpers.data.roboflow import ExportError, ImageRecord, Problem, read_export
from helpers.data.split import export_leakage, group_sources, group_split

# Bump when the output of prepare changes for the same input (invalidates cached output).
PREPARE_VERSION = 3
# What prepare writes in its output folder; anything else there is copied over on a rebuild.
OUTPUT_NAMES = ("masks", "manifest.csv", "problems.csv", "leakage.json", KEY_FILE)
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
_HERE = Path(__file__).resolve().parent
_CODE_FILES = [  # the code that decides the prepared masks and split (part of the cache key)
    _HERE / f"{m}.py"
    for m in ("preparation", "refine", "images", "roboflow", "masks", "split")
    # refine: box-to-seam refinement (box_masks "lines" / "grabcut")
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


def printable(text: str) -> str:
    """`text` as valid UTF-8: bytes of a non-UTF-8 file name are shown as \\xNN escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _read_problems(path: Path) -> list[Problem]:
    df = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")
    return [Problem(file=f, reason=r) for f, r in zip(df["file"], df["reason"], strict=True)]


# --------------------------------------------------------------------------- checks and key


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
            what = "is a file, not a folder" if path.exists() else "not found"
            raise FileNotFoundError(
                f"{name} export {printable(str(path))} {what}; give the folder of a Roboflow "
                "export (COCO or YOLOv8-seg)"
            )
    if len(exports) == 2:
        cracks, taping = exports["cracks"], exports["taping"]
        if cracks == taping or cracks.is_relative_to(taping) or taping.is_relative_to(cracks):
            raise ValueError(
                f"--cracks {printable(str(cracks))} and --taping {printable(str(taping))} are "
                "the same export (or one lies inside the other); give each class its own export"
            )
    return exports


def _check_distinct(key: dict) -> None:
    """Refuse two exports with the same content (a copy given as both classes)."""
    content = key["content"]
    if len(content) == 2 and content["cracks"] == content["taping"]:
        raise ValueError(
            f"--cracks {key['exports']['cracks']} and --taping {key['exports']['taping']} "
            "hold the same files (a copy of one export); give each class its own export"
        )


def _check_out(out: Path, exports: dict[str, Path]) -> None:
    """Refuse an output folder that overlaps an export (the raw data is never written to),
    is a file, cannot be written, or is a non-empty folder that is not a prepare output."""
    for name, root in exports.items():
        if out == root or out.is_relative_to(root) or root.is_relative_to(out / "masks"):
            raise ValueError(
                f"output folder {out} overlaps the {name} export {root}; choose another"
            )
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(
            f"output folder {out} is a file; give a folder path (it is created if missing)"
        )
    existing = next(p for p in (out, *out.parents) if p.exists())
    if existing == out:
        existing = out.parent  # the output is rebuilt beside itself and swapped in
    probe = temp_name(existing / "write-probe")
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        probe.unlink()
    except OSError as exc:
        raise PermissionError(
            f"cannot write in {existing} ({exc.strerror or 'read-only'}); choose an output "
            "folder in a writable place"
        ) from None
    if out.is_dir():
        names = {p.name for p in out.iterdir() if not p.name.startswith(".")}
        if names and not names & set(OUTPUT_NAMES):
            raise ValueError(
                f"output folder {out} is not empty and holds no prepare output "
                f"({', '.join(sorted(names)[:3])}...); choose a new or empty folder"
            )


def input_key(
    exports: dict[str, Path],
    seed: int,
    fractions: Sequence[float],
    seam_masks: Path | None,
    box_masks: str = "rectangle",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> dict:
    """What the output is built from: the parameters, prepare's code and every export file's
    bytes (annotations and images), for `helpers.core.cache`.

    Images count by content, so an image changed in place (even at the same size and time
    stamp) rebuilds the output.
    """
    return {
        "version": PREPARE_VERSION,
        "seed": int(seed),
        "fractions": [float(f) for f in fractions],
        "exports": {k: str(v) for k, v in exports.items()},
        "seam_masks": str(Path(seam_masks).resolve()) if seam_masks else None,
        "box_masks": box_masks,
        "max_pixels": int(max_pixels),
        # the code that shapes the output, so an edit rebuilds
        "code": {p.relative_to(_HERE).as_posix(): file_digest(p) for p in _CODE_FILES},
        "content": {name: tree_digest(exports[name]) for name in sorted(exports)},
        "seam_mask_content": tree_digest(seam_masks)
        if seam_masks and Path(seam_masks).is_dir()
        else None,
    }


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


def _refined(
    record: ImageRecord, info, mask: np.ndarray, method: str, max_pixels: int
) -> tuple[np.ndarray, str]:
    """Polygons as rendered, every box refined into a seam mask inside it."""
    from dataclasses import replace

    from helpers.data.refine import refine_boxes

    boxes = [a.bbox for a in record.annotations if a.kind == "box"]
    if not boxes:
        return mask, ""
    if info.size != (record.width, record.height):
        return mask, "boxes not refined: image orientation differs from the annotations"
    rest = replace(record, annotations=[a for a in record.annotations if a.kind != "box"])
    base = mask_for_image(rest, info)[0] if rest.annotations else np.zeros_like(mask)
    image = load_rgb(record.image_path, max_pixels)
    return np.maximum(base, refine_boxes(image, boxes, method)), ""


def _render_one(
    record: ImageRecord, box_masks: str, max_pixels: int
) -> tuple[np.ndarray, str | None]:
    """The mask of one image (checking that the image decodes) and a note, or an exception."""
    if not _is_utf8(str(record.image_path)):
        raise ValueError("file name is not valid UTF-8; rename the file to use it")
    info = image_info(record.image_path)
    load_rgb(record.image_path, max_pixels)  # a truncated, corrupt or huge file fails here
    mask, note = mask_for_image(record, info)
    if box_masks != "rectangle":
        mask, refine_note = _refined(record, info, mask, box_masks, max_pixels)
        note = "; ".join(n for n in (note, refine_note) if n)
    return mask, note


def _render_export(
    dataset: str,
    root: Path,
    out: Path,
    build: Path,
    seam_masks: Path | None,
    problems: list[tuple[str, Problem]],
    box_masks: str = "rectangle",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> list[dict]:
    """Read one export, check every image decodes, write its masks under `build`; rows for the
    manifest (with mask paths under `out`, where `build` is swapped in)."""
    export = read_export(root)
    problems.extend((dataset, p) for p in export.problems)
    rows, used = [], set()
    for record in bar(export.records, desc=f"masks {dataset}", unit="img"):
        where = str(record.image_path)
        rel = Path("masks") / dataset / record.source_split / f"{Path(record.file_name).stem}.png"
        if rel in used:
            reason = f"another image already has mask {rel.name}; skipped"
            problems.append((dataset, Problem(where, reason)))
            continue
        try:
            mask, note = _render_one(record, box_masks, max_pixels)
        except ImageReadError as exc:
            problems.append((dataset, Problem(where, f"{exc.reason}; skipped")))
            continue
        except Exception as exc:  # one bad file never stops the run
            text = str(exc).replace(where, "").strip(" :") or type(exc).__name__
            problems.append((dataset, Problem(where, f"{text}; skipped")))
            continue
        if note:
            problems.append((dataset, Problem(where, note)))
        write_mask_png(build / rel, mask)
        used.add(rel)
        rows.append(_row(record, dataset, export.format, mask, out / rel, seam_masks))
    return rows


def _carry_over(out: Path, build: Path) -> None:
    """Copy the files in `out` that prepare did not write into `build`, which replaces it.

    Copied, not moved, so a crash at any point loses nothing of them.
    """
    if not out.is_dir():
        return
    for entry in out.iterdir():
        if entry.name in OUTPUT_NAMES or (build / entry.name).exists():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, build / entry.name, symlinks=True)
        else:
            shutil.copy2(entry, build / entry.name, follow_symlinks=False)


def _write_output(
    exports: dict[str, Path],
    out: Path,
    build: Path,
    seed: int,
    fractions: Sequence[float],
    seam_masks: Path | None,
    box_masks: str,
    max_pixels: int,
) -> None:
    """Write masks, manifest, problems and leakage into `build` (swapped in as `out`)."""
    problems: list[tuple[str, Problem]] = []
    rows: list[dict] = []
    for dataset, root in exports.items():
        try:
            rows.extend(
                _render_export(
                    dataset, root, out, build, seam_masks, problems, box_masks, max_pixels
                )
            )
        except ExportError as exc:
            raise ExportError(f"{dataset} export: {exc}") from exc
    if not rows:
        raise ValueError(f"no usable image in {', '.join(map(str, exports.values()))}")
    problems = [(d, Problem(printable(p.file), printable(p.reason))) for d, p in problems]

    df = pd.DataFrame(rows)
    df["group_id"] = group_sources(df)
    df["split"] = group_split(df, seed=seed, fractions=fractions, stratify="dataset")
    df = df[MANIFEST_COLUMNS].sort_values(["dataset", "source_split", "file_name"], kind="stable")
    df = df.reset_index(drop=True)

    write_text(build / "manifest.csv", df.to_csv(index=False))
    prob_df = pd.DataFrame(
        [{"dataset": d, "file": p.file, "reason": p.reason} for d, p in problems],
        columns=["dataset", "file", "reason"],
    )
    write_text(build / "problems.csv", prob_df.to_csv(index=False))
    write_json(build / "leakage.json", export_leakage(df).to_dict(orient="records"))
    _carry_over(out, build)


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


def _masks_present(out: Path) -> bool:
    """True if every file of a prepared folder is still there (masks too)."""
    try:
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
    max_pixels: int = DEFAULT_MAX_PIXELS,
    force: bool = False,
) -> Prepared:
    """`prepare_datasets`, reusing `out` when it was built from the same input and parameters.

    The check is repeated under the folder's lock, so of two runs that both find `out` out of
    date only the first rebuilds it. `force` rebuilds in any case.
    """
    if box_masks not in BOX_MASKS:
        raise ValueError(f"unknown box_masks {box_masks!r}; choose one of {BOX_MASKS}")
    exports = _inputs(cracks, taping)
    out = Path(out).resolve()
    key = input_key(exports, seed, fractions, seam_masks, box_masks, max_pixels)
    _check_distinct(key)
    try:
        build_once(
            out,
            key,
            lambda build: _write_output(
                exports, out, build, seed, fractions, seam_masks, box_masks, max_pixels
            ),
            force=force,
            valid=_masks_present,
            before_build=lambda: _check_out(out, exports),
        )
    except OSError as exc:
        if exc.filename is not None or exc.errno is None:  # already names what it is about
            raise
        # e.g. a full disk: the error names no file, so name the output being written
        raise OSError(
            exc.errno, f"{exc.strerror or exc} while writing the output {out} (built beside it)"
        ) from exc
    return load_prepared(out)


def prepare_datasets(
    cracks: Path | None,
    taping: Path | None,
    out: Path,
    seed: int = 42,
    fractions: Sequence[float] = (0.7, 0.15, 0.15),
    seam_masks: Path | None = None,
    box_masks: str = "rectangle",
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Prepared:
    """Render masks, group sources, split by group and write manifest, problems and leakage.

    Bad files do not stop the run: each becomes a row of problems.csv and everything else is
    kept. Images above `max_pixels` pixels are such files. `seam_masks/<source_split>/<image
    stem>.png` (demo data) fills `true_mask_path` of taping rows where such a file exists.
    The output is built beside `out` under the folder's lock and swapped in when complete.
    """
    return ensure_prepared(
        cracks, taping, out, seed, fractions, seam_masks, box_masks, max_pixels, force=True
    )


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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None, demo_exports: Callable[[], Any] | None = None) -> int:
    """The command line. `demo_exports()` returns the generated demo exports for `--demo`
    (`helpers.demo.exports.ensure_demo_data`, passed in by `python -m helpers.prepare`)."""
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
    parser.add_argument(
        "--max-pixels",
        type=_positive_int,
        default=DEFAULT_MAX_PIXELS,
        help="images with more pixels are listed in problems.csv, not decoded "
        f"(default {DEFAULT_MAX_PIXELS:,}: 80-megapixel photos pass)",
    )
    parser.add_argument("--demo", action="store_true", help="use the generated demo exports")
    parser.add_argument(
        "--force", action="store_true", help="rebuild even if the output is current"
    )
    args = parser.parse_args(argv)

    seam_masks = None
    if args.demo:
        if demo_exports is None:
            parser.error("--demo needs the demo data generator (run python -m helpers.prepare)")
        try:
            demo = demo_exports()
        except (ValueError, OSError) as exc:
            print(f"error: {printable(str(exc))}", file=sys.stderr)
            return 2
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
            args.max_pixels,
        )
    except (ExportError, ValueError, OSError) as exc:
        print(f"error: {printable(str(exc))}", file=sys.stderr)
        return 2
    print(summary(prepared))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
