"""Execute the course notebooks headlessly with papermill into `outputs/<run>/executed/`.

    python -m helpers.run_notebooks --profile demo
    python -m helpers.run_notebooks --profile full --only 01 02 03 \
        -p cracks_export=../shared/data/roboflow/cracks.v1i.coco \
        -p taping_export=../shared/data/roboflow/drywall-join-detect.v2i.coco

Parameters are checked against each notebook's `parameters` cell before anything runs:
papermill itself only warns about unknown names, which silently runs the defaults.
"""

from __future__ import annotations

import argparse
import ast
import sys
import time
from typing import Any

from helpers.io import write_json
from helpers.paths import NOTEBOOKS_DIR, metrics_dir, profile_dir

NOTEBOOKS = [
    "01_data_inspection",
    "02_mask_rendering",
    "03_joint_dataset",
    "04_lora_training",
    "05_threshold_sweep",
    "06_full_vs_lora",
    "07_failure_analysis",
]


def available_notebooks() -> list[str]:
    """The course notebooks present in `notebooks/`, in course order."""
    return [name for name in NOTEBOOKS if (NOTEBOOKS_DIR / f"{name}.ipynb").exists()]


def select(only: list[str] | None) -> list[str]:
    """Notebooks matching `only` (numbers like "01" or full names); all when empty."""
    names = available_notebooks()
    if not only:
        return names
    chosen = [n for n in names if any(n == o or n.startswith(f"{o}_") for o in only)]
    missing = [o for o in only if not any(n == o or n.startswith(f"{o}_") for n in names)]
    if missing:
        raise SystemExit(f"no notebook matches {missing}; available: {names}")
    return chosen


def notebook_parameter_names(name: str) -> set[str]:
    """Names defined in the notebook's `parameters` cell (papermill's own inspection)."""
    import papermill

    return set(papermill.inspect_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb")))


def parse_value(text: str) -> Any:
    """A `-p key=value` value: a Python literal when it parses as one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def injected_parameters(profile: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """What the runner passes to every notebook."""
    return {"profile": profile, **overrides}


def check_parameters(name: str, params: dict[str, Any]) -> None:
    """Refuse parameters a notebook does not declare (papermill would only warn)."""
    unknown = sorted(set(params) - notebook_parameter_names(name))
    if unknown:
        raise SystemExit(f"{name}.ipynb has no parameter(s) {unknown}; see its parameters cell")


def run(
    profile: str,
    names: list[str],
    overrides: dict[str, Any],
    kernel_name: str = "python3",
) -> dict[str, float]:
    """Execute notebooks in order; returns seconds per notebook (also written to metrics)."""
    import papermill

    params = injected_parameters(profile, overrides)
    run_name = str(params.get("run_name") or profile)
    for name in names:
        check_parameters(name, params)
    executed = profile_dir(run_name) / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    for name in names:
        print(f"== {name} ({profile})", flush=True)
        start = time.perf_counter()
        papermill.execute_notebook(
            str(NOTEBOOKS_DIR / f"{name}.ipynb"),
            str(executed / f"{name}.ipynb"),
            parameters=params,
            kernel_name=kernel_name,
            cwd=str(NOTEBOOKS_DIR),
            progress_bar=False,
        )
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"   {seconds[name]:.1f} s", flush=True)
    seconds["total"] = round(sum(seconds.values()), 1)
    write_json(metrics_dir(run_name) / "run_times.json", {"profile": profile, "seconds": seconds})
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="demo", help="demo (default) or full")
    parser.add_argument("--only", nargs="*", help="notebook numbers or names, e.g. 01 02")
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a notebook parameter (repeatable)",
    )
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    args = parser.parse_args(argv)
    overrides: dict[str, Any] = {}
    for item in args.parameter:
        if "=" not in item:
            parser.error(f"-p expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = parse_value(value)
    names = select(args.only)
    if not names:
        print("no notebooks found in", NOTEBOOKS_DIR, file=sys.stderr)
        return 1
    seconds = run(args.profile, names, overrides, kernel_name=args.kernel)
    print(f"executed {len(names)} notebook(s) in {seconds['total']:.1f} s -> outputs/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
