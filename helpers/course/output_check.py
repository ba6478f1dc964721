"""What a run leaves for a student must be clean: no machine paths, no NaN, no object reprs.

`scan_outputs(run_dir)` reads every text file a run writes (executed notebooks, their HTML,
`report.md`, metrics, model folders with their configs and cards, predict settings) and
returns one line per finding, naming the file relative to the run folder:

- an **absolute path** of this machine (the repository's own location, a home or temporary
  folder, or a Windows drive path): a student's copy names paths relative to the repository;
- **NaN or Infinity**: in JSON, a token strict JSON rejects; in the report and in the outputs
  of executed notebooks, a printed "NaN"/"nan" or "inf" where a number should be (the HTML
  repeats those outputs beside code and scripts, so it is left to its notebook);
- a bare **object repr** (`<... object at 0x...>`): something printed that is not a result.

`python -m helpers.report` runs it after writing the report and fails when it finds anything.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from helpers.core.paths import PROJECT_ROOT

TEXT_SUFFIXES = {".ipynb", ".html", ".md", ".json", ".csv", ".txt", ".yaml", ".yml"}
SKIPPED_FOLDERS = {"predictions"}  # stored probabilities: arrays and their index, no prose
ABSOLUTE = re.compile(
    r"(?<![\w.~/-])(?:/(?:tmp|work|root|home|Users|var/folders|mnt|private)/[^\s\"'<>\\]+"
    r"|[A-Za-z]:\\\\?(?:Users|Documents and Settings)\\[^\s\"'<>]+)"
)
REPR = re.compile(r"(?:<|&lt;)[\w. ]+ at 0x[0-9a-fA-F]+(?:>|&gt;)")
NOT_A_NUMBER = re.compile(r"(?<![\w.])(?:NaN|nan|-?inf|-?Infinity)(?![\w(])")


def text_files(run_dir: Path) -> Iterator[Path]:
    """The text files under `run_dir` a student reads, in a stable order."""
    for path in sorted(run_dir.rglob("*")):
        rel = path.relative_to(run_dir).parts
        if path.is_file() and path.suffix in TEXT_SUFFIXES and not SKIPPED_FOLDERS & set(rel):
            yield path


def _shown_text(path: Path, text: str) -> str:
    """What a reader sees of a file: a notebook's sources, outputs and metadata, without its
    embedded images (base64 PNG data can spell anything)."""
    if path.suffix == ".html":
        return re.sub(r"data:image/[a-z]+;base64,[A-Za-z0-9+/=]+", "", text)
    if path.suffix != ".ipynb":
        return text
    nb = json.loads(text)
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            for kind in [k for k in output.get("data", {}) if k.startswith("image/")]:
                del output["data"][kind]
    return json.dumps(nb)


def _outputs_text(notebook_json: str) -> str:
    """The text outputs of a notebook's code cells (what running it printed or displayed)."""
    parts = []
    for cell in json.loads(notebook_json).get("cells", []):
        for output in cell.get("outputs", []):
            parts += output.get("text", [])
            for kind, value in output.get("data", {}).items():
                if kind.startswith("text/"):
                    parts += value if isinstance(value, list) else [value]
    return "".join(parts)


def _json_constants(text: str) -> list[str]:
    found: list[str] = []

    def refuse(token: str) -> float:
        found.append(token)
        return 0.0

    json.loads(text, parse_constant=refuse)
    return found


def scan_file(path: Path, run_dir: Path) -> list[str]:
    """The findings of one file, as "<file relative to the run>: <what> <example>"."""
    name = path.relative_to(run_dir).as_posix()
    try:
        text = path.read_text(encoding="utf-8")
        shown = _shown_text(path, text)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        return [f"{name}: unreadable ({err})"]
    findings = []
    root = str(PROJECT_ROOT)
    paths = ([root] if root in shown else []) + ABSOLUTE.findall(shown)
    if paths:
        findings.append(f"{name}: absolute path {paths[0]!r} ({len(paths)} in all)")
    if path.suffix == ".json":
        try:
            constants = _json_constants(text)
        except json.JSONDecodeError as err:
            return [*findings, f"{name}: not JSON ({err})"]
        if constants:
            findings.append(f"{name}: {constants[0]} in JSON ({len(constants)} in all)")
    elif path.suffix in (".md", ".ipynb"):
        printed = _outputs_text(shown) if path.suffix == ".ipynb" else shown
        hits = NOT_A_NUMBER.findall(printed)
        if hits:
            findings.append(
                f"{name}: printed {hits[0]!r} where a number belongs ({len(hits)} in all)"
            )
    reprs = REPR.findall(shown)
    if reprs:
        findings.append(f"{name}: object repr {reprs[0]!r} ({len(reprs)} in all)")
    return findings


def scan_outputs(run_dir: str | Path) -> list[str]:
    """Every finding in the text files of a run folder (empty when the run is clean)."""
    run_dir = Path(run_dir)
    return [line for path in text_files(run_dir) for line in scan_file(path, run_dir)]
