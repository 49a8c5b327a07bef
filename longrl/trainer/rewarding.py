"""Turn generated responses into per-sample rewards (step 4 of DESIGN.md) on the driver.

The reward function sees EasyR1's input dicts (``response``, ``response_length``, ``ground_truth`` plus the row's
``problem`` and ``problem_type``) and returns a score dict per sample; ``overall`` becomes the sequence reward and
every other key a metric. DAPO's soft overlong punishment is added to ``overall`` here, so the advantage estimators
see one scalar per sample.
"""

from __future__ import annotations

import torch

from longrl.algos import overlong_penalty
from longrl.config.schema import RootConfig
from longrl.protocol import Batch
from longrl.rewards import RewardFunction


def reward_inputs(batch: Batch, tokenizer) -> list[dict]:
    """One EasyR1 reward input per row: the decoded response and the row's ground truth."""
    responses, mask = batch.tensors["responses"], batch.tensors["response_mask"]
    lengths = mask.sum(-1).tolist()
    texts = tokenizer.batch_decode([row[: int(n)] for row, n in zip(responses.tolist(), lengths)],
                                   skip_special_tokens=True)
    fields = batch.non_tensors
    return [
        {"response": text, "response_length": int(length), "ground_truth": str(fields["answer"][i]),
         "problem": str(fields["question"][i]), "problem_type": fields["task"][i]}
        for i, (text, length) in enumerate(zip(texts, lengths))
    ]


def score_batch(batch: Batch, inputs: list[dict], reward_fn: RewardFunction,
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
