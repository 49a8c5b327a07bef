"""The HF rollout's decode loop (longrl/workers/rollout/decode.py) on a tiny Qwen2.5-VL: seeded samples are the
documented draws from the full forward's distribution, and neither how often the loop checks for stops, nor running
the step as it is captured (no host step index), nor processors that force the eager step change the rollout."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

from longrl.models import get_adapter
from longrl.workers.rollout import decode, hf
from longrl.workers.rollout.hf import HFRollout
from longrl.workers.vision_inputs import merge_vision_inputs
from prompt_cases import sampling_params, two_video_prompts
from sharp_weights import sharp_weights
from test_draws import _reference_uniform

FAMILY = "qwen2_5_vl"
MAX_NEW = 10


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    model_dir = tiny_model_dir(FAMILY)
    prompts, eos, pad = two_video_prompts(get_adapter(FAMILY), model_dir)
    rollout = HFRollout(model_dir, dtype=torch.float64)
    rollout.load_weights(sharp_weights(rollout.model, seed=0))
    return rollout, prompts, eos, pad


def test_seeded_samples_are_the_inverse_cdf_draws_of_a_full_forward(setup):
    """Each token of each sample is the inverse-CDF draw, with the uniform number the seed rule gives its (seed,
    prompt, sample, column), from the processed distribution a full forward over prompt + response gives."""
    rollout, prompts, eos, pad = setup
    n, temperature, seed = 3, 0.7, 7
    params = sampling_params(eos, pad, MAX_NEW, n=n, temperature=temperature, top_k=20, top_p=0.9, seed=seed)
    out = rollout.generate(prompts, params)
    vision = merge_vision_inputs(list(out.non_tensors["vision_inputs"]), rollout.adapter.input_keys)
    with torch.no_grad():
        logits = rollout.model(input_ids=out.tensors["input_ids"], attention_mask=out.tensors["attention_mask"],
                               mm_token_type_ids=out.tensors["mm_token_type_ids"], **vision).logits
    prompt_width = out.tensors["prompts"].shape[1]
    warpers = hf._sampling_warpers(params)
    suppressed = rollout.adapter.media_token_ids(rollout.model.config)
    lengths = out.tensors["response_mask"].sum(1).tolist()
    assert sum(lengths) > 2 * n * 4
    for row, length in enumerate(lengths):
        for column in range(length):
            scores = logits[row, prompt_width - 1 + column].float()[None].clone()
            scores[:, suppressed] = -float("inf")
            for warper in warpers:
                scores = warper(None, scores)
            cumulative = torch.softmax(scores[0].double(), -1).cumsum(-1)
            u = _reference_uniform(seed, row // n, row % n, column)
            expected = int(torch.searchsorted(cumulative, torch.tensor([u * float(cumulative[-1])],
                                                                       dtype=torch.float64), right=True))
            assert int(out.tensors["responses"][row, column]) == expected, (row, column)


def _stopping_params(rollout, prompts, eos, pad):
    """Sampling whose stop set holds row ``r``'s token at column ``2 + r % 3`` of a free run: every row stops by its
    fifth token, rows at different columns."""
    free = rollout.generate(prompts, sampling_params(eos, pad, MAX_NEW, n=3, temperature=1.0)).tensors["responses"]
    stops = {int(free[row, 2 + row % 3]) for row in range(free.shape[0])}
    return sampling_params((*stops, *eos), pad, MAX_NEW, n=3, temperature=1.0)


def _recording_widths(monkeypatch, widths: list[int], **options) -> None:
    """Route the engine through the decode loop with ``options``, recording the width of each call's tokens."""
    def loop(*args, **kwargs):
        tokens, log_probs = decode.sample_with_shared_prefill(*args, **kwargs, **options)
        widths.append(tokens.shape[1])
        return tokens, log_probs

    monkeypatch.setattr(hf, "sample_with_shared_prefill", loop)


@pytest.mark.parametrize("check_every", [1, 3, 100])
def test_checking_for_stops_less_often_or_stepping_without_a_host_index_changes_nothing(
        setup, monkeypatch, check_every):
    """The loop returns as many columns as the last row to stop needs, however many steps it ran past that."""
    rollout, prompts, eos, pad = setup
    params = _stopping_params(rollout, prompts, eos, pad)
    widths: list[int] = []
    _recording_widths(monkeypatch, widths)
    reference = rollout.generate(prompts, params)
    lengths = reference.tensors["response_mask"].sum(1)
    assert widths == [int(lengths.max())] and widths[0] <= 5 and len(set(lengths.tolist())) > 1
    _recording_widths(monkeypatch, widths, check_every=check_every)
    original = decode._Decoder.step
    monkeypatch.setattr(decode._Decoder, "step", lambda self, column: original(self, None))  # as captured
    out = rollout.generate(prompts, params)
    assert widths[1] == widths[0]
    for key in ("responses", "response_mask", "rollout_log_probs", "input_ids", "attention_mask"):
        assert torch.equal(out.tensors[key], reference.tensors[key]), key


def test_every_row_stopping_at_the_first_token_gives_one_column(setup, monkeypatch):
    rollout, prompts, eos, pad = setup
    first = rollout.generate(prompts, sampling_params(eos, pad, MAX_NEW)).tensors["responses"][:, 0].tolist()
    widths: list[int] = []
    _recording_widths(monkeypatch, widths)
    out = rollout.generate(prompts, sampling_params((*first, *eos), pad, MAX_NEW))
    assert widths == [1] and out.tensors["response_mask"].sum(1).tolist() == [1, 1]
    assert out.tensors["responses"][:, 0].tolist() == first


def test_processors_that_read_the_ids_run_the_eager_step(setup, monkeypatch):
    """A processor outside the capturable set (repetition penalty reads the generated ids) makes the step eager: at
    penalty 1 the rollout is the one without it, at 2 it changes."""
    rollout, prompts, eos, pad = setup
    params = sampling_params(eos, pad, MAX_NEW, n=2, temperature=1.0)
    reference = rollout.generate(prompts, params)
    warpers = hf._sampling_warpers
    steps = []
    original = decode._Decoder.step
    monkeypatch.setattr(decode._Decoder, "step", lambda self, column: steps.append(self.capturable) or original(
        self, column))
    for penalty, same in ((1.0, True), (2.0, False)):
        monkeypatch.setattr(hf, "_sampling_warpers",
                            lambda sampling: [RepetitionPenaltyLogitsProcessor(penalty), *warpers(sampling)])
        out = rollout.generate(prompts, params)
        assert torch.equal(out.tensors["responses"], reference.tensors["responses"]) == same
    assert steps and not any(steps)
