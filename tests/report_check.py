"""Cross-check: every number the report prints is a value some metrics file holds."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# A number standing on its own: not part of a word, a file name, a path or "352x352".
NUMBER = re.compile(
    r"(?<![\w./\-])-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w/])"
)


def _leaves(value: Any) -> Iterator[float]:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, (int, float)):
        yield float(value)
    elif isinstance(value, str):  # a recorded sentence: its numbers are recorded values too
        for token in NUMBER.findall(value):
            yield float(token.replace(",", ""))
    elif isinstance(value, dict):
        for v in value.values():
            yield from _leaves(v)
    elif isinstance(value, list):
        for v in value:
            yield from _leaves(v)


def metric_values(out_dir: Path) -> list[float]:
    """Every number in `<out_dir>/metrics/*.json`."""
    values: list[float] = []
    for path in sorted((out_dir / "metrics").glob("*.json")):
        values.extend(_leaves(json.loads(path.read_text(encoding="utf-8"))))
    return values


def _prose(text: str) -> str:
    """The report without headings, figure embeds, links and the run-facts list."""
    text = re.sub(r"!?\[[^\]]*\]\([^)]*\)", " ", text)
    return "\n".join(
        line for line in text.splitlines() if not line.startswith(("#", "- profile", "- seed"))
    )


def json_values(*paths: Path) -> list[float]:
    """Every number in the given JSON files."""
    return [v for p in paths for v in _leaves(json.loads(p.read_text(encoding="utf-8")))]


def unbacked_numbers(text: str, out_dir: Path, extra: list[float] | None = None) -> list[str]:
    """Numbers printed in `text` that no metrics value (nor one of `extra`) rounds to, at the
    printed precision."""
    values = metric_values(out_dir) + list(extra or [])
    missing = []
    for token in NUMBER.findall(_prose(text)):
        if len(token) > 1 and token[0] == "0" and token[1].isdigit():
            continue  # "05": a notebook's number, not a quantity
        number = float(token.replace(",", ""))
        digits = len(token.split(".")[1]) if "." in token else 0
        tolerance = 0.5 * 10 ** -digits + 1e-9
        if not any(abs(v - number) <= tolerance for v in values):
            missing.append(token)
    return missing
