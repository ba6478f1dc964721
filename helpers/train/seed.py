"""Reproducibility: seeding, deterministic settings, DataLoader generators, RNG snapshots."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's `random`, NumPy's global generator and torch (CPU and every CUDA device).

    `PYTHONHASHSEED` is set too, but it only affects processes started afterwards (such as
    DataLoader workers started with "spawn"); the hash seed of the running interpreter is
    fixed at start-up. Nothing here depends on string hashing order.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {seed!r}")
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def deterministic_cpu(warn_only: bool = True) -> None:
    """Ask torch for deterministic kernels (bitwise-repeatable runs on one machine).

    With `warn_only=True` an operation that has no deterministic implementation warns
    instead of raising, so this is safe to call anywhere. On CUDA, cuBLAS also needs
    `CUBLAS_WORKSPACE_CONFIG`, which is set here if absent (it must be set before the first
    cuBLAS call to take effect). cuDNN autotuning is switched off for the same reason.
    """
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=warn_only)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def derive_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from several integers, e.g. `derive_seed(seed, epoch)`."""
    state = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & (2**63 - 1)


def make_generator(seed: int, *parts: int) -> torch.Generator:
    """A CPU `torch.Generator` seeded from `(seed, *parts)`: pass it to a DataLoader.

    Seeding the shuffle from (seed, epoch) makes each epoch's order reproducible without
    saving any iterator state, so a resumed run sees the same batches as an uninterrupted one.
    """
    generator = torch.Generator()
    generator.manual_seed(derive_seed(seed, *parts))
    return generator


def seed_worker(worker_id: int) -> None:
    """`worker_init_fn` for DataLoaders: seed `random` and NumPy in each worker.

    torch already seeds each worker with `base_seed + worker_id`, where `base_seed` is drawn
    from the DataLoader's generator; this carries that seed over to `random` and NumPy.
    """
    worker_seed = torch.initial_seed() % 2**32
    random.seed(worker_seed)
    np.random.seed(worker_seed)


def capture_rng_state() -> dict[str, Any]:
    """Snapshot of the global RNGs (Python, NumPy, torch CPU, CUDA) made of plain types.

    The result holds only ints, lists, strings and tensors, so it can be saved with
    `torch.save` and read back with `torch.load(..., weights_only=True)`.
    """
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {
            "kind": str(np_state[0]),
            "keys": [int(k) for k in np_state[1]],
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restore a snapshot taken with `capture_rng_state`."""
    missing = {"python", "numpy", "torch"} - set(state)
    if missing:
        raise KeyError(f"RNG snapshot lacks {sorted(missing)}")
    random.setstate(_to_tuples(state["python"]))
    np_state = state["numpy"]
    np.random.set_state(
        (
            np_state["kind"],
            np.asarray(np_state["keys"], dtype=np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in cuda_states])


def _to_lists(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_lists(v) for v in value]
    return value


def _to_tuples(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_to_tuples(v) for v in value)
    return value
