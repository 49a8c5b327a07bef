"""``@register``: mark a worker method as callable on a whole worker group, and say how.

The mark is a plain attribute on the function, so a worker class stays an ordinary Python class
(testable without Ray); :class:`~longrl.controller.worker_group.RayWorkerGroup` reads the marks
to build its group-level methods. Every group call passes through here, so this is also where a collective that
timed out (a peer rank hung, stopped or dead) is renamed with the rank and the method it was in.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeVar

__all__ = ["CollectiveTimeout", "Dispatch", "Execute", "MethodSpec", "register", "registered_methods"]

F = TypeVar("F", bound=Callable[..., Any])
_MARK = "__longrl_register__"


class Dispatch(Enum):
    """How a group call's arguments are sent to ranks and how the results come back."""

    ONE_TO_ALL = "one_to_all"  # same args to every rank; a list of every rank's result
    RANK_ZERO = "rank_zero"  # rank 0 alone runs it; its result
    DP_COMPUTE = "dp_compute"  # Batch args split by data-parallel rank; collect ranks' Batches concatenated


class Execute(Enum):
    """Whether the group call waits for the results."""

    BLOCKING = "blocking"  # return the collected result
    ASYNC = "async"  # return a PendingResult; ``.get()`` waits and collects (overlap with other work)


class CollectiveTimeout(RuntimeError):
    """A rank waited past ``trainer.collective_timeout_s`` for its peers in a torch.distributed collective."""


def _name_collective_timeout(func: F) -> F:
    """``func`` with a collective's time-out (torch says only "Timed out waiting Nms for recv operation") re-raised
    as :class:`CollectiveTimeout` naming this rank and the group method."""

    @functools.wraps(func)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(self, *args, **kwargs)
        except RuntimeError as error:
            if isinstance(error, CollectiveTimeout) or "timed out" not in str(error).lower():
                raise
            raise CollectiveTimeout(
                f"rank {getattr(self, 'rank', '?')} of {getattr(self, 'world_size', '?')} timed out in a collective "
                f"during {type(self).__name__}.{func.__name__} (trainer.collective_timeout_s): another rank is hung, "
                f"stopped or dead; see its log. torch: {error}") from error

    return call  # type: ignore[return-value]


@dataclass(frozen=True)
class MethodSpec:
    dispatch: Dispatch
    execute: Execute


def register(
    dispatch_mode: Dispatch = Dispatch.ONE_TO_ALL, execute_mode: Execute = Execute.BLOCKING
) -> Callable[[F], F]:
    """Expose the decorated worker method on the worker group with these dispatch/execute modes."""
    if not isinstance(dispatch_mode, Dispatch):
        raise TypeError(f"dispatch_mode must be a Dispatch, got {dispatch_mode!r}")
    if not isinstance(execute_mode, Execute):
        raise TypeError(f"execute_mode must be an Execute, got {execute_mode!r}")

    def mark(func: F) -> F:
        wrapped = _name_collective_timeout(func)
        setattr(wrapped, _MARK, MethodSpec(dispatch_mode, execute_mode))
        return wrapped

    return mark


def method_spec(func: Any) -> MethodSpec | None:
    """The spec ``@register`` attached to ``func``, or ``None`` for an unregistered attribute."""
    return getattr(func, _MARK, None)


def registered_methods(cls: type) -> dict[str, MethodSpec]:
    """Every ``@register``ed method of ``cls`` (inherited ones included), by name."""
    found: dict[str, MethodSpec] = {}
    for name in dir(cls):
        spec = method_spec(getattr(cls, name, None))
        if spec is not None:
            found[name] = spec
    return found
