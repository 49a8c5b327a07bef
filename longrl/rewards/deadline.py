"""A time limit on one reward call, raised inside the call so the loader can name the function and the sample.

A timer thread sends the main thread a real ``SIGUSR1`` when the limit passes; its handler raises
:class:`RewardTimeout` there. A real signal (not ``_thread.interrupt_main``) is needed to wake a blocking call
such as ``time.sleep`` or a socket read, and ``SIGALRM`` is left alone because graders (math_verify) set their own
alarms. Signals reach only the main thread, so the limit applies where reward calls run on one: the reward worker
processes (``worker.reward.num_workers >= 1``). Code stuck in native code never sees the signal; the worker pool's
own backstop (``ParallelReward``) stops those processes.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional

__all__ = ["RewardTimeout", "deadline"]


class RewardTimeout(BaseException):
    """A reward call ran past ``worker.reward.timeout_s``.

    A ``BaseException``, like ``KeyboardInterrupt``: graders wrap their work in ``except Exception`` (math_verify
    returns False), which would swallow the limit and let the call run on."""


_limit: Optional[float] = None  # the limit of the call in progress on the main thread; None between calls


def _expire(signum: int, frame: object) -> None:
    if _limit is not None:  # a signal that lands after its call finished is ignored
        raise RewardTimeout(f"no result within worker.reward.timeout_s={_limit:g} s")


@contextmanager
def deadline(seconds: Optional[float]) -> Iterator[None]:
    """Raise :class:`RewardTimeout` in the body once it has run ``seconds``; no limit off the main thread or at None."""
    global _limit
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGUSR1) is not _expire:
        signal.signal(signal.SIGUSR1, _expire)  # kept installed: a late signal must find it, not the default (exit)
    timer = threading.Timer(seconds, signal.pthread_kill, (threading.main_thread().ident, signal.SIGUSR1))
    timer.daemon = True
    _limit = seconds
    timer.start()
    try:
        yield
    finally:
        _limit = None
        timer.cancel()
        timer.join()
