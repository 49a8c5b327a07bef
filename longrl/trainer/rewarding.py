"""Turn generated responses into per-sample rewards (step 4 of DESIGN.md), off the trainer's critical path.

The reward function sees EasyR1's input dicts (``response``, ``response_length``, ``ground_truth`` plus the row's
``problem``, ``problem_type`` and ``options``) and returns a score dict per sample; ``overall`` becomes the sequence
reward and every other key a metric. DAPO's soft overlong punishment is added to ``overall`` here, so the advantage
estimators see one scalar per sample.

:func:`build_reward` assembles what the trainer calls: the configured function, spread over ``num_workers``
processes when asked, around it the reward of ``worker.reward.kind`` (:mod:`longrl.rewards.kinds`). A
:class:`RewardScorer` runs it in a background thread, so a slow reward (a judge, code execution) overlaps the
workers' log-prob passes instead of stalling them.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Protocol

import numpy as np
import torch

from longrl.algos import overlong_penalty
from longrl.config.schema import RootConfig
from longrl.protocol import (
    ANSWER,
    OPTIONS,
    QUESTION,
    RESPONSE_MASK,
    RESPONSES,
    SCORE_PART_PREFIX,
    SCORES,
    TASK,
    Batch,
)
from longrl.rewards import (Reward, RewardFunction, RewardFunctionError, RewardInput, RewardScore,
                            load_reward_function)
from longrl.rewards.kinds import build_reward_kind
from longrl.trainer.metrics import accuracy_fraction

logger = logging.getLogger(__name__)


def reward_inputs(batch: Batch, tokenizer) -> list[dict]:
    """One EasyR1 reward input per row: the decoded response and the row's ground truth."""
    responses, mask = batch.tensors[RESPONSES], batch.tensors[RESPONSE_MASK]
    lengths = mask.sum(-1).tolist()
    texts = tokenizer.batch_decode([row[: int(n)] for row, n in zip(responses.tolist(), lengths)],
                                   skip_special_tokens=True)
    fields = batch.non_tensors
    return [
        {"response": text, "response_length": int(length), "ground_truth": str(fields[ANSWER][i]),
         "problem": str(fields[QUESTION][i]), "problem_type": fields[TASK][i],
         "options": list(fields[OPTIONS][i]) if OPTIONS in fields and fields[OPTIONS][i] is not None else None}
        for i, (text, length) in enumerate(zip(texts, lengths))
    ]


def score_batch(batch: Batch, inputs: list[dict], reward_fn: Reward,
                cfg: RootConfig) -> tuple[torch.Tensor, dict]:
    """Sequence rewards (N,) of ``batch`` given its :func:`reward_inputs`, and per-part score lists; raises
    ``RewardFunctionError`` naming the bad sample."""
    scores = reward_fn(inputs)
    overall = torch.tensor([score["overall"] for score in scores], dtype=torch.float32)
    parts = {key: [float(score[key]) for score in scores] for key in scores[0] if key != "overall"} if scores else {}
    algo = cfg.algorithm
    if algo.overlong_buffer_len > 0:
        lengths = batch.tensors[RESPONSE_MASK].sum(-1)
        penalty = overlong_penalty(lengths, cfg.data.max_response_length, algo.overlong_buffer_len,
                                   algo.overlong_penalty_factor).float()
        overall = overall + penalty
        parts["overlong_penalty"] = penalty.tolist()
    return overall, parts


_PROCESS_REWARD: RewardFunction | None = None  # the reward function of a ParallelReward worker process


def _set_process_reward(fn: RewardFunction, parent_pid: int) -> None:
    global _PROCESS_REWARD
    _PROCESS_REWARD = fn  # unpickled in this process: the function's file imported here
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), name="parent-watch", daemon=True).start()


def _exit_with_parent(parent_pid: int) -> None:
    """End this worker once its trainer is gone (``kill -9`` included): nothing else would, it waits for work.

    A thread polling the parent pid rather than ``PR_SET_PDEATHSIG``, which fires when the *thread* that spawned
    the process ends (a pool's helper thread, say) and exists on Linux only."""
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os._exit(1)


def _score_in_process(chunk: list[RewardInput], first_index: int) -> list[RewardScore]:
    assert _PROCESS_REWARD is not None, "reward worker process started without its reward function"
    return _PROCESS_REWARD(chunk, first_index)


class ParallelReward:
    """A reward function run by ``num_workers`` spawned processes, each loading it once (module state persists
    across calls, as in one process); a batch is split over them and the scores come back in input order. An error
    names its sample as it would in-process.

    With ``fn.timeout_s`` each call is limited inside the worker (:mod:`longrl.rewards.deadline`). A chunk still
    running at ``timeout_s`` per call plus one more (code stuck in native code, or that swallowed the time-out) gets
    its processes killed and restarted, and raises :class:`RewardFunctionError` naming the function and samples."""

    def __init__(self, fn: RewardFunction, num_workers: int):
        self.fn, self.num_workers = fn, num_workers
        self._start()

    def _start(self) -> None:
        """Start all processes now (they load the reward function while the trainer sets up); a call waits for
        them first, so their start-up never counts against the time-out."""
        self.pool = ProcessPoolExecutor(self.num_workers, mp_context=get_context("spawn"),
                                        initializer=_set_process_reward, initargs=(self.fn, os.getpid()))
        self._started = [self.pool.submit(os.getpid) for _ in range(self.num_workers)]

    def __call__(self, reward_inputs: Sequence[RewardInput]) -> list[RewardScore]:
        for started in self._started:
            started.result()
        size = max(1, math.ceil(len(reward_inputs) / self.num_workers))
        starts = range(0, len(reward_inputs), size)
        futures = [self.pool.submit(_score_in_process, list(reward_inputs[i : i + size]), i) for i in starts]
        timeout = self.fn.timeout_s
        calls = 1 if self.fn.reward_type == "batch" else size
        _, running = wait(futures, timeout=None if timeout is None else timeout * (calls + 1))
        if running:
            stuck = [f"{i}-{min(i + size, len(reward_inputs)) - 1}" for i, f in zip(starts, futures) if f in running]
            self._restart()
            raise RewardFunctionError(
                f"reward function {self.fn.spec} did not return on samples {', '.join(stuck)} within "
                f"{timeout * (calls + 1):g} s ({calls} call(s) at worker.reward.timeout_s={timeout:g} s, plus one): "
                f"it ignores the time-out (stuck in native code, or it catches the interruption); its worker "
                f"processes were restarted")
        return [score for future in futures for score in future.result()]

    def _restart(self) -> None:
        # ProcessPoolExecutor cannot stop a running task (terminate_workers() is Python 3.14+): kill its processes.
        for process in list(self.pool._processes.values()):
            process.kill()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self._start()

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


class RewardSettings(Protocol):
    """The ``worker.reward.*`` keys every stage's reward section has (the RL stage's and Flow-GRPO's)."""

    reward_type: str | None
    reward_function: str
    reward_function_kwargs: dict[str, Any]
    num_workers: int
    timeout_s: float | None


def load_configured_reward(reward: RewardSettings) -> Reward:
    """The function of ``worker.reward.*``, in ``num_workers`` processes when asked (RL and Flow-GRPO alike)."""
    fn = load_reward_function(reward.reward_function, reward.reward_type, reward.reward_function_kwargs,
                              reward.timeout_s)
    if reward.num_workers > 0:
        return ParallelReward(fn, reward.num_workers)
    if reward.timeout_s is not None:
        logger.warning("worker.reward.timeout_s=%g is not applied with worker.reward.num_workers=0: a call in a "
                       "thread of the trainer cannot be interrupted (set num_workers >= 1)", reward.timeout_s)
    return fn


def build_reward(cfg: RootConfig) -> Reward:
    """The trainer's reward: ``worker.reward.*`` (+ processes), as the reward of ``worker.reward.kind``."""
    return build_reward_kind(load_configured_reward(cfg.worker.reward), cfg.worker.reward)


@dataclass
class ScoredBatch:
    inputs: list[dict]
    scores: torch.Tensor  # (N,) sequence rewards
    parts: dict[str, list[float]]  # named score parts
    metrics: dict[str, float]  # timing_s/reward_compute and the judge's counters

    def accuracy(self) -> torch.Tensor:
        """(N,) the ``accuracy`` part (else the score) as a fraction correct in [0, 1], whatever the reward's
        convention (0/1 or Long-RL's -1/+1): what validation reports and what ``filter_key=accuracy`` filters on."""
        return accuracy_fraction(self.parts.get("accuracy", self.scores))

    def filter_values(self) -> dict[str, Any]:
        """The per-sample values ``algorithm.filter_key`` may name: ``overall``, every part, ``accuracy`` in [0, 1]."""
        return {"overall": self.scores, **self.parts, **({"accuracy": self.accuracy()} if "accuracy" in self.parts
                                                          else {})}

    def attach(self, batch: Batch) -> Batch:
        """``batch`` with ``scores`` and a ``score_<part>`` array per part."""
        return batch.union(Batch.from_dict({SCORES: self.scores},
                                           {SCORE_PART_PREFIX + k: np.asarray(v) for k, v in self.parts.items()}))


class RewardScorer:
    """Scores batches now (:meth:`score`) or in a background thread (:meth:`submit`, joined with ``.result()``)."""

    def __init__(self, reward_fn: Reward, cfg: RootConfig, tokenizer: Any):
        self.reward_fn, self.cfg, self.tokenizer = reward_fn, cfg, tokenizer
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="reward")

    def score(self, batch: Batch) -> ScoredBatch:
        start = time.perf_counter()
        inputs = reward_inputs(batch, self.tokenizer)
        scores, parts = score_batch(batch, inputs, self.reward_fn, self.cfg)
        drain = getattr(self.reward_fn, "drain_metrics", None)
        metrics = {"timing_s/reward_compute": time.perf_counter() - start, **(drain() if drain else {})}
        return ScoredBatch(inputs, scores, parts, metrics)

    def submit(self, batch: Batch) -> Future[ScoredBatch]:
        return self._thread.submit(self.score, batch)

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        close = getattr(self.reward_fn, "close", None)
        if close is not None:
            close()
