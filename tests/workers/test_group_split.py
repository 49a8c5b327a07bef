"""A prompt's samples split over a 2-rank sequence-parallel group (gloo): each rank draws half, the gathered batch
equals one rank drawing all of them (tokens, masks, log-probs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from longrl.data.dataset import collate_left_padded
from longrl.data.video import DecodedVideo
from longrl.models import get_adapter
from longrl.mrsp import build_sp_groups
from longrl.protocol import TOKEN_KEYS, Batch
from longrl.workers.rollout.group_split import generate_over_group
from longrl.workers.rollout.hf import HFRollout
from longrl.workers.rollout.sampling import SamplingParams
from mrsp.spawn import run_on_ranks
from sharp_weights import sharp_weights

FAMILY = "qwen2_5_vl"
KEYS = ("responses", "response_mask", "rollout_log_probs", "input_ids", "attention_mask")


def _prompts(model_dir: Path) -> Batch:
    adapter = get_adapter(FAMILY)
    processor = adapter.load_processor(model_dir)
    rng = np.random.default_rng(3)
    samples = []
    for uid, frames, question in (("a", 4, "What happens?"), ("b", 6, "Which colour flashes most often, and when?")):
        video = DecodedVideo(f"{uid}.mp4", rng.integers(0, 256, (frames, 56, 56, 3), dtype=np.uint8),
                             np.arange(frames) / 2.0, 2.0, frames)
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        inputs = {k: v[0] if k in TOKEN_KEYS else v for k, v in adapter.encode(processor, messages, video).items()}
        samples.append({"uid": uid, "inputs": inputs, "question": question, "options": None, "answer": "A",
                        "reasoning": None, "task": "t", "video_path": None, "timestamps": None})
    collated = collate_left_padded(samples, processor.tokenizer.pad_token_id)
    return Batch.from_dict({k: collated[k] for k in TOKEN_KEYS}, {k: collated[k] for k in ("uid", "vision_inputs")})


def _engine(model_dir: Path) -> HFRollout:
    rollout = HFRollout(model_dir)
    rollout.load_weights(sharp_weights(rollout.model, seed=0))
    return rollout


def _sampling(pad: int) -> SamplingParams:
    return SamplingParams(n=4, temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=8, eos_token_ids=(pad,),
                          pad_token_id=pad, seed=11)


def split_rank(model_dir: str) -> dict:
    rollout = _engine(Path(model_dir))
    calls = []
    generate = rollout.generate
    rollout.generate = lambda prompts, sampling: calls.append((sampling.n, sampling.first_sample)) or generate(
        prompts, sampling)
    prompts = _prompts(Path(model_dir))
    out = generate_over_group(rollout, prompts, _sampling(rollout.model.config.text_config.pad_token_id),
                              build_sp_groups(2), torch.device("cpu"))
    return {"calls": calls, **{key: out.tensors[key] for key in KEYS}, "uid": out.non_tensors["uid"].tolist()}


def test_split_over_two_ranks_equals_one_rank_drawing_all(tiny_model_dir):
    model_dir = tiny_model_dir(FAMILY)
    rollout = _engine(model_dir)
    prompts = _prompts(model_dir)
    whole = rollout.generate(prompts, _sampling(rollout.model.config.text_config.pad_token_id))
    ranks = run_on_ranks(2, split_rank, str(model_dir))
    assert [rank["calls"] for rank in ranks] == [[(2, 0)], [(2, 2)]]
    assert len({tuple(row) for row in whole.tensors["responses"][:4].tolist()}) >= 2  # the samples differ
    for rank in ranks:
        assert rank["uid"] == whole.non_tensors["uid"].tolist() == ["a"] * 4 + ["b"] * 4
        for key in KEYS:
            # float32 log-probs: 2-sample calls sum their attention in another order than one 4-sample call.
            torch.testing.assert_close(rank[key], whole.tensors[key], atol=1e-4, rtol=0, msg=key)
