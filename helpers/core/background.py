"""Background threads that keep a model busy: reading files ahead and writing results behind.

    for item, loaded in read_ahead(paths, load, workers=4):   # in order; errors are yielded
        ...
    with BackgroundWriter() as writer:
        writer.submit(key, write_png, path, array)             # returns at once
    writer.done, writer.failed                                 # [(key, result)], [(key, error)]

Threads suit this work: decoding (PIL, OpenCV) and PNG encoding release the GIL, and nothing
has to be pickled. Results never depend on the number of threads.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def read_ahead(
    items: Iterable[T], load: Callable[[T], R], workers: int = 2, depth: int | None = None
) -> Iterator[tuple[T, R | Exception]]:
    """Yield `(item, load(item))` in the order of `items`, loading up to `depth` items ahead.

    `workers` threads load (0: load in the caller's thread). An exception raised by `load` is
    yielded in place of the result, so one bad item never stops the others.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")

    def safe(item: T) -> R | Exception:
        try:
            return load(item)
        except Exception as err:  # handed to the caller, who decides
            return err

    if workers == 0:
        for item in items:
            yield item, safe(item)
        return
    depth = max(1, depth if depth is not None else 2 * workers)
    pending: deque[tuple[T, Future]] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="read-ahead") as pool:
        try:
            for item in items:
                pending.append((item, pool.submit(safe, item)))
                if len(pending) >= depth:
                    first, future = pending.popleft()
                    yield first, future.result()
            while pending:
                first, future = pending.popleft()
                yield first, future.result()
        finally:
            for _, future in pending:
                future.cancel()


class BackgroundWriter:
    """Runs write jobs in background threads behind a bounded queue; collects what happened.

    `submit` blocks only when `max_pending` jobs are waiting, so memory stays bounded. After
    `close()` (or leaving the `with` block) `done` holds `(key, result)` of each job that
    finished and `failed` holds `(key, exception)` of each that raised.
    """

    def __init__(self, threads: int = 2, max_pending: int = 64) -> None:
        if threads < 1 or max_pending < 1:
            raise ValueError(f"threads and max_pending must be >= 1, got {threads}, {max_pending}")
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="writer")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._lock = threading.Lock()
        self.done: list[tuple[Hashable, Any]] = []
        self.failed: list[tuple[Hashable, Exception]] = []
        self._closed = False

    def submit(self, key: Hashable, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """Queue `fn(*args, **kwargs)`; its outcome is recorded under `key`."""
        if self._closed:
            raise RuntimeError("this writer is closed")
        self._slots.acquire()

        def job() -> None:
            try:
                result = fn(*args, **kwargs)
            except Exception as err:
                with self._lock:
                    self.failed.append((key, err))
            else:
                with self._lock:
                    self.done.append((key, result))
            finally:
                self._slots.release()

        self._pool.submit(job)

    def close(self) -> None:
        """Wait for every queued job to finish."""
        self._closed = True
        self._pool.shutdown(wait=True)

    def __enter__(self) -> BackgroundWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
