"""Reading ahead keeps order and hands errors back; the writer records every outcome."""

from __future__ import annotations

import threading

import pytest

from helpers.core.background import BackgroundWriter, read_ahead


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_read_ahead_keeps_order_and_yields_errors_in_place(workers):
    def load(x: int) -> int:
        if x == 3:
            raise ValueError("bad item 3")
        return x * x

    out = list(read_ahead(range(7), load, workers=workers, depth=2))
    assert [item for item, _ in out] == list(range(7))
    assert [r for _, r in out if not isinstance(r, Exception)] == [0, 1, 4, 16, 25, 36]
    assert str(out[3][1]) == "bad item 3"


def test_writer_runs_every_job_and_keeps_failures_by_key():
    seen = []
    lock = threading.Lock()

    def job(i: int) -> int:
        if i == 2:
            raise OSError("disk full")
        with lock:
            seen.append(i)
        return i

    with BackgroundWriter(threads=2, max_pending=2) as writer:
        for i in range(6):
            writer.submit(f"k{i}", job, i)
    assert sorted(seen) == [0, 1, 3, 4, 5]
    assert sorted(writer.done) == [(f"k{i}", i) for i in (0, 1, 3, 4, 5)]
    assert [(k, str(e)) for k, e in writer.failed] == [("k2", "disk full")]
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit("late", job, 0)
