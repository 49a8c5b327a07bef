"""HF rollout from prompt embeddings on a tiny Qwen2.5-VL: exact tokens, layout, log-probs, weight sync.

Every test first loads sharper random weights (``tests/sharp_weights.py``) through ``load_weights``; the negative
controls below show that with them the tokens do depend on the video and on the 3-D mrope positions.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrl.data.dataset import collate_left_padded
from longrl.models import get_adapter
from longrl.mrsp import build_sp_groups, encode_row_videos
from longrl.protocol import TOKEN_KEYS, VIDEO_EMBEDS, Batch
from longrl.workers.rollout.hf import HFRollout
from longrl.workers.rollout.output import response_mask_from_eos
from longrl.workers.rollout.sampling import SamplingParams
from longrl.workers.vision_inputs import merge_vision_inputs, without_pixels
from prompt_cases import prompt_batch, response_tokens, sampling_params, video_prompt_sample
from sharp_weights import sharp_weights

FAMILY = "qwen2_5_vl"
MAX_NEW = 10


@pytest.fixture(scope="module")
def setup(tiny_model_dir):
    model_dir = tiny_model_dir(FAMILY)
    adapter = get_adapter(FAMILY)
    processor = adapter.load_processor(model_dir)
    rng = np.random.default_rng(0)
    samples = [video_prompt_sample(adapter, processor, rng, "a", 4, 56, 56, "What happens in the video?", "A"),
               video_prompt_sample(adapter, processor, rng, "b", 6, 56, 84,
                                   "Which object appears first, and where is it placed? Answer with the letter.", "B")]
    tokenizer = processor.tokenizer
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    eos = (tokenizer.convert_tokens_to_ids("<|im_end|>"), pad)
    rollout = HFRollout(model_dir)
    rollout.load_weights(sharp_weights(rollout.model, seed=0))
    return rollout, samples, eos, pad


def _plain_generate(model, sample: dict, eos, pad, drop: tuple[str, ...] = ()) -> list[int]:
    """Stock HF generate from token ids + pixels (the model runs its own vision tower and positions)."""
    inputs = {key: value.unsqueeze(0) if key in TOKEN_KEYS else value for key, value in sample["inputs"].items()
              if key not in drop}
    ids = model.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=list(eos), pad_token_id=pad)
    return ids[0, inputs["input_ids"].shape[1]:].tolist()


def test_greedy_from_embeddings_equals_plain_generate_batched_and_alone(setup):
    rollout, samples, eos, pad = setup
    batched = rollout.generate(prompt_batch(samples, pad), sampling_params(eos, pad, MAX_NEW))
    for row, sample in enumerate(samples):
        expected = _plain_generate(rollout.model, sample, eos, pad)
        assert response_tokens(batched, row) == expected
        alone = rollout.generate(prompt_batch([sample], pad), sampling_params(eos, pad, MAX_NEW))
        assert response_tokens(alone, 0) == expected
        # Negative controls: the tokens depend on the video content and on the 3-D positions.
        assert _plain_generate(rollout.model, sample, eos, pad, drop=("mm_token_type_ids",)) != expected
        pixels = sample["inputs"]["pixel_values_videos"]
        zeroed = {**sample, "inputs": {**sample["inputs"], "pixel_values_videos": torch.zeros_like(pixels)}}
        assert _plain_generate(rollout.model, zeroed, eos, pad) != expected


def test_stop_at_eos_masks_and_padding(setup):
    rollout, samples, eos, pad = setup
    free = rollout.generate(prompt_batch(samples, pad), sampling_params(eos, pad, MAX_NEW))
    assert free.tensors["responses"].shape == (2, MAX_NEW)  # no stop token generated: runs to max_new_tokens
    # Make row 0's 4th token a stop token: each row must end at its first occurrence (EOS included).
    stop = int(free.tensors["responses"][0, 3])
    out = rollout.generate(prompt_batch(samples, pad), sampling_params((stop, *eos), pad, MAX_NEW))
    width = out.tensors["responses"].shape[1]
    prompt_width = out.tensors["prompts"].shape[1]
    free_tokens = free.tensors["responses"].tolist()
    lengths = [tokens.index(stop) + 1 if stop in tokens else MAX_NEW for tokens in free_tokens]
    assert lengths[0] <= 4 and width == max(lengths)
    for row, (tokens, length) in enumerate(zip(free_tokens, lengths)):
        assert out.tensors["response_mask"][row].tolist() == [1] * length + [0] * (width - length)
        assert out.tensors["responses"][row].tolist() == tokens[:length] + [pad] * (width - length)
        assert torch.all(out.tensors["rollout_log_probs"][row, length:] == 0)
    prompts = prompt_batch(samples, pad)
    assert torch.equal(out.tensors["prompts"], prompts.tensors["input_ids"])
    assert torch.equal(out.tensors["input_ids"], torch.cat([prompts.tensors["input_ids"], out.tensors["responses"]], 1))
    assert torch.equal(out.tensors["attention_mask"],
                       torch.cat([prompts.tensors["attention_mask"], out.tensors["response_mask"]], 1))
    assert torch.equal(out.tensors["mm_token_type_ids"][:, :prompt_width], prompts.tensors["mm_token_type_ids"])
    assert torch.all(out.tensors["mm_token_type_ids"][:, prompt_width:] == 0)


def test_response_mask_from_eos_counts_eos_and_stops_after_it():
    tokens = torch.tensor([[5, 9, 2, 2], [9, 2, 7, 9], [5, 5, 5, 5]])
    assert response_mask_from_eos(tokens, (2, 9)).tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]


@pytest.mark.parametrize("temperature, top_k, top_p", [(1.0, -1, 1.0), (0.7, 20, 0.9)])
def test_n_samples_interleaved_with_exact_log_probs_and_one_vision_pass(
    setup, tiny_model_dir, temperature, top_k, top_p
):
    _, samples, eos, pad = setup
    # float64, so the cached decode and the full forward agree to roundoff far below the tolerance (in
    # float32 they differ by up to ~1.5e-5 at these logit scales, from summation order alone).
    rollout = HFRollout(tiny_model_dir(FAMILY), dtype=torch.float64)
    rollout.load_weights(sharp_weights(rollout.model, seed=0))
    n = 4
    params = sampling_params(eos, pad, MAX_NEW, n=n, temperature=temperature, top_k=top_k, top_p=top_p)
    prompts = prompt_batch(samples, pad)
    calls = []
    hook = rollout.model.model.visual.register_forward_hook(lambda _m, args, _out: calls.append(args[0].shape[0]))
    try:
        out = rollout.generate(prompts, params)
    finally:
        hook.remove()
    # One vision pass for the batch, over each prompt's patches once (not n times).
    patches = [s["inputs"]["pixel_values_videos"].shape[0] for s in samples]
    assert calls == [sum(patches)]
    assert len(out) == 2 * n
    assert out.non_tensors["uid"].tolist() == ["a"] * n + ["b"] * n
    assert out.non_tensors["answer"].tolist() == ["A"] * n + ["B"] * n
    assert out.non_tensors["vision_inputs"][n] is prompts.non_tensors["vision_inputs"][1]  # shared, not copied
    for row in range(2):
        samples_of_row = out.tensors["prompts"][row * n:(row + 1) * n]
        assert torch.equal(samples_of_row, prompts.tensors["input_ids"][row].expand(n, -1))
        assert len({tuple(response_tokens(out, row * n + k)) for k in range(n)}) >= 2
    # Independent recomputation of log_softmax(logits / T) (top-k/top-p must not enter): one full forward
    # over prompt + response with the raw pixels.
    vision = merge_vision_inputs(list(out.non_tensors["vision_inputs"]), rollout.adapter.input_keys)
    with torch.no_grad():
        logits = rollout.model(input_ids=out.tensors["input_ids"], attention_mask=out.tensors["attention_mask"],
                               mm_token_type_ids=out.tensors["mm_token_type_ids"], **vision).logits
    prompt_width, width = out.tensors["prompts"].shape[1], out.tensors["responses"].shape[1]
    step_logits = logits[:, prompt_width - 1:prompt_width - 1 + width].float() / temperature
    expected = torch.log_softmax(step_logits, -1).gather(-1, out.tensors["responses"].unsqueeze(-1)).squeeze(-1)
    mask = out.tensors["response_mask"].bool()
    got = out.tensors["rollout_log_probs"]
    assert torch.isfinite(got).all() and torch.all(got[~mask] == 0)
    torch.testing.assert_close(got[mask], expected[mask], atol=1e-9, rtol=0)
    # Same seed, same samples.
    again = rollout.generate(prompts, params)
    assert torch.equal(again.tensors["responses"], out.tensors["responses"])


def test_load_weights_changes_output_and_is_strict(setup, tiny_model_dir):
    rollout, samples, eos, pad = setup
    original = {name: value.clone() for name, value in rollout.model.state_dict().items()}
    before = rollout.generate(prompt_batch(samples, pad), sampling_params(eos, pad, MAX_NEW)).tensors["responses"]
    try:
        rollout.load_weights(sharp_weights(rollout.model, seed=1))
        after = rollout.generate(prompt_batch(samples, pad), sampling_params(eos, pad, MAX_NEW)).tensors["responses"]
        assert not torch.equal(before, after)
        assert after[0].tolist() == _plain_generate(rollout.model, samples[0], eos, pad)
    finally:
        rollout.load_weights(original)
    bad = dict(original)
    bad["model.not_a_layer.weight"] = bad.pop("model.language_model.norm.weight")
    with pytest.raises(KeyError, match=r"unknown name\(s\) \['model.not_a_layer.weight'\].*missing name\(s\) "
                                       r"\['model.language_model.norm.weight'\]"):
        rollout.load_weights(bad)
    wrong_shape = {**original, "model.language_model.norm.weight": torch.ones(3)}
    with pytest.raises(ValueError, match="model.language_model.norm.weight: got \\(3,\\)"):
        rollout.load_weights(wrong_shape)
    again = rollout.generate(prompt_batch(samples, pad), sampling_params(eos, pad, MAX_NEW))
    assert torch.equal(again.tensors["responses"], before)


def test_right_padded_prompts_are_rejected(setup):
    rollout, samples, eos, pad = setup
    prompts = prompt_batch(samples, pad)
    flipped = Batch.from_dict({key: prompts.tensors[key].flip(-1) for key in TOKEN_KEYS},
                              dict(prompts.non_tensors))
    with pytest.raises(ValueError, match=r"left-padded.*rows \[0\]"):
        rollout.generate(flipped, sampling_params(eos, pad, MAX_NEW))


def test_merge_vision_inputs_concatenates_rows_in_order_and_checks_keys():
    a = {"pixel_values_videos": torch.ones(4, 3), "video_grid_thw": torch.tensor([[1, 2, 2]])}
    b = {"pixel_values_videos": torch.zeros(8, 3), "video_grid_thw": torch.tensor([[2, 2, 2]])}
    keys = get_adapter(FAMILY).input_keys
    merged = merge_vision_inputs([a, {}, b], keys)
    assert merged["pixel_values_videos"].tolist() == [[1.0] * 3] * 4 + [[0.0] * 3] * 8
    assert merged["video_grid_thw"].tolist() == [[1, 2, 2], [2, 2, 2]]
    assert merge_vision_inputs([{}, {}], keys) == {}
    image_row = {"pixel_values": torch.full((2, 3), 5.0), "image_grid_thw": torch.tensor([[1, 1, 2]])}
    mixed = merge_vision_inputs([a, image_row, b], keys)  # an image-only row beside video rows lacks only video keys
    assert mixed["image_grid_thw"].tolist() == [[1, 1, 2]] and mixed["pixel_values"].tolist() == [[5.0] * 3] * 2
    assert mixed["video_grid_thw"].tolist() == [[1, 2, 2], [2, 2, 2]]
    with pytest.raises(KeyError, match=r"row 2 have video keys .* but row 0 .*misses \[.video_grid_thw.\]"):
        merge_vision_inputs([a, {}, {"pixel_values_videos": torch.zeros(1, 3)}], keys)


def test_sampling_params_from_config_and_validation_override():
    from longrl.config.schema import RolloutConfig

    config = RolloutConfig(n=8, temperature=0.9, top_p=0.95, top_k=40, seed=3)
    train = SamplingParams.from_config(config, max_new_tokens=64, eos_token_ids=[5, 6], pad_token_id=6)
    assert (train.n, train.temperature, train.top_p, train.top_k, train.seed) == (8, 0.9, 0.95, 40, 3)
    assert train.eos_token_ids == (5, 6) and not train.greedy
    val = SamplingParams.from_config(config, max_new_tokens=64, eos_token_ids=[5], pad_token_id=6, validation=True)
    assert (val.n, val.temperature, val.greedy, val.top_k) == (1, 0.0, True, 40)
    with pytest.raises(KeyError, match=r"unknown key\(s\) \['beams'\]"):
        train.with_overrides({"beams": 2})
    with pytest.raises(ValueError, match="top_k must be -1"):
        SamplingParams(n=1, temperature=1.0, top_p=1.0, top_k=0, max_new_tokens=4, eos_token_ids=(1,), pad_token_id=0)


def test_media_placeholder_tokens_are_never_generated(tiny_model_dir):
    """Even a model that prefers the video placeholder above all else samples something else (Qwen2-VL: its
    head is untied, so only the head changes)."""
    model_dir = tiny_model_dir("qwen2_vl")
    engine = HFRollout(model_dir)
    video_token = engine.model.config.video_token_id
    state = {k: v.clone() for k, v in engine.model.state_dict().items()}
    state["lm_head.weight"] = torch.zeros_like(state["lm_head.weight"])
    state["lm_head.weight"][video_token] = 50.0  # the head now votes for <|video_pad|> from every hidden state
    engine.load_weights(state)
    adapter = get_adapter("qwen2_vl")
    processor = adapter.load_processor(model_dir)
    tokens = adapter.encode(processor, [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], None)
    prompts = Batch.from_dict({"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]},
                              {"uid": ["p"], "vision_inputs": [{}]})
    sampling = SamplingParams(n=2, temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=5,
                              eos_token_ids=(processor.tokenizer.eos_token_id,),
                              pad_token_id=processor.tokenizer.pad_token_id, seed=3)
    out = engine.generate(prompts, sampling)
    assert not (out.tensors["responses"] == video_token).any()
    assert out.tensors["response_mask"].sum() > 0


def test_samples_split_over_calls_equal_one_call_and_prompt_is_prefilled_once(setup):
    """Samples k.. of a prompt drawn in their own call (a sequence-parallel rank's share) equal those samples of a
    call for all of them, and each prompt is run through the model once per call, however many samples it has."""
    rollout, samples, eos, pad = setup
    prompts = prompt_batch(samples, pad)
    widths = []
    hook = rollout.model.register_forward_pre_hook(
        lambda _m, _args, kwargs: widths.append(tuple((kwargs.get("inputs_embeds") if kwargs.get("inputs_embeds")
                                                       is not None else kwargs["input_ids"]).shape[:2])),
        with_kwargs=True)
    try:
        whole = rollout.generate(prompts, sampling_params(eos, pad, MAX_NEW, n=4, temperature=1.0))
    finally:
        hook.remove()
    prompt_width = prompts.tensors["input_ids"].shape[1]
    assert widths[0] == (2, prompt_width) and all(shape == (8, 1) for shape in widths[1:])
    first, second = (rollout.generate(prompts, sampling_params(eos, pad, MAX_NEW, n=2, temperature=1.0,
                                                               first_sample=first))
                     for first in (0, 2))
    for prompt in range(2):
        for k in range(4):
            part, row = (first, prompt * 2 + k) if k < 2 else (second, prompt * 2 + k - 2)
            assert response_tokens(part, row) == response_tokens(whole, prompt * 4 + k)
            # float32: a call of 2 samples folds fewer query rows into each attention call than one of 4, so the
            # sums run in another order (measured up to 2.3e-5 on log-probs of magnitude ~3).
            torch.testing.assert_close(part.tensors["rollout_log_probs"][row],
                                       whole.tensors["rollout_log_probs"][prompt * 4 + k], atol=1e-4, rtol=0)
    assert len({tuple(response_tokens(whole, k)) for k in range(4)}) >= 2


@pytest.mark.parametrize("family", ["qwen2", "qwen3"])
def test_text_families_greedy_equals_generate_and_log_probs_equal_a_full_forward(tiny_model_dir, family):
    """Text-only rows (1-D positions, left-padded to one width) through the per-prompt cache: Qwen2, and Qwen3 with its
    per-head query/key norms."""
    model_dir = tiny_model_dir(family)
    adapter = get_adapter(family)
    tokenizer = adapter.load_processor(model_dir)
    rows = []
    for uid, question in (("a", "Two plus two?"), ("b", "Name three colours that flash, then count them.")):
        inputs = adapter.encode(tokenizer, [{"role": "user", "content": question}], None)
        rows.append({"uid": uid, "inputs": {k: v[0] for k, v in inputs.items()}, "question": question,
                     "options": None, "answer": "A", "reasoning": None, "task": "t", "video_path": None,
                     "timestamps": None})
    pad, eos = tokenizer.pad_token_id, (tokenizer.eos_token_id, tokenizer.pad_token_id)
    collated = collate_left_padded(rows, pad)
    prompts = Batch.from_dict({k: collated[k] for k in ("input_ids", "attention_mask")},
                              {"uid": collated["uid"], "vision_inputs": collated["vision_inputs"]})
    rollout = HFRollout(model_dir, dtype=torch.float64)
    rollout.load_weights(sharp_weights(rollout.model, seed=0))
    greedy = rollout.generate(prompts, sampling_params(eos, pad, MAX_NEW))
    for row, sample in enumerate(rows):
        ids = sample["inputs"]["input_ids"].unsqueeze(0)
        expected = rollout.model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=MAX_NEW,
                                          do_sample=False, eos_token_id=list(eos), pad_token_id=pad)
        assert response_tokens(greedy, row) == expected[0, ids.shape[1]:].tolist()
    out = rollout.generate(prompts, sampling_params(eos, pad, MAX_NEW, n=3, temperature=1.0))
    with torch.no_grad():
        logits = rollout.model(input_ids=out.tensors["input_ids"], attention_mask=out.tensors["attention_mask"]).logits
    prompt_width, width = out.tensors["prompts"].shape[1], out.tensors["responses"].shape[1]
    expected = torch.log_softmax(logits[:, prompt_width - 1:prompt_width - 1 + width].float(), -1).gather(
        -1, out.tensors["responses"].unsqueeze(-1)).squeeze(-1)
    mask = out.tensors["response_mask"].bool()
    torch.testing.assert_close(out.tensors["rollout_log_probs"][mask], expected[mask], atol=1e-9, rtol=0)


def test_qwen3_vl_greedy_from_its_towers_or_its_deepstack_rows_equals_stock_generate(tiny_model_dir):
    """Qwen3-VL's timestamped video prompts: the engine prefills through the family's encoder_kwargs (merged features
    and deepstack levels), run from the prompts' pixels or from precomputed rows, and decodes what the model's own
    ``generate`` does over the raw inputs. Dropping the deepstack levels changes the rollout's log-probs."""
    family = "qwen3_vl"
    model_dir = tiny_model_dir(family)
    adapter = get_adapter(family)
    processor = adapter.load_processor(model_dir)
    side = adapter.video_size_factor
    rng = np.random.default_rng(0)
    samples = [video_prompt_sample(adapter, processor, rng, "a", 4, 2 * side, 2 * side, "What happens in the video?"),
               video_prompt_sample(adapter, processor, rng, "b", 6, 2 * side, 3 * side,
                                   "Which object appears first, and where is it placed? Answer with the letter.")]
    tokenizer = processor.tokenizer
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    eos = (tokenizer.convert_tokens_to_ids("<|im_end|>"), pad)
    rollout = HFRollout(model_dir)
    rollout.load_weights(sharp_weights(rollout.model, seed=0))
    prompts = prompt_batch(samples, pad)
    rows = list(prompts.non_tensors["vision_inputs"])
    with torch.no_grad():
        features = encode_row_videos(adapter.video_encoder(rollout.model), rows, build_sp_groups(1),
                                     torch.device("cpu"))
    from_features = prompts.with_non_tensors(**{VIDEO_EMBEDS: features,
                                                "vision_inputs": [without_pixels(r, adapter.input_keys) for r in rows]})
    expected = [_plain_generate(rollout.model, sample, eos, pad) for sample in samples]
    for batch in (prompts, from_features):
        out = rollout.generate(batch, sampling_params(eos, pad, MAX_NEW))
        assert [response_tokens(out, row) for row in range(len(samples))] == expected
    hidden = rollout.model.config.text_config.hidden_size
    flat = [torch.cat([f[:, :hidden], torch.zeros_like(f[:, hidden:])], dim=-1) for f in features]
    without = rollout.generate(from_features.with_non_tensors(**{VIDEO_EMBEDS: flat}),
                               sampling_params(eos, pad, MAX_NEW))
    assert (without.tensors["rollout_log_probs"] - out.tensors["rollout_log_probs"]).abs().max() > 1e-4
