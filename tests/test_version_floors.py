"""The version floors in pyproject.toml are no lower than what the code is known to need.

Each entry names a feature the code uses, a text that shows the use in helpers/, and the first
release that has it. A floor below that lets `pip` install a release on which the course fails
at run time; an entry whose text no longer appears in helpers/ is stale and must go.
"""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parents[1]

# (distribution, first release with the feature, the feature, text showing its use in helpers/)
KNOWN_NEEDS = [
    ("numpy", "2.0", "np.bitwise_count (the near-duplicate search of the split)",
     "np.bitwise_count("),
    ("pandas", "2.2", "DataFrameGroupBy.apply(include_groups=...)", "include_groups="),
    ("torch", "2.3", "torch.amp.GradScaler(device)", "torch.amp.GradScaler("),
    ("transformers", "4.47", "352-pixel input with interpolate_pos_encoding (4.46 broke it)",
     "interpolate_pos_encoding=True"),
    ("pillow", "9.1", "the Image.Transpose enum", "Image.Transpose."),
]


def declared() -> dict[str, Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    reqs = [Requirement(r) for r in data["project"]["dependencies"]]
    return {r.name.lower(): r for r in reqs}


def floor(req: Requirement) -> Version | None:
    """The lowest version the requirement allows (its `>=` bound), or None without one."""
    bounds = [Version(s.version) for s in req.specifier if s.operator == ">="]
    return max(bounds) if bounds else None


def helpers_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "helpers").rglob("*.py"))


@pytest.mark.parametrize(("dist", "needed", "feature", "marker"), KNOWN_NEEDS,
                         ids=[n[0] for n in KNOWN_NEEDS])
def test_declared_floor_is_at_least_what_the_code_needs(dist, needed, feature, marker):
    assert marker in helpers_text(), f"{feature}: no longer used; drop this entry"
    req = declared().get(dist)
    assert req is not None, f"{dist} is used ({feature}) but not declared in pyproject.toml"
    low = floor(req)
    assert low is not None and low >= Version(needed), (
        f"pyproject.toml allows {dist} {req.specifier}, but {feature} needs {dist} >= {needed}"
    )


def test_every_dependency_has_a_floor_the_environment_meets():
    for name, req in declared().items():
        low = floor(req)
        assert low is not None, f"{name} has no >= floor in pyproject.toml"
        try:
            installed = Version(version(name))
        except PackageNotFoundError:
            continue  # not installed here: nothing to compare
        assert req.specifier.contains(installed, prereleases=True), (
            f"installed {name} {installed} is outside the declared {req.specifier}"
        )


def test_a_floor_below_a_known_need_is_caught():
    """The check itself: a requirement like the old `numpy>=1.26` fails it."""
    assert floor(Requirement("numpy>=1.26")) < Version("2.0")
    assert floor(Requirement("transformers>=4.47,!=4.46.*")) == Version("4.47")
    assert floor(Requirement("pandas")) is None
    assert re.search(r"include_groups=", helpers_text())
