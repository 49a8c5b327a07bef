"""Prompt rows, batches and references the model-family tests share (MR-SP equivalence, HF rollout).

A test encodes its prompts with a family's adapter; these turn them into what the workers take (dataset samples,
a left-padded prompt batch, prompt + response rows) and give the references the workers are compared with: the plain
forward's response scores and gradients, and greedy decoding by full forwards.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from longrl.data.dataset import collate_left_padded
from longrl.data.video import DecodedVideo
from longrl.models import InputKeys, ModelAdapter
from longrl.protocol import TOKEN_KEYS, VIDEO_EMBEDS, Batch
from longrl.workers.logprob import response_log_probs
from longrl.workers.rollout.hf import HFRollout
from longrl.workers.rollout.sampling import SamplingParams
from longrl.workers.vision_inputs import merge_vision_inputs, placeholder_tokens, position_inputs, without_pixels


def prompt_sample(uid: str, inputs: dict[str, torch.Tensor], question: str = "q", answer: str = "A") -> dict[str, Any]:
    """A dataset sample of one encoded prompt (``adapter.encode``'s batch of one)."""
    return {"uid": uid, "inputs": {k: v[0] if k in TOKEN_KEYS else v for k, v in inputs.items()},
            "question": question, "options": None, "answer": answer, "reasoning": None, "task": "t",
            "video_path": None, "timestamps": None}


def video_prompt_sample(adapter: ModelAdapter, processor: Any, rng: np.random.Generator, uid: str, frames: int,
                        height: int, width: int, question: str, answer: str = "A") -> dict[str, Any]:
    """:func:`prompt_sample` of one random-pixel video of ``frames`` x ``height`` x ``width`` (2 fps) and ``question``."""
    video = DecodedVideo(f"{uid}.mp4", rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
                         np.arange(frames) / 2.0, 2.0, frames)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
    return prompt_sample(uid, adapter.encode(processor, messages, video), question, answer)


def prompt_batch(samples: list[dict], pad: int) -> Batch:
    """The samples' prompts left-padded into a rollout batch (token tensors, uids, vision inputs, answers)."""
    collated = collate_left_padded(samples, pad)
    return Batch.from_dict({key: collated[key] for key in TOKEN_KEYS if key in collated},
                           {key: collated[key] for key in ("uid", "vision_inputs", "answer")})


def two_video_prompts(adapter: ModelAdapter, model_dir: Any) -> tuple[Batch, tuple[int, int], int]:
    """Two random-pixel video prompts of different widths (4 and 6 frames), left-padded into one batch, with the tiny
    tokenizer's stop ids (``<|im_end|>``, pad) and pad id: the decode loop tests' prompts."""
    processor = adapter.load_processor(model_dir)
    rng = np.random.default_rng(5)
    samples = [video_prompt_sample(adapter, processor, rng, uid, frames, 56, width, question)
               for uid, frames, width, question in (("a", 4, 56, "What happens?"),
                                                    ("b", 6, 84, "Which shape comes first?"))]
    pad = processor.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return prompt_batch(samples, pad), (processor.tokenizer.convert_tokens_to_ids("<|im_end|>"), pad), pad


def sampling_params(eos: Sequence[int], pad: int, max_new_tokens: int, **overrides: Any) -> SamplingParams:
    """Greedy, one sample per prompt, seeded; ``overrides`` change any field."""
    fields = dict(n=1, temperature=0.0, top_p=1.0, top_k=-1, max_new_tokens=max_new_tokens, eos_token_ids=tuple(eos),
                  pad_token_id=pad, seed=7)
    return SamplingParams(**{**fields, **overrides})


def response_tokens(out: Batch, row: int) -> list[int]:
    """The real (unpadded) tokens of one rollout row's response."""
    return out.tensors["responses"][row][out.tensors["response_mask"][row].bool()].tolist()


def forward_greedy(model: torch.nn.Module, inputs: dict[str, torch.Tensor], eos: Sequence[int],
                   suppressed: list[int], max_new_tokens: int) -> list[int]:
    """Greedy decoding by full forwards of the growing sequence (the model's own towers, splicing and positions over
    a sample's raw ``inputs``), media tokens excluded as the rollout excludes them."""
    ids = inputs["input_ids"][None]
    vision = {key: value for key, value in inputs.items() if key not in TOKEN_KEYS}
    out: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), **vision).logits[0, -1]
            logits[suppressed] = -torch.inf
            token = int(logits.argmax())
            out.append(token)
            if token in eos:
                break
            ids = torch.cat([ids, torch.tensor([[token]])], 1)
    return out


def scored_case(samples: list[dict], pad: int, response_lengths: Sequence[int], response_width: int,
                rng: np.random.Generator) -> dict[str, Any]:
    """Rows of the samples' left-padded prompts followed by random responses of ``response_lengths`` tokens
    (right-padded to ``response_width``): every token key over prompt + response, the responses and their mask, the
    rows' vision inputs, and random loss weights over the real response tokens."""
    prompts = collate_left_padded(samples, pad)
    rows = len(samples)
    responses = torch.full((rows, response_width), pad)
    response_mask = torch.zeros(rows, response_width, dtype=torch.long)
    for row, length in enumerate(response_lengths):
        responses[row, :length] = torch.from_numpy(rng.integers(10, 900, length))
        response_mask[row, :length] = 1
    tails = {"input_ids": responses, "attention_mask": response_mask}
    case: dict[str, Any] = {key: torch.cat([prompts[key], tails.get(key, torch.zeros_like(responses))], 1)
                            for key in TOKEN_KEYS if key in prompts}
    case.update({"responses": responses, "response_mask": response_mask, "pad_token_id": pad,
                 "vision_rows": list(prompts["vision_inputs"]),
                 "weights": torch.from_numpy(rng.normal(size=(rows, response_width))).float() * response_mask})
    return case


def plain_forward_scores(model: torch.nn.Module, case: dict[str, Any], keys: InputKeys) -> dict[str, Any]:
    """Response log-probs and entropy of ``model``'s plain forward over a :func:`scored_case`'s full rows (its towers
    run on the rows' raw inputs), and every parameter's gradient of the weighted log-prob sum (zeros where none)."""
    tokens = {key: case[key] for key in TOKEN_KEYS if key in case}
    logits = model(**tokens, **merge_vision_inputs(case["vision_rows"], keys)).logits
    prompt_width = case["input_ids"].shape[1] - case["responses"].shape[1]
    logits = logits[:, prompt_width - 1 : -1].float()
    log_probs = torch.log_softmax(logits, -1).gather(-1, case["responses"].unsqueeze(-1)).squeeze(-1)
    entropy = torch.logsumexp(logits, -1) - (torch.softmax(logits, -1) * logits).sum(-1)
    (log_probs * case["weights"]).sum().backward()
    grads = {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}
    return {"log_probs": log_probs.detach(), "entropy": entropy.detach(), "grads": grads}



def check_greedy_rollout(rollout: HFRollout, samples: list[dict], eos: Sequence[int], pad: int, max_new_tokens: int,
                         stage1: Callable[[list[dict]], list[torch.Tensor | None]],
                         blank: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]) -> None:
    """Greedy rollout tokens equal greedy decoding by full forwards of each sample (:func:`forward_greedy`), whether
    the engine runs the towers on the prompts' pixels or splices the features ``stage1(vision rows)`` gives; and
    (negative control) ``blank(inputs)``, a sample with one medium's inputs zeroed, changes some sample's tokens."""
    model = rollout.model
    suppressed = rollout.adapter.media_token_ids(model.config)
    prompts = prompt_batch(samples, pad)
    params = sampling_params(eos, pad, max_new_tokens)
    from_towers = rollout.generate(prompts, params)
    rows = list(prompts.non_tensors["vision_inputs"])
    with_features = prompts.with_non_tensors(**{VIDEO_EMBEDS: stage1(rows),
                                                "vision_inputs": [without_pixels(row, rollout.adapter.input_keys)
                                                                 for row in rows]})
    from_features = rollout.generate(with_features, params)
    changed = []
    for row, sample in enumerate(samples):
        expected = forward_greedy(model, sample["inputs"], eos, suppressed, max_new_tokens)
        assert response_tokens(from_towers, row) == expected
        assert response_tokens(from_features, row) == expected
        changed.append(forward_greedy(model, blank(sample["inputs"]), eos, suppressed, max_new_tokens) != expected)
    assert any(changed)


def check_rollout_log_probs_equal_actor_scores(adapter: ModelAdapter, rollout: HFRollout, samples: list[dict],
                                               eos: Sequence[int], pad: int, max_new_tokens: int,
                                               stage1: Callable[[list[dict]], list[torch.Tensor | None]]) -> None:
    """Sampled rollout log-probs (n = 2, temperature 1) equal the actor's scores of the same rows from stage-1
    features (``stage1``) and from the raw inputs, to float64 roundoff (the rollout must hold a float64 model)."""
    model = rollout.model
    out = rollout.generate(prompt_batch(samples, pad), sampling_params(eos, pad, max_new_tokens, n=2, temperature=1.0))
    rows = list(out.non_tensors["vision_inputs"])
    tokens = {"input_ids": out.tensors["input_ids"], "attention_mask": out.tensors["attention_mask"]}
    features = torch.cat([f for f in stage1(rows) if f is not None])
    kwargs = {**position_inputs(rows, adapter.input_keys), **adapter.encoder_kwargs(
        model, features, placeholder_tokens(tokens["input_ids"], adapter.media_placeholder_ids(model)))}
    with torch.no_grad():
        actor = response_log_probs(model, tokens, kwargs, out.tensors["responses"]).log_probs
        raw = response_log_probs(model, tokens, merge_vision_inputs(rows, adapter.input_keys),
                                 out.tensors["responses"]).log_probs
    mask = out.tensors["response_mask"].bool()
    assert mask.sum() > 2 * len(rows)
    torch.testing.assert_close(out.tensors["rollout_log_probs"][mask], actor[mask], atol=1e-9, rtol=0)
    torch.testing.assert_close(raw[mask], actor[mask], atol=1e-9, rtol=0)
