"""The one place paths come from: project root, data, outputs per profile, shared data."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT / "data"
OUTPUTS_DIR = PROJECT_ROOT / "outputs"
NOTEBOOKS_DIR = PROJECT_ROOT / "notebooks"

# Real Roboflow exports shipped beside the repository (tests and trials only).
SHARED_DIR = Path(os.environ.get("DRYWALL_SHARED_DIR", PROJECT_ROOT.parent / "shared"))
SHARED_ROBOFLOW_DIR = SHARED_DIR / "data" / "roboflow"
SHARED_MODELS_DIR = SHARED_DIR / "models"


def demo_data_dir() -> Path:
    """Folder holding the generated demo exports (gitignored)."""
    return DATA_DIR / "demo"


def prepared_dir(name: str) -> Path:
    """Folder holding rendered masks and the manifest of one prepared data set."""
    return DATA_DIR / "prepared" / name


def profile_dir(profile: str) -> Path:
    """`outputs/<profile>/`, created on demand."""
    path = OUTPUTS_DIR / profile
    path.mkdir(parents=True, exist_ok=True)
    return path


def metrics_dir(profile: str) -> Path:
    """`outputs/<profile>/metrics/`, where every notebook writes its key numbers."""
    path = profile_dir(profile) / "metrics"
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir(profile: str) -> Path:
    """`outputs/<profile>/figures/`."""
    path = profile_dir(profile) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def models_dir() -> Path:
    """`outputs/models/`: locally built base models (the tiny CLIPSeg) shared by profiles."""
    path = OUTPUTS_DIR / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def shown(path: str | os.PathLike[str]) -> str:
    """How outputs name a path: relative to the repository when it lies in or beside it (so an
    executed notebook, a metrics file or a report names no machine path), else its last part."""
    p = Path(path).expanduser().resolve()
    if p == PROJECT_ROOT or PROJECT_ROOT.parent in p.parents:
        return Path(os.path.relpath(p, PROJECT_ROOT)).as_posix()
    return p.name


def resolve(path: str | os.PathLike[str]) -> Path:
    """Resolve a path given in a notebook parameter: relative paths are taken from the root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else (PROJECT_ROOT / p).resolve()
