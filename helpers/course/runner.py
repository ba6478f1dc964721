"""Execute the course notebooks headlessly with papermill into `outputs/<run>/executed/`.

    python -m helpers.run_notebooks --profile demo
    python -m helpers.run_notebooks --profile full --device cuda --precision bf16
    python -m helpers.run_notebooks --profile full --only 01 02 03 \
        -p cracks_export=../shared/data/roboflow/cracks.v1i.coco \
        -p taping_export=../shared/data/roboflow/drywall-join-detect.v2i.coco

Parameters are checked against each notebook's `parameters` cell before anything runs:
papermill itself only warns about unknown names, which silently runs the defaults. So are the
device and precision: a run that asks for a GPU this machine lacks stops before the first
notebook, in one line. A notebook that fails is named in one line with its error and the
executed copy to open, and the notebooks after it do not run.

Kernels draw with matplotlib's inline backend whatever `MPLBACKEND` the caller exported (the
Makefile and the tests export `Agg`, which would draw nothing), so every executed notebook
keeps its figures as image outputs.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers.core.io import atomic_path, read_json, write_json
from helpers.core.paths import NOTEBOOKS_DIR, metrics_dir, profile_dir
from helpers.core.progress import HEADLESS_ENV
from helpers.core.runtime import DEVICES, PRECISIONS, RuntimeUnavailable, get_runtime
from helpers.course.profiles import get_profile

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


def declared_parameters(names: list[str]) -> set[str]:
    """Names declared by the `parameters` cell of any of the notebooks `names`."""
    return set().union(*(notebook_parameter_names(n) for n in names)) if names else set()


def check_parameters(names: list[str], params: dict[str, Any]) -> None:
    """Refuse parameters that none of the notebooks declares (papermill would only warn)."""
    declared = declared_parameters(names)
    unknown = sorted(set(params) - declared)
    if unknown:
        raise SystemExit(
            f"no notebook among {names} has parameter(s) {unknown}; see their parameters cells"
        )


def parameters_for(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The subset of `params` that notebook `name` declares."""
    declared = notebook_parameter_names(name)
    return {k: v for k, v in params.items() if k in declared}


CHECK_TAG = "nbval-check-output"
INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def encrypted_kernel_manager() -> type | None:
    """A kernel manager that encrypts the connection to each notebook's kernel (CurveZMQ)
    where jupyter_client and pyzmq support it; None (papermill's default) elsewhere.

    ipykernel >= 7.3 warns on every start of a kernel reached over plain TCP, so without this
    each notebook of a run would print a security warning.
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    if not zmq.has("curve") or not AsyncKernelManager.class_traits().get("transport_encryption"):
        return None

    class EncryptedKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport_encryption = "auto"  # only where the kernelspec declares support

    return EncryptedKernelManager


@contextmanager
def inline_figures() -> Iterator[None]:
    """Kernels started inside this block draw figures inline (they become outputs) and show
    no progress bars, which would be stored frozen at their first frame
    (`helpers.core.progress`)."""
    wanted = {
        "MPLBACKEND": INLINE_BACKEND,
        HEADLESS_ENV: "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",  # transformers' and the Hub's own bars
    }
    before = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def store_expected_outputs(executed: Path, source: Path) -> int:
    """Copy the outputs of cells tagged `nbval-check-output` from an executed notebook into
    its source (matched by cell id); every other cell of the source keeps no output.

    These stored outputs are what nbval compares against in `make test`. Returns the number
    of cells whose outputs were stored.
    """
    import nbformat

    done = nbformat.read(executed, as_version=4)
    src = nbformat.read(source, as_version=4)
    by_id = {c.get("id"): c for c in done.cells}
    stored = 0
    for cell in src.cells:
        if cell.cell_type != "code":
            continue
        cell.execution_count = None
        cell.outputs = []
        if CHECK_TAG in cell.get("metadata", {}).get("tags", []) and cell.get("id") in by_id:
            ran = by_id[cell["id"]]
            cell.outputs = [
                o for o in ran.get("outputs", []) if o.get("output_type") != "display_data"
            ]
            cell.execution_count = ran.get("execution_count") or 1  # nbval skips unrun cells
            stored += 1
    with atomic_path(source) as tmp:
        nbformat.write(src, tmp)
    return stored


class NotebookFailed(RuntimeError):
    """A notebook raised while running (one-line message naming it and its executed copy)."""


def run(
    profile: str,
    names: list[str],
    overrides: dict[str, Any],
    kernel_name: str = "python3",
    store_expected: bool = False,
) -> dict[str, float]:
    """Execute notebooks in order; returns seconds per notebook (also written to metrics)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    params = injected_parameters(profile, overrides)
    run_name = str(params.get("run_name") or profile)
    check_parameters(names, params)
    executed = profile_dir(run_name) / "executed"
    executed.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    kernel_manager = encrypted_kernel_manager()
    engine = {"kernel_manager_class": kernel_manager} if kernel_manager else {}
    for name in names:
        print(f"== {name} ({profile})", flush=True)
        start = time.perf_counter()
        with inline_figures():
            try:
                papermill.execute_notebook(
                    str(NOTEBOOKS_DIR / f"{name}.ipynb"),
                    str(executed / f"{name}.ipynb"),
                    parameters=parameters_for(name, params),
                    kernel_name=kernel_name,
                    cwd=str(NOTEBOOKS_DIR),
                    progress_bar=False,
                    **engine,
                )
            except PapermillExecutionError as err:
                raise NotebookFailed(
                    f"notebook {name} failed in cell {err.exec_count or err.cell_index}: "
                    f"{err.ename}: "
                    f"{str(err.evalue).splitlines()[0] if err.evalue else ''} (the executed "
                    f"notebook with the traceback: {executed / f'{name}.ipynb'})"
                ) from err
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"   {seconds[name]:.1f} s", flush=True)
        if store_expected:
            n = store_expected_outputs(executed / f"{name}.ipynb", NOTEBOOKS_DIR / f"{name}.ipynb")
            print(f"   stored the expected outputs of {n} checked cell(s)", flush=True)
    seconds["total"] = round(sum(seconds.values()), 1)
    record_run_times(metrics_dir(run_name) / "run_times.json", profile, seconds)
    return seconds


def record_run_times(path: Path, profile: str, seconds: dict[str, float]) -> None:
    """Each notebook's seconds at its latest execution, merged into `path` (so running one
    notebook again does not erase the others), with their total."""
    times: dict[str, float] = {}
    if path.is_file():
        try:
            earlier = read_json(path)
        except (OSError, ValueError):
            earlier = {}
        if earlier.get("profile") == profile:
            times = {k: v for k, v in earlier.get("seconds", {}).items() if k != "total"}
    times.update({k: v for k, v in seconds.items() if k != "total"})
    times = dict(sorted(times.items()))
    times["total"] = round(sum(times.values()), 1)
    write_json(path, {"profile": profile, "seconds": times})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="demo", help="demo (default), full or smoke")
    parser.add_argument("--only", nargs="*", help="notebook numbers or names, e.g. 01 02")
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a notebook parameter (repeatable)",
    )
    parser.add_argument(
        "--device", choices=DEVICES, help="where models run (default: the profile's, auto)"
    )
    parser.add_argument(
        "--precision", choices=PRECISIONS, help="bf16, fp16 or fp32 (default: the profile's)"
    )
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel name")
    parser.add_argument(
        "--store-expected",
        action="store_true",
        help="after each notebook, store the outputs of its nbval-checked cells in the source",
    )
    args = parser.parse_args(argv)

    def fail(message: str) -> None:
        parser.exit(2, f"{parser.prog}: error: {message}\n")

    overrides: dict[str, Any] = {}
    for item in args.parameter:
        if "=" not in item:
            fail(f"-p expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        overrides[key.strip()] = parse_value(value)
    names = select(args.only)
    declared = declared_parameters(names)
    for key in ("device", "precision"):  # for the notebooks that run a model
        if getattr(args, key) is not None and key in declared:
            overrides[key] = getattr(args, key)
    try:
        profile = get_profile(args.profile)
        device = args.device or overrides.get("device", profile.device)
        get_runtime(device, args.precision or overrides.get("precision", profile.precision))
    except (ValueError, RuntimeUnavailable) as err:
        fail(str(err))
    if not names:
        print("no notebooks found in", NOTEBOOKS_DIR, file=sys.stderr)
        return 1
    if args.store_expected and (args.profile != "demo" or overrides):
        fail("--store-expected needs the default demo run (no -p, --profile demo)")
    try:
        seconds = run(
            args.profile, names, overrides, args.kernel, store_expected=args.store_expected
        )
    except NotebookFailed as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"executed {len(names)} notebook(s) in {seconds['total']:.1f} s -> outputs/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
