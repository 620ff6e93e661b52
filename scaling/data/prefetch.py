"""Build the next batches on a background thread, so the step never waits for the host.

The batch for step i is a pure function of (seed, i) (`DataPipeline.train_batch`), so a thread can
build and place steps i+1..i+depth while the device runs step i; `make(i)` does both the numpy work
and the `device_put` (`jax.make_array_from_process_local_data`), which releases the GIL. The loop
takes items strictly in order; `wait_s` is the time it spent blocked waiting for one (what
`bench/train_throughput.py` reports as data wait ÷ step time).

The consumer is never left waiting on a producer that will not deliver: it never asks past the end
of the range (an empty range is empty from the start), a producer's error is handed over, and the
wait is in short slices that notice a dead producer and let the main thread run signal handlers.
"""
from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Generic, TypeVar

T = TypeVar("T")
_SLICE_S = 0.1


class Prefetcher(Generic[T]):
    """Items make(start), make(start+1), ..., make(stop-1), produced `depth` ahead of `get()`."""

    def __init__(self, make: Callable[[int], T], start: int, stop: int, depth: int = 2):
        if depth < 1:
            raise ValueError(f"prefetch depth must be >= 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._next = start
        self._stop_at = stop
        self._head = None  # an item taken off the queue by peek() and not yet by get()
        self.wait_s = 0.0
        self._thread = threading.Thread(target=self._produce, args=(make, start, stop),
                                        name="prefetch", daemon=True)
        self._thread.start()

    def _produce(self, make, start, stop):
        try:
            for i in range(start, stop):
                if not self._put((i, make(i), None)):
                    return
        except BaseException as e:  # re-raised in the consumer by get()
            self._put((None, None, e))

    def _put(self, item) -> bool:
        """Queue `item` once there is room; False if the consumer closed first."""
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def _take(self):
        if self._head is None:
            t0 = time.perf_counter()
            self._head = self._wait_for_item()
            self.wait_s += time.perf_counter() - t0
        return self._head

    def _wait_for_item(self):
        while True:
            try:  # a short slice: Python runs signal handlers only between them
                return self._queue.get(timeout=_SLICE_S)
            except queue.Empty:
                if not self._thread.is_alive() and self._queue.empty():
                    raise RuntimeError("prefetch thread ended without delivering an item") from None

    def __len__(self) -> int:
        """Items not yet taken by get()."""
        return max(self._stop_at - self._next, 0)

    def peek(self) -> T:
        """The next item without consuming it (e.g. to compile the step for its shapes)."""
        if not len(self):
            raise IndexError("prefetcher is empty: nothing to peek at")
        i, item, error = self._take()
        if error is not None:
            raise error
        return item

    def get(self, i: int) -> T:
        """The item of step i; steps must be taken in order."""
        if not self._next <= i < self._stop_at or i != self._next:
            raise IndexError(f"prefetcher expected step {self._next}, asked for {i}")
        got, item, error = self._take()
        self._head = None
        if error is not None:
            raise error
        assert got == i, (got, i)
        self._next += 1
        return item

    def close(self) -> None:
        """Stop the producer (it may be blocked on a full queue) and drop what it built."""
        self._stop.set()
        while self._thread.is_alive():
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self._thread.join()

    def __enter__(self) -> "Prefetcher[T]":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
