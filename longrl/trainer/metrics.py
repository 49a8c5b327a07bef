"""The numbers logged per step: reductions of worker metrics, rollout-data statistics, timings and throughput.

Names follow EasyR1 / verl (``critic/score/mean``, ``response_length/clip_ratio``, ``timing_s/gen``,
``perf/throughput``) so dashboards and habits carry over.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Union

import torch

from longrl.protocol import ADVANTAGES, ATTENTION_MASK, OLD_LOG_PROBS, RESPONSE_MASK, ROLLOUT_LOG_PROBS, TASK, Batch

Number = Union[float, int, torch.Tensor]


def append_metrics(into: dict[str, list[float]], new: Mapping[str, Number | Sequence[Number]]) -> None:
    """Add one micro-batch's metrics to per-key lists (a tensor contributes its elements)."""
    for key, value in new.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        for item in values:
            if isinstance(item, torch.Tensor):
                into.setdefault(key, []).extend(item.detach().float().flatten().tolist())
            else:
                into.setdefault(key, []).append(float(item))


def reduce_metrics(metrics: Mapping[str, Sequence[Number]], extrema: Iterable[str] = ()) -> dict[str, float]:
    """The mean of each key's values; keys in ``extrema`` also get ``<key>/max`` and ``<key>/min``.

    A key with no values is an error rather than a silent NaN, because it means a worker reported nothing.
    """
    lists: dict[str, list[float]] = {}
    append_metrics(lists, metrics)  # type: ignore[arg-type]
    wanted = set(extrema)
    missing = sorted(wanted - set(metrics))
    if missing:
        raise KeyError(f"extrema asked for metric(s) {missing} that are not among {sorted(metrics)}")
    reduced: dict[str, float] = {}
    for key in metrics:
        values = lists.get(key, [])
        if not values:
            raise ValueError(f"metric {key!r} has no values to reduce")
        reduced[key] = sum(values) / len(values)
        if key in wanted:
            reduced[f"{key}/max"], reduced[f"{key}/min"] = max(values), min(values)
    return reduced


def compute_data_metrics(
    batch: Batch,
    scores: torch.Tensor,
    max_response_length: int,
    reward_parts: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, float]:
    """Statistics of one rollout batch.

    Reads ``response_mask`` (N, T) and ``attention_mask`` (N, P + T, prompt and response) from the tensors,
    ``advantages`` and ``rollout_log_probs`` / ``old_log_probs`` (N, T) when present, and ``task`` from the non-tensors when present. ``scores`` (N,) is each
    response's sequence reward and ``reward_parts`` the reward function's other keys (``accuracy``, ``format``,
    ...) per response. Accuracy (``critic/accuracy/mean``, per task ``accuracy/<task>``) is the ``accuracy`` part when
    there is one, else the score, read as a fraction correct (:func:`accuracy_fraction`); ``reward/<part>`` are the
    reward's raw means.
    """
    response_mask = batch.tensors[RESPONSE_MASK].float()
    response_length = response_mask.sum(-1)
    prompt_length = batch.tensors[ATTENTION_MASK].float().sum(-1) - response_length
    scores = scores.detach().float().flatten()
    if scores.numel() != len(batch):
        raise ValueError(f"scores has {scores.numel()} values for a batch of {len(batch)} responses")
    metrics = {
        **_stats("critic/score", scores, ("mean", "std", "max", "min")),
        **_stats("response_length", response_length, ("mean", "max", "min")),
        "response_length/clip_ratio": (response_length >= max_response_length).float().mean().item(),
        **_stats("prompt_length", prompt_length, ("mean", "max", "min")),
    }
    if ADVANTAGES in batch.tensors.keys():
        valid = batch.tensors[ADVANTAGES].float()[response_mask.bool()]
        metrics.update(_stats("critic/advantages", valid, ("mean", "max", "min")))
    metrics.update(rollout_probs_diff(batch))
    parts = {key: torch.tensor(list(values), dtype=torch.float32) for key, values in (reward_parts or {}).items()}
    for key, values in parts.items():
        if values.numel() != len(batch):
            raise ValueError(f"reward part {key!r} has {values.numel()} values for a batch of {len(batch)} responses")
        metrics[f"reward/{key}"] = values.mean().item()
    accuracy = accuracy_fraction(parts.get("accuracy", scores))
    metrics["critic/accuracy/mean"] = accuracy.mean().item()
    if TASK in batch.non_tensors:
        metrics.update(per_task_mean(batch.non_tensors[TASK], accuracy, prefix="accuracy"))
    return metrics


def rollout_probs_diff(batch: Batch) -> dict[str, float]:
    """verl's rollout-vs-trainer probability gap, ``training/rollout_probs_diff/{mean,max,std}`` of |p_rollout -
    p_actor| over the response tokens: how far the engine that sampled (after the last weight sync) is from the actor
    that scores; a broken sync or a position/precision mismatch shows up here first. Empty without both log-probs."""
    if not {ROLLOUT_LOG_PROBS, OLD_LOG_PROBS} <= set(batch.tensors.keys()):
        return {}
    tokens = batch.tensors[RESPONSE_MASK].bool()
    gap = (batch.tensors[ROLLOUT_LOG_PROBS].float().exp() - batch.tensors[OLD_LOG_PROBS].float().exp()).abs()
    return _stats("training/rollout_probs_diff", gap[tokens], ("mean", "max", "std"))


def accuracy_fraction(values: torch.Tensor | Sequence[float]) -> torch.Tensor:
    """A reward's ``accuracy`` as a fraction correct: values clamped into [0, 1].

    EasyR1's rewards give 0/1 (or partial credit in between), which pass unchanged; Long-RL's ``dapo.py`` gives -1 for
    wrong and +1 for right, where clamping turns -1 into 0 and the mean into the share answered right (its mean
    of -1 would read as an impossible accuracy). Mapping (x + 1) / 2 instead would need to know each reward's
    convention and would turn a 0/1 reward's 0 into 0.5.
    """
    return torch.as_tensor(values, dtype=torch.float32).clamp(0.0, 1.0)


def per_task_mean(tasks: Sequence[object], values: torch.Tensor, prefix: str) -> dict[str, float]:
    """``<prefix>/<task>``: the mean of ``values`` over the rows of each task (rows without a task are skipped)."""
    groups: dict[str, list[float]] = defaultdict(list)
    for task, value in zip(tasks, values.tolist()):
        if task is not None:
            groups[str(task)].append(value)
    return {f"{prefix}/{task}": sum(group) / len(group) for task, group in sorted(groups.items())}


def compute_timing_metrics(timings: Mapping[str, float]) -> dict[str, float]:
    """``timing_s/<phase>`` for every phase timed with :func:`longrl.trainer.timer.timer`."""
    return {f"timing_s/{name}": seconds for name, seconds in timings.items()}


def compute_throughput_metrics(
    num_tokens: int, timings: Mapping[str, float], n_gpus: int, step_key: str = "step"
) -> dict[str, float]:
    """Tokens processed in the step (prompt + response, all rollouts) per second and per second per GPU.

    ``timings[step_key]`` is the whole step's wall time; per-GPU throughput is what compares across cluster sizes.
    """
    if step_key not in timings:
        raise KeyError(f"timings has no {step_key!r} entry (the whole step); "
                       f"time the step with timer({step_key!r}, ...)")
    seconds = timings[step_key]
    if n_gpus <= 0:
        raise ValueError(f"n_gpus must be positive, got {n_gpus}")
    per_second = num_tokens / seconds if seconds > 0 else math.inf
    return {
        "perf/total_num_tokens": float(num_tokens),
        "perf/time_per_step": seconds,
        "perf/throughput": per_second / n_gpus,
        "perf/tokens_per_second": per_second,
    }


def _stats(prefix: str, values: torch.Tensor, which: Sequence[str]) -> dict[str, float]:
    """Mean / std (population, as numpy's default) / max / min of a 1-D tensor; empty tensors give NaN."""
    if values.numel() == 0:
        return {f"{prefix}/{name}": math.nan for name in which}
    reducers = {
        "mean": lambda v: v.mean(),
        "std": lambda v: v.std(unbiased=False),
        "max": lambda v: v.max(),
        "min": lambda v: v.min(),
    }
    return {f"{prefix}/{name}": reducers[name](values).item() for name in which}
