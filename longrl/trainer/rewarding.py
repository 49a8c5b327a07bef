"""Turn generated responses into per-sample rewards (step 4 of DESIGN.md), off the trainer's critical path.

The reward function sees EasyR1's input dicts (``response``, ``response_length``, ``ground_truth`` plus the row's
``problem``, ``problem_type`` and ``options``) and returns a score dict per sample; ``overall`` becomes the sequence
reward and every other key a metric. DAPO's soft overlong punishment is added to ``overall`` here, so the advantage
estimators see one scalar per sample.

:func:`build_reward` assembles what the trainer calls: the configured function, spread over ``num_workers``
processes when asked, wrapped by the open-ended judge when ``worker.rollout.open_ended_reward``. A
:class:`RewardScorer` runs it in a background thread, so a slow reward (a judge, code execution) overlaps the
workers' log-prob passes instead of stalling them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

import numpy as np
import torch

from longrl.algos import overlong_penalty
from longrl.config.schema import RootConfig
from longrl.protocol import Batch
from longrl.rewards import RewardFunction, RewardInput, RewardScore, load_reward_function
from longrl.rewards.judge import OpenAIJudge
from longrl.rewards.open_ended import OpenEndedReward
from longrl.trainer.metrics import accuracy_fraction


def reward_inputs(batch: Batch, tokenizer) -> list[dict]:
    """One EasyR1 reward input per row: the decoded response and the row's ground truth."""
    responses, mask = batch.tensors["responses"], batch.tensors["response_mask"]
    lengths = mask.sum(-1).tolist()
    texts = tokenizer.batch_decode([row[: int(n)] for row, n in zip(responses.tolist(), lengths)],
                                   skip_special_tokens=True)
    fields = batch.non_tensors
    return [
        {"response": text, "response_length": int(length), "ground_truth": str(fields["answer"][i]),
         "problem": str(fields["question"][i]), "problem_type": fields["task"][i],
         "options": list(fields["options"][i]) if "options" in fields and fields["options"][i] is not None else None}
        for i, (text, length) in enumerate(zip(texts, lengths))
    ]


Reward = Callable[[Sequence[RewardInput]], list[RewardScore]]


def score_batch(batch: Batch, inputs: list[dict], reward_fn: Reward,
                cfg: RootConfig) -> tuple[torch.Tensor, dict]:
    """Sequence rewards (N,) of ``batch`` given its :func:`reward_inputs`, and per-part score lists; raises
    ``RewardFunctionError`` naming the bad sample."""
    scores = reward_fn(inputs)
    overall = torch.tensor([score["overall"] for score in scores], dtype=torch.float32)
    parts = {key: [float(score[key]) for score in scores] for key in scores[0] if key != "overall"} if scores else {}
    algo = cfg.algorithm
    if algo.overlong_buffer_len > 0:
        lengths = batch.tensors["response_mask"].sum(-1)
        penalty = overlong_penalty(lengths, cfg.data.max_response_length, algo.overlong_buffer_len,
                                   algo.overlong_penalty_factor).float()
        overall = overall + penalty
        parts["overlong_penalty"] = penalty.tolist()
    return overall, parts


_PROCESS_REWARD: RewardFunction | None = None  # the reward function of a ParallelReward worker process


def _set_process_reward(fn: RewardFunction) -> None:
    global _PROCESS_REWARD
    _PROCESS_REWARD = fn  # unpickled in this process: the function's file imported here


def _score_in_process(chunk: list[RewardInput]) -> list[RewardScore]:
    assert _PROCESS_REWARD is not None, "reward worker process started without its reward function"
    return _PROCESS_REWARD(chunk)


class ParallelReward:
    """A reward function run by ``num_workers`` spawned processes, each loading it once (module state persists
    across calls, as in one process); a batch is split over them and the scores come back in input order. An error
    names its sample as it would in-process."""

    def __init__(self, fn: RewardFunction, num_workers: int):
        self.num_workers = num_workers
        self.pool = ProcessPoolExecutor(num_workers, mp_context=get_context("spawn"), initializer=_set_process_reward,
                                        initargs=(fn,))

    def __call__(self, reward_inputs: Sequence[RewardInput]) -> list[RewardScore]:
        size = max(1, math.ceil(len(reward_inputs) / self.num_workers))
        chunks = [list(reward_inputs[i : i + size]) for i in range(0, len(reward_inputs), size)]
        return [score for part in self.pool.map(_score_in_process, chunks) for score in part]

    def close(self) -> None:
        self.pool.shutdown(cancel_futures=True)


def build_reward(cfg: RootConfig) -> Reward:
    """The trainer's reward: ``worker.reward.*`` (+ processes) (+ the open-ended judge)."""
    reward = cfg.worker.reward
    fn: Reward = load_reward_function(reward.reward_function, reward.reward_type, reward.reward_function_kwargs)
    if reward.num_workers > 0:
        fn = ParallelReward(fn, reward.num_workers)
    if cfg.worker.rollout.open_ended_reward:
        fn = OpenEndedReward(fn, OpenAIJudge(reward.judge))
    return fn


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
        return batch.union(Batch.from_dict({"scores": self.scores},
                                           {f"score_{k}": np.asarray(v) for k, v in self.parts.items()}))


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
