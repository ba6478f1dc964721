"""The runtime policy: device and precision resolution, one-line errors, loader settings."""

from __future__ import annotations

import os
import sys

import pytest
import torch

from helpers.core.runtime import (
    Runtime,
    RuntimeUnavailable,
    available_devices,
    get_runtime,
    model_device,
    resolve_device,
    resolve_precision,
    to_device,
)

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_auto_picks_the_best_available_device():
    assert resolve_device("auto").type == available_devices()[0]
    assert available_devices()[-1] == "cpu"
    assert resolve_device(None) == resolve_device("auto")


def test_cpu_runs_fp32_without_autocast_or_scaler():
    rt = get_runtime("cpu", "auto")
    assert rt.device == torch.device("cpu")
    assert rt.precision == "fp32" and rt.amp_dtype is None and rt.grad_scaler() is None
    assert rt.num_workers == 0 and not rt.pin_memory
    with rt.autocast():
        assert not torch.is_autocast_enabled()
    assert rt.describe()["device"] == "cpu" and rt.describe()["gpu"] is None


@needs_no_cuda
def test_missing_cuda_is_a_one_line_error_naming_what_is_there():
    with pytest.raises(RuntimeUnavailable) as err:
        resolve_device("cuda")
    message = str(err.value)
    assert "\n" not in message and "'cuda'" in message and "available: " in message
    assert "cpu" in message


def test_unknown_device_and_precision_are_refused():
    with pytest.raises(RuntimeUnavailable, match="unknown device 'tpu'"):
        resolve_device("tpu")
    with pytest.raises(RuntimeUnavailable, match="unknown precision 'fp8'"):
        resolve_precision("fp8", torch.device("cpu"))


def test_half_precision_is_refused_off_cuda():
    cpu = torch.device("cpu")
    for name in ("bf16", "fp16"):
        with pytest.raises(RuntimeUnavailable, match="needs a CUDA device"):
            resolve_precision(name, cpu)
    with pytest.raises(RuntimeUnavailable, match="unknown precision 'off'"):
        resolve_precision("off", cpu)  # fp32 has one spelling
    assert get_runtime("cpu", "fp32").amp_dtype is None


def _unset_tokenizers_parallelism(monkeypatch) -> None:
    """Remove the variable for this test, and restore what was there afterwards."""
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "unset by the test")  # recorded for undo
    monkeypatch.delenv("TOKENIZERS_PARALLELISM")


def test_explicit_worker_count_and_loader_settings(monkeypatch):
    _unset_tokenizers_parallelism(monkeypatch)
    rt = get_runtime("cpu", "fp32", num_workers=2)
    kwargs = rt.loader_kwargs(persistent=True)
    assert kwargs["num_workers"] == 2 and kwargs["persistent_workers"] is True
    assert get_runtime("cpu", num_workers=0).loader_kwargs() == {
        "num_workers": 0,
        "pin_memory": False,
    }
    with pytest.raises(RuntimeUnavailable):
        get_runtime("cpu", num_workers=-1)


@pytest.mark.skipif(sys.platform != "linux", reason="fork is the Linux loader setting")
def test_loader_workers_fork_on_linux_whatever_python_defaults_to(monkeypatch):
    _unset_tokenizers_parallelism(monkeypatch)
    # Python 3.14 defaults to "forkserver", which would hand every worker a pickled copy
    # of the preloaded images instead of sharing them.
    kwargs = Runtime(torch.device("cuda"), "bf16", num_workers=4).loader_kwargs()
    assert kwargs["multiprocessing_context"] == "fork"
    assert kwargs["pin_memory"] is True
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"


def test_loader_workers_keep_the_platform_default_elsewhere(monkeypatch):
    _unset_tokenizers_parallelism(monkeypatch)
    monkeypatch.setattr(sys, "platform", "darwin")  # macOS: spawn, nothing is forked
    kwargs = Runtime(torch.device("mps"), "fp32", num_workers=4).loader_kwargs()
    assert "multiprocessing_context" not in kwargs
    assert "TOKENIZERS_PARALLELISM" not in os.environ


def test_batches_move_to_the_model_device():
    model = torch.nn.Linear(2, 2)
    batch = to_device({"x": torch.zeros(2), "names": ["a"]}, model_device(model))
    assert batch["x"].device == model_device(model) and batch["names"] == ["a"]


def test_a_peak_memory_window_survives_the_loops_per_epoch_resets(monkeypatch):
    from helpers.core import runtime

    counter = {"peak": 0.0}
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: counter["peak"])
    monkeypatch.setattr(
        torch.cuda, "reset_peak_memory_stats", lambda device=None: counter.update(peak=0.0)
    )
    cuda = torch.device("cuda")
    notebook = runtime.PeakMemory(cuda)
    counter["peak"] = 300 * 2**20  # epoch 1 peaks at 300 MB
    runtime.reset_peak_memory(cuda)  # the loop starts epoch 2
    counter["peak"] = 100 * 2**20
    assert runtime.peak_memory_mb(cuda) == 100  # the epoch's own window
    assert notebook.mb() == 300  # the notebook's window keeps epoch 1's peak
    later = runtime.PeakMemory(cuda)  # opened after epoch 1: does not see it
    counter["peak"] = 120 * 2**20
    assert later.mb() == 120 and notebook.mb() == 300
    cpu = runtime.PeakMemory(torch.device("cpu"))
    counter["peak"] = 10_000 * 2**20
    runtime.reset_peak_memory(cuda)  # a GPU peak is not a CPU window's
    assert cpu.folded == 0 and notebook.mb() == 10_000
