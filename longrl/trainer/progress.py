"""The console's line per step: where the run is (``step N/T``, elapsed, ETA) and a few headline numbers.

A plain line, not a progress bar, so it reads the same in a terminal and in a Slurm log; the full set of metrics is
in the metrics file. The ETA is the mean wall time between logged steps (validation and checkpoint time included)
times the steps left; the first step a process logs, which follows start-up, counts its own step time instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Headline:
    """A number on the line: its short label, the metric keys it may come from (the first present) and format."""

    label: str
    keys: tuple[str, ...]
    fmt: str


HEADLINES = (
    Headline("reward", ("critic/score/mean",), ".3f"),
    Headline("acc", ("critic/accuracy/mean",), ".3f"),
    Headline("len", ("response_length/mean",), ".1f"),
    Headline("kl", ("actor/kl_loss", "critic/kl"), ".2e"),
    Headline("entropy", ("actor/entropy",), ".3f"),
    Headline("loss", ("sft/loss",), ".4f"),
    Headline("val_reward", ("val/reward",), ".3f"),
    Headline("val_acc", ("val/accuracy",), ".3f"),
    Headline("val_loss", ("val/sft_loss",), ".4f"),
)
STEP_TIME_KEY = "timing_s/step"


def clock_time(seconds: float) -> str:
    """``H:MM:SS`` (hours unbounded), for elapsed time and ETA."""
    whole = max(0, round(seconds))
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def headline(metrics: Mapping[str, float]) -> str:
    """``label value`` for each headline number the step logged, in :data:`HEADLINES` order."""
    parts = []
    for item in HEADLINES:
        key = next((k for k in item.keys if k in metrics), None)
        if key is not None:
            parts.append(f"{item.label} {metrics[key]:{item.fmt}}")
    return " ".join(parts)


@dataclass
class StepProgress:
    """Formats each logged step's line; created when the run starts, so elapsed counts from there."""

    total_steps: int | None
    now: Callable[[], float] = time.monotonic
    start: float = field(init=False)
    last: float | None = field(init=False, default=None)
    durations: list[float] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.start = self.now()

    def line(self, step: int, metrics: Mapping[str, float]) -> str:
        """``step N/T | elapsed H:MM:SS | eta H:MM:SS | <headline> | S.s s/step`` (step 0: the validation before
        training, no ETA)."""
        now = self.now()
        total = "?" if self.total_steps is None else str(self.total_steps)
        fields = [f"step {step}/{total}", f"elapsed {clock_time(now - self.start)}"]
        if step > 0:
            first = self.last is None and STEP_TIME_KEY in metrics
            self.durations.append(metrics[STEP_TIME_KEY] if first else now - (self.last or self.start))
            if self.total_steps is not None:
                mean = sum(self.durations) / len(self.durations)
                fields.append(f"eta {clock_time(mean * max(0, self.total_steps - step))}")
        self.last = now
        numbers = headline(metrics)
        if numbers:
            fields.append(numbers)
        if STEP_TIME_KEY in metrics:
            fields.append(f"{metrics[STEP_TIME_KEY]:.1f} s/step")
        return " | ".join(fields)
