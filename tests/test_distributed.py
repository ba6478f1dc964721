"""The course's loop and predict under torch.distributed: two CPU processes on gloo.

Each test spawns two processes (`torch.multiprocessing`) that join one process group, as
`torchrun --nproc_per_node 2` would, and compares them with one plain process:

- two processes with batch B end with the weights of one process with batch 2B (the same
  shuffle, each rank reading every other item of it);
- only rank 0 writes checkpoints;
- a run whose rank 1 is killed right after a checkpoint resumes to the same weights;
- predict sharded over two processes writes the same masks and one run record.
"""

from __future__ import annotations

import json
import os
import signal
import socket
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from PIL import Image
from test_train_loop import SquaresDataset, collate, config, stock_forward, tiny_clipseg, trainable

from helpers.core.distributed import world
from helpers.train.loop import train

B = 2  # images per step per process
RECIPE = {"epochs": 2, "lr": 3e-3, "restore_best": False}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn: Any, *args: Any) -> None:
    """Run `fn(rank, *args)` in two processes of one gloo process group."""
    mp.spawn(_join, args=(_free_port(), fn, args), nprocs=2, join=True)


def _join(rank: int, port: int, fn: Any, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        fn(rank, *args)
    finally:
        if dist.is_initialized():  # predict's command line leaves the group itself
            dist.destroy_process_group()


def _train(out: Path, batch_size: int) -> torch.nn.Module:
    model = tiny_clipseg()
    train(model, SquaresDataset(16, seed=1), SquaresDataset(6, seed=2),
          config(batch_size=batch_size, **RECIPE), out, collate, forward_fn=stock_forward,
          progress=False)
    return model


def _train_rank(rank: int, out: Path, kill_after: int | None) -> None:
    """One rank's training; records what it checkpointed; rank 1 may die after an epoch."""
    import helpers.train.loop as loop
    import helpers.train.state as state

    real_checkpoint, real_save = state.save_checkpoint, loop.save_state

    def recorded(folder: Path, *args: Any, **kwargs: Any) -> Path:
        with open(out.parent / f"{out.name}-writes-rank{rank}.txt", "a") as log:
            log.write(f"{Path(folder).name}\n")
        return real_checkpoint(folder, *args, **kwargs)

    def save_then_die(*args: Any) -> None:
        real_save(*args)  # returns once rank 0's checkpoint is complete on every rank
        if rank == 1 and args[1].epoch == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)

    state.save_checkpoint, loop.save_state = recorded, save_then_die
    assert world() == (rank, 2)
    model = _train(out, B)
    torch.save(trainable(model), out.parent / f"{out.name}-weights-rank{rank}.pt")


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ddp") / "run"
    _spawn(_train_rank, out, None)
    return out


def test_two_processes_with_batch_b_equal_one_with_batch_2b(two_processes: Path, tmp_path):
    single = trainable(_train(tmp_path / "single", 2 * B))
    for rank in (0, 1):
        weights = torch.load(two_processes.parent / f"run-weights-rank{rank}.pt")
        assert weights.keys() == single.keys()
        for name, value in single.items():
            if name.endswith("k_proj.bias"):
                # no gradient in exact arithmetic (softmax ignores a shift shared by every
                # key), so AdamW turns float noise into steps of the learning rate's size
                continue
            torch.testing.assert_close(weights[name], value, rtol=1e-3, atol=1e-4, msg=name)
    logs = [json.loads((d / "log.json").read_text()) for d in (two_processes, tmp_path / "single")]
    assert [r["items"] for r in logs[0]] == [r["items"] for r in logs[1]] == [16, 16]
    for two, one in zip(*logs, strict=True):  # validation merged over both ranks' shards
        assert two["val_miou"] == pytest.approx(one["val_miou"], abs=1e-4)
        assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-4)


def test_only_rank_0_writes_checkpoints(two_processes: Path):
    writes = (two_processes.parent / "run-writes-rank0.txt").read_text().split()
    assert writes.count("last") == 2 and set(writes) == {"best", "last"}  # once per epoch
    assert not (two_processes.parent / "run-writes-rank1.txt").exists()
    assert json.loads((two_processes / "log.json").read_text())[-1]["epoch"] == 2


def test_a_run_with_a_killed_rank_resumes_to_the_same_weights(two_processes: Path, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(mp.ProcessExitedException):
        _spawn(_train_rank, out, 1)  # rank 1 dies after epoch 1's checkpoint
    assert [r["epoch"] for r in json.loads((out / "log.json").read_text())] == [1]
    _spawn(_train_rank, out, None)
    resumed = torch.load(tmp_path / "run-weights-rank0.pt")
    whole = torch.load(two_processes.parent / "run-weights-rank0.pt")
    for name, value in whole.items():
        torch.testing.assert_close(resumed[name], value, rtol=1e-5, atol=1e-6, msg=name)


def _predict_rank(rank: int, inputs: Path, model_dir: Path, out: Path) -> None:
    from helpers.inference.mask_files import main

    assert main([str(inputs), "--prompt", "segment crack", "--prompt", "segment taping area",
                 "--model", str(model_dir), "--out", str(out), "--device", "cpu"]) == 0


def test_sharded_predict_writes_the_masks_of_one_process(tmp_path: Path, model_dir: Path):
    from helpers.inference.mask_files import RUN_FILE, main

    inputs = tmp_path / "in"
    inputs.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        size = (40 + 8 * i, 48)
        pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(inputs / f"photo{i}.png")
    (inputs / "notes.txt").write_text("not an image")
    args = ["--prompt", "segment crack", "--prompt", "segment taping area",
            "--model", str(model_dir), "--device", "cpu"]
    assert main([str(inputs), *args, "--out", str(tmp_path / "one")]) == 0
    _spawn(_predict_rank, inputs, model_dir, tmp_path / "two")
    masks = sorted(p.name for p in (tmp_path / "one").glob("*.png"))
    assert len(masks) == 10
    assert sorted(p.name for p in (tmp_path / "two").glob("*.png")) == masks
    for name in masks:
        one = np.asarray(Image.open(tmp_path / "one" / name))
        assert np.array_equal(np.asarray(Image.open(tmp_path / "two" / name)), one), name
    one, two = (json.loads((tmp_path / d / RUN_FILE).read_text()) for d in ("one", "two"))
    assert two["masks_written"] == one["masks_written"] == 10 and two["images"] == 5
    assert two["skipped"] == one["skipped"] and len(one["skipped"]) == 1
