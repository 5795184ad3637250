"""Giving freed memory back to the operating system.

PyTorch's CPU tensors of many shapes (padded minibatches, chunks sorted by length) are allocated
and freed through glibc's malloc, whose heap fragments: freed memory stays with the process and
the resident size climbs through training (sneon on 20,000 sheets, 3 epochs: +2.3 GB over what it
held before the fit). ``malloc_trim(0)`` once a second in the training loop hands the free pages
back at no measurable cost in time (+1.1 GB there, fit 56.0 s against 56.1 s;
benchmarks/bench_memory.py); four times a second kept +0.5 GB but made the fit 35% slower, and
fixing glibc's mmap threshold instead cost 30-80% more time. Elsewhere than glibc this is a no-op."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import time


@functools.cache
def _trim():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):            # not glibc (macOS, musl): nothing to call
        return None


def release() -> None:
    """Return the heap's free pages to the operating system (glibc), now."""
    trim = _trim()
    if trim is not None:
        trim(0)


class Releaser:
    """``tick()`` in a hot loop releases at most every ``seconds``: cheap enough to call per step."""

    def __init__(self, seconds: float = 1.0):
        self.seconds = seconds
        self._last = time.monotonic()

    def tick(self) -> None:
        now = time.monotonic()
        if now - self._last >= self.seconds:
            release()
            self._last = now
