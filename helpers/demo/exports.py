"""Make sure the synthetic demo exports exist: `python -m helpers.demo_data`.

The data are regenerated only when the folder is missing, was written by another version of
the generator or with other parameters, or when forced: the folder is a `helpers.core.cache`
output keyed by the generation parameters (`cache_key.json`; folders from before that record
are regenerated once). Generation holds a lock beside the folder (`.<name>.lock`), so two runs
never build it at once: the second waits, then finds it current.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from helpers.core.paths import demo_data_dir
from helpers.demo.synthetic import DemoPaths, generate_demo_exports

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

    A folder built by this generator version with these parameters is used as it is;
    otherwise it is rebuilt beside itself and swapped in, so an interrupted run never leaves a
    half-written folder. Leftovers of a killed generation are removed.
    """
    out = Path(out_dir) if out_dir is not None else demo_data_dir()
    return generate_demo_exports(
        out,
        seed=seed,
        image_size=image_size,
        n_crack_sources=n_crack_sources,
        n_taping_sources=n_taping_sources,
        force=force,
    )


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
    try:
        paths = ensure_demo_data(args.out, seed=args.seed, force=args.force)
    except (OSError, ValueError, TimeoutError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"root:       {paths.root}")
    print(f"cracks:     {paths.cracks}")
    print(f"taping:     {paths.taping}")
    print(f"seam_masks: {paths.seam_masks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
