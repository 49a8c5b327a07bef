"""What one stage's configuration is, as the loader needs it: the text stages and Flow-GRPO each hand over one."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["StageSchema"]


def _unchanged(overrides: Sequence[str]) -> list[str]:
    return list(overrides)


def _nothing_to_report(cfg: Any) -> list[str]:
    return []


@dataclass(frozen=True)
class StageSchema:
    """The name the stage's defaults list uses, its dataclass tree and validator, and its handling of upstream keys.

    ``translate_upstream`` turns overrides written for EasyR1 / Long-RL into the stage's own (aliases renamed,
    unneeded keys dropped with a note, unsupported ones refused); ``report_unapplied`` logs settings the stage
    accepts but does not act on. A stage without upstream counterparts keeps the defaults.
    """

    name: str
    tree: type
    validate: Callable[[Any], None]
    translate_upstream: Callable[[Sequence[str]], list[str]] = _unchanged
    report_unapplied: Callable[[Any], list[str]] = _nothing_to_report
