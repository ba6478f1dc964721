"""Make sure the synthetic demo exports exist: `python -m helpers.demo_data`.

The data are regenerated only when the folder is missing, was written by another version of
the generator or with other parameters (recorded in its stamp file), or when forced. Generation
holds a lock beside the folder (`.<name>.lock`), so two runs never build it at once: the second
waits, then finds it current.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from helpers.data.synthetic import (
    DemoPaths,
    demo_paths,
    generate_demo_exports,
    generation_parameters,
    read_stamp,
)
from helpers.io import current_umask, folder_lock, lock_path, sweep_temp_files
from helpers.paths import demo_data_dir

__all__ = ["DemoPaths", "ensure_demo_data", "main"]


def ensure_demo_data(
    out_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    *,
    image_size: int = 320,
    n_crack_sources: int = 48,
    n_taping_sources: int = 36,
    force: bool = False,
) -> DemoPaths:
    """Return the demo exports under `out_dir` (default `data/demo/`), generating them if needed.

    A folder whose stamp matches the generator version and these parameters is used as it is;
    otherwise it is rebuilt beside itself and swapped in, so an interrupted run never leaves a
    half-written folder.
    """
    out = Path(out_dir) if out_dir is not None else demo_data_dir()
    wanted = generation_parameters(seed, image_size, n_crack_sources, n_taping_sources)
    if not force and _is_current(out, wanted):
        if lock_path(out).exists():  # a killed regeneration: tidy up unless one runs now
            try:
                with folder_lock(out, timeout=0, quiet=True):
                    _sweep_leftovers(out)
            except (TimeoutError, OSError):
                pass
        return demo_paths(out)
    with folder_lock(out):
        if not force and _is_current(out, wanted):  # another run built it while we waited
            return demo_paths(out)
        _sweep_leftovers(out)
        paths = generate_demo_exports(
            out,
            seed=seed,
            image_size=image_size,
            n_crack_sources=n_crack_sources,
            n_taping_sources=n_taping_sources,
        )
        os.chmod(out, 0o777 & ~current_umask())  # built in a private temporary folder
        return paths


def _is_current(out: Path, wanted: dict) -> bool:
    stamp = read_stamp(out)
    paths = demo_paths(out)
    return (
        stamp is not None
        and {k: stamp.get(k) for k in wanted} == wanted
        and all(p.is_dir() for p in (paths.cracks, paths.taping, paths.seam_masks))
    )


def _sweep_leftovers(out: Path) -> None:
    """Remove the half-built and replaced folders a killed generation left beside `out`."""
    sweep_temp_files(out.parent)
    for pattern in (f".{out.name}.building-*", f".{out.name}.old-*"):
        for leftover in out.parent.glob(pattern):  # safe: the lock is held
            shutil.rmtree(leftover, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ensure the demo data and print where it is."""
    parser = argparse.ArgumentParser(
        prog="python -m helpers.demo_data",
        description="Generate (if missing or out of date) the synthetic demo exports: "
        "cracks (COCO polygons), drywall-join (COCO boxes) and the true seam masks.",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help=f"output folder (default: {demo_data_dir()})"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--force", action="store_true", help="regenerate even if up to date")
    args = parser.parse_args(argv)
    paths = ensure_demo_data(args.out, seed=args.seed, force=args.force)
    print(f"root:       {paths.root}")
    print(f"cracks:     {paths.cracks}")
    print(f"taping:     {paths.taping}")
    print(f"seam_masks: {paths.seam_masks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
