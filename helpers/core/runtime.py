"""The one place that decides where and how models run: device, precision, data loading.

    rt = get_runtime("auto", "auto")   # cuda, then mps, then cpu; bf16 / fp16 / fp32
    model.to(rt.device)
    with rt.autocast():
        logits = ...

Everything that touches a model asks this module: training, evaluation, the gradient report,
the prompt-switch helpers, tiny pretraining, `Segmenter` and the command lines. Notebooks print
`rt.describe()` and record it in their metrics.

Precision: "auto" is bf16 autocast where the GPU supports it, fp16 autocast with a GradScaler
on other CUDA GPUs, and fp32 everywhere else (autocast is only used on CUDA). TF32 matmuls are
allowed for fp32 on GPUs that have them. A device that is asked for but absent is a
`RuntimeUnavailable` error whose one-line message names what is available.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import sys
import weakref
from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


class RuntimeUnavailable(ValueError):
    """A device or precision that this machine cannot provide (one-line message)."""


def available_devices() -> list[str]:
    """Device types usable here, best first (always ends with "cpu")."""
    found = []
    if torch.cuda.is_available():
        found.append("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        found.append("mps")
    return [*found, "cpu"]


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`"auto"` (or None): cuda, then mps, then cpu. Otherwise the named device, if present."""
    if isinstance(device, torch.device):
        device = str(device)
    name = (device or "auto").strip().lower()
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise RuntimeUnavailable(
            f"unknown device {device!r}; choose one of {', '.join(DEVICES)} (or cuda:N)"
        )
    have = available_devices()
    if kind == "auto":
        return torch.device(have[0])
    if kind not in have:
        raise RuntimeUnavailable(
            f"device {name!r} is not available on this machine; available: {', '.join(have)}"
        )
    if kind == "cuda" and ":" in name:
        index = int(name.split(":")[1])
        if index >= torch.cuda.device_count():
            raise RuntimeUnavailable(
                f"device {name!r} does not exist; this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    return torch.device(name)


def resolve_precision(precision: str | None, device: torch.device) -> str:
    """"auto": bf16 where supported, else fp16 on CUDA, fp32 elsewhere (autocast is CUDA-only)."""
    name = (precision or "auto").strip().lower()
    if name not in PRECISIONS:
        raise RuntimeUnavailable(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if device.type != "cuda":
        if name in ("bf16", "fp16"):
            raise RuntimeUnavailable(
                f"precision {name!r} needs a CUDA device (autocast is used on CUDA only); "
                f"this run is on {device.type}: use precision 'fp32' or 'auto'"
            )
        return "fp32"
    # Native bf16 from compute capability 8 (Ampere) on; `is_bf16_supported()` also says yes
    # to older GPUs that only emulate it, slowly, and asks the current device, not this one.
    native_bf16 = torch.cuda.get_device_capability(device)[0] >= 8
    if name == "auto":
        return "bf16" if native_bf16 else "fp16"
    if name == "bf16" and not native_bf16:
        raise RuntimeUnavailable(
            f"precision 'bf16' is not supported by {torch.cuda.get_device_name(device)}; "
            "use 'fp16' or 'auto'"
        )
    return name


def default_workers(device: torch.device) -> int:
    """DataLoader workers: none on CPU (the model needs the cores), up to 8 feeding a GPU."""
    if device.type == "cpu":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(8, (cores or 1) - 1))


@dataclass(frozen=True)
class Runtime:
    """Where and how a model runs, and how its data loaders are set up."""

    device: torch.device
    precision: str  # "bf16" | "fp16" | "fp32" (resolved, never "auto")
    num_workers: int

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype, None for fp32."""
        return _DTYPES[self.precision]

    @property
    def pin_memory(self) -> bool:
        return self.device.type == "cuda"

    def autocast(self) -> AbstractContextManager:
        """`torch.autocast` at this precision (a no-op context for fp32)."""
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler | None:
        """A GradScaler for fp16 (whose small gradients underflow), None otherwise."""
        return torch.amp.GradScaler(self.device.type) if self.precision == "fp16" else None

    def loader_kwargs(self, persistent: bool = False) -> dict[str, Any]:
        """DataLoader settings for this device: workers, pinned memory, prefetching."""
        kwargs: dict[str, Any] = {"num_workers": self.num_workers, "pin_memory": self.pin_memory}
        if self.num_workers > 0:
            kwargs["persistent_workers"] = persistent
            kwargs["prefetch_factor"] = 4
            if "fork" in multiprocessing.get_all_start_methods() and sys.platform == "linux":
                # Workers share the preloaded images with the main process (copy-on-write)
                # instead of receiving a pickled copy each, as under Python 3.14's default
                # start method ("forkserver").
                kwargs["multiprocessing_context"] = "fork"
                # A tokenizer used before the fork would otherwise warn once per worker.
                os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        return kwargs

    def gpu_name(self) -> str | None:
        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return None

    def describe(self) -> dict[str, Any]:
        """What notebooks print and record: device, GPU name, precision, workers."""
        return {
            "device": self.device.type,
            "gpu": self.gpu_name(),
            "precision": self.precision,
            "num_workers": self.num_workers,
            "torch": torch.__version__,
        }

    def __str__(self) -> str:
        gpu = f" ({self.gpu_name()})" if self.gpu_name() else ""
        return (
            f"device {self.device}{gpu}, precision {self.precision}, "
            f"{self.num_workers} data-loader worker(s)"
        )


def get_runtime(
    device: str | torch.device | None = "auto",
    precision: str | None = "auto",
    num_workers: int | None = None,
) -> Runtime:
    """Resolve device, precision and workers, and switch TF32 matmuls on for fp32 on CUDA."""
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    if num_workers is not None and (isinstance(num_workers, bool) or int(num_workers) < 0):
        raise RuntimeUnavailable(f"num_workers must be an int >= 0, got {num_workers!r}")
    workers = default_workers(dev) if num_workers is None else int(num_workers)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    return Runtime(dev, prec, workers)


def model_device(model: nn.Module) -> torch.device:
    """The device of a model's parameters (cpu for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Every tensor of a batch on `device` (non-blocking from pinned memory); others as they are."""
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
        for k, v in batch.items()
    }


class PeakMemory:
    """The peak memory since this window opened, in MB (GPU memory on CUDA, RSS on CPU).

    Inner windows (the loop resets CUDA's counter every epoch) do not erase it: every
    `reset_peak_memory` first folds the peak so far into the windows that are open.
    """

    _open: ClassVar[weakref.WeakSet[PeakMemory]] = weakref.WeakSet()

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.folded = 0.0
        reset_peak_memory(self.device)
        PeakMemory._open.add(self)

    def mb(self) -> float:
        """The peak since the window opened."""
        return max(self.folded, peak_memory_mb(self.device))


def reset_peak_memory(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA only; CPU reports the process's peak RSS).

    The peak so far is first kept by every open `PeakMemory` window on that device.
    """
    if device.type == "cuda":
        so_far = peak_memory_mb(device)
        for window in list(PeakMemory._open):
            if window.device.type == device.type and (
                window.device.index is None
                or device.index is None
                or window.device.index == device.index
            ):
                window.folded = max(window.folded, so_far)
        if torch.cuda.is_initialized():  # before, nothing was allocated (and a reset would fail)
            torch.cuda.reset_peak_memory_stats(device)


def memory_held_elsewhere_mb(model: nn.Module, device: torch.device) -> float:
    """CUDA: memory allocated on `device` by anything but `model`'s own weights (earlier models
    still alive, cached tensors); 0 elsewhere. A training run subtracts it from its peak, so the
    peak it logs is its own: its weights, gradients, optimizer state and activations."""
    if device.type != "cuda" or not torch.cuda.is_initialized():
        return 0.0
    tensors = itertools.chain(model.parameters(), model.buffers())
    own = sum(t.numel() * t.element_size() for t in tensors if t.device.type == "cuda")
    return max(0.0, (torch.cuda.memory_allocated(device) - own) / 2**20)


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: max allocated since the last reset; CPU: the process's peak RSS so far."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # Windows
        return float("nan")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work (for timing); a no-op on CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
