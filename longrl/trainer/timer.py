"""Wall-clock seconds per phase of a training step (generation, reward, old/ref log-probs, update, ...)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def timer(name: str, timings: dict[str, float]) -> Iterator[None]:
    """Add the seconds spent in the ``with`` body to ``timings[name]``.

    Time is added rather than overwritten because a phase can run several times in one step (DAPO's dynamic
    sampling generates until the batch is full), and the step's cost is the sum. The time is recorded even when
    the body raises, so a failing phase still shows how long it ran. Work queued on a GPU is counted only if the
    body waits for it (``ray.get`` on the driver does).
    """
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
