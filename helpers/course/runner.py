"""Execute the course notebooks headlessly with papermill into `outputs/<run>/executed/`.

    python -m helpers.run_notebooks --profile demo
    python -m helpers.run_notebooks --profile full --device cuda --precision bf16
    python -m helpers.run_notebooks --profile full --only 01 02 03 \
        -p cracks_export=../shared/data/roboflow/cracks.v1i.coco \
        -p taping_export=../shared/data/roboflow/drywall-join-detect.v2i.coco

Parameters are checked against each notebook's `parameters` cell before anything runs:
papermill itself only warns about unknown names, which silently runs the defaults. Their
values are checked too, before any kernel starts: a profile setting must have the profile's
type (`helpers.course.profiles.Profile`) and lie in its range (`PARAMETER_RANGES`; e.g.
`image_size` is a multiple of 16 from 32 up), any other parameter the type of its default.
So are the device and precision: a run that asks for a GPU this machine lacks stops before the first
notebook, in one line. A notebook that fails is named in one line with its error and the
executed copy to open, and the notebooks after it do not run.

Kernels draw with matplotlib's inline backend whatever `MPLBACKEND` the caller exported (the
Makefile and the tests export `Agg`, which would draw nothing), so every executed notebook
keeps its figures as image outputs.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import os
import sys
import time
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from helpers.core.io import atomic_path, read_json, write_json
from helpers.core.paths import NOTEBOOKS_DIR, metrics_dir, profile_dir, shown
from helpers.core.progress import HEADLESS_ENV
from helpers.core.runtime import DEVICES, PRECISIONS, RuntimeUnavailable, get_runtime
from helpers.course.profiles import Profile, get_profile
from helpers.course.records import type_problem

# Allowed values of numeric profile settings given as -p: (lowest, highest), None = unbounded.
PARAMETER_RANGES: dict[str, tuple[float | None, float | None]] = {
    "seed": (0, None),
    "image_size": (32, 4096),
    "batch_size": (1, None),
    "eval_batch_size": (1, None),
    "epochs": (1, None),
    "lr": (0, None),
    "tower_lr": (0, None),
    "full_lr": (0, None),
    "weight_decay": (0, None),
    "warmup_fraction": (0, 1),
    "patience": (1, None),
    "negative_rate": (0, None),
    "bce_weight": (0, None),
    "dice_weight": (0, None),
    "bce_pos_weight": (0, None),
    "lora_r": (1, None),
    "lora_alpha": (1, None),
    "lora_dropout": (0, 1),
    "max_steps_per_epoch": (0, None),
    "num_workers": (0, None),
    "eval_max_images": (1, None),
}
POSITIVE = ("lr", "tower_lr", "full_lr", "bce_pos_weight")  # above their lowest value, not at it
PATCH = 16  # CLIPSeg's vision tower cuts images into 16-pixel patches

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


def _default_type(notebooks: list[str], key: str) -> type | None:
    """The type of `key`'s default in the first of `notebooks` declaring it (None: no default)."""
    import papermill

    for name in notebooks:
        found = papermill.inspect_notebook(str(NOTEBOOKS_DIR / f"{name}.ipynb")).get(key)
        if found is not None:
            try:
                default = ast.literal_eval(found["default"])
            except (ValueError, SyntaxError):
                return None
            return None if default is None else type(default)
    return None


def value_problem(key: str, value: Any, default_type: type | None = None) -> str | None:
    """Why `-p key=value` cannot run, or None: the type of a profile setting (or of the
    notebook's default) and the range of PARAMETER_RANGES."""
    if value is None:  # a notebook's None: the profile's value
        return None
    hints = typing.get_type_hints(Profile)
    if key in {f.name for f in dataclasses.fields(Profile)} and key != "extra":
        problem = type_problem(value, hints[key], key)
    elif default_type is not None:
        problem = type_problem(value, default_type, key)
    else:
        return None
    if problem:
        return f"-p {key}={value!r}: {problem}"
    low, high = PARAMETER_RANGES.get(key, (None, None))
    if low is None and high is None:
        return None
    if (low is not None and value < low) or (high is not None and value > high) or (
        key in POSITIVE and value == low
    ):
        lowest = f"above {low}" if key in POSITIVE else f"at least {low}"
        allowed = lowest + (f" and at most {high}" if high is not None else "")
        return f"-p {key}={value!r}: must be {allowed}"
    if key == "image_size" and value % PATCH:
        return f"-p {key}={value!r}: must be a multiple of {PATCH} (the model's patch size)"
    return None


def check_parameter_values(names: list[str], params: dict[str, Any]) -> None:
    """A `ValueError` naming the first parameter whose type or range cannot run (before any
    kernel starts)."""
    for key, value in params.items():
        problem = value_problem(key, value, _default_type(names, key))
        if problem:
            raise ValueError(problem)


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
    check_parameter_values(names, params)
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
        name_paths_by_role(executed / f"{name}.ipynb")
        seconds[name] = round(time.perf_counter() - start, 1)
        print(f"   {seconds[name]:.1f} s", flush=True)
        if store_expected:
            n = store_expected_outputs(executed / f"{name}.ipynb", NOTEBOOKS_DIR / f"{name}.ipynb")
            print(f"   stored the expected outputs of {n} checked cell(s)", flush=True)
    seconds["total"] = round(sum(seconds.values()), 1)
    record_run_times(metrics_dir(run_name) / "run_times.json", profile, seconds)
    return seconds


def name_paths_by_role(executed: Path) -> None:
    """Write papermill's record of the input and output notebooks relative to the repository,
    so an executed notebook (and its HTML) names no machine path."""
    import nbformat

    nb = nbformat.read(executed, as_version=4)
    record = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if record.get(key):
            record[key] = shown(record[key])
    with atomic_path(executed) as tmp:
        nbformat.write(nb, tmp)


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
    try:
        check_parameter_values(names, overrides)
    except ValueError as err:
        fail(str(err))
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
