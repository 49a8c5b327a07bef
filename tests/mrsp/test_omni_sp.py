"""Qwen2.5-Omni rows with a video and an audio through MR-SP equal the single-process model, at SP=1 and SP=2.

The reference is the plain Hugging Face forward over the full rows with the raw inputs (pixels, and the audio frames
right-padded in the batch with their mask): the thinker runs its own towers and splices every feature itself. Under
MR-SP, stage 1 encodes each prompt's video slices and audio chunks split over the group (each rank a contiguous run,
all-gathered), and the sharded prefill gives each rank's forward only the features of the placeholders in its block,
with 3-D positions computed on the full sequence; padded and shared-prefix layouts both. Four rows, two prompts
(``a b a b``) whose audio lengths differ (1.0 s and 0.55 s: 100 and 55 log-mel frames, 5 and 3 tower chunks).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.distributed as dist

from longrl.data.dataset import collate_left_padded
from longrl.data.video import DecodedVideo
from longrl.models import get_adapter
from longrl.mrsp import PrefillInputs, build_sp_groups, encode_row_videos, sharded_response_scores, use_mrsp_attention
from longrl.mrsp.audio import append_row_audio, encode_row_audio
from longrl.workers.vision_inputs import merge_vision_inputs, position_inputs

from mrsp.ranks import max_masked_diff
from mrsp.spawn import run_on_ranks

pytestmark = pytest.mark.slow
FAMILY = "qwen2_5_omni"
UIDS = ("a", "b", "a", "b")
AUDIO_SECONDS = {"a": 1.0, "b": 0.55}
RESPONSE_LENGTHS = (4, 2, 3, 4)
RESPONSE_WIDTH = 4


def _case(model_dir: Path, tmp_path: Path) -> tuple[dict, str]:
    adapter = get_adapter(FAMILY)
    processor = adapter.load_processor(model_dir)
    rng = np.random.default_rng(3)
    samples = {}
    for uid, frames in zip(AUDIO_SECONDS, (4, 6)):
        video = DecodedVideo(f"{uid}.mp4", rng.integers(0, 256, (frames, 56, 56, 3), dtype=np.uint8),
                             np.arange(frames) / 2.0, 2.0, frames)
        audio = (0.1 * rng.standard_normal(round(AUDIO_SECONDS[uid] * 16_000))).astype(np.float32)
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "audio"},
                                                 {"type": "text", "text": "What do you hear and see?"}]}]
        inputs = adapter.encode(processor, messages, video, audio=audio)
        samples[uid] = {"uid": uid, "inputs": {k: v[0] if k in ("input_ids", "attention_mask") else v
                                               for k, v in inputs.items()},
                        "question": "q", "options": None, "answer": "A", "reasoning": None, "task": "t",
                        "video_path": None, "timestamps": None}
    pad = processor.tokenizer.pad_token_id
    prompts = collate_left_padded([samples[uid] for uid in UIDS], pad)
    responses = torch.full((len(UIDS), RESPONSE_WIDTH), pad)
    response_mask = torch.zeros(len(UIDS), RESPONSE_WIDTH, dtype=torch.long)
    for row, length in enumerate(RESPONSE_LENGTHS):
        responses[row, :length] = torch.from_numpy(rng.integers(10, 900, length))
        response_mask[row, :length] = 1
    case = {"input_ids": torch.cat([prompts["input_ids"], responses], 1),
            "attention_mask": torch.cat([prompts["attention_mask"], response_mask], 1),
            "responses": responses, "response_mask": response_mask, "pad_token_id": pad,
            "vision_rows": list(prompts["vision_inputs"]),
            "weights": torch.from_numpy(rng.normal(size=(len(UIDS), RESPONSE_WIDTH))).float() * response_mask}
    path = tmp_path / "omni.pt"
    torch.save(case, path)
    return case, str(path)


def _reference(model_dir: Path, case: dict) -> dict:
    """The plain forward's log-probs and gradients, and each prompt's features (video's, then audio's) from the
    model's own towers."""
    model = get_adapter(FAMILY).load_model(model_dir).eval()
    rows = case["vision_rows"]
    with torch.no_grad():
        features = [torch.cat([*model.get_video_features(row["pixel_values_videos"], row["video_grid_thw"],
                                                         return_dict=True).pooler_output,
                               model.get_audio_features(row["input_features"], row["feature_attention_mask"],
                                                        return_dict=True).last_hidden_state])
                    for row in rows[:2]]
    tokens = {key: case[key] for key in ("input_ids", "attention_mask")}
    logits = model(**tokens, **merge_vision_inputs(rows, get_adapter(FAMILY).input_keys)).logits
    prompt_width = case["input_ids"].shape[1] - RESPONSE_WIDTH
    logits = logits[:, prompt_width - 1 : -1].float()
    log_probs = torch.log_softmax(logits, -1).gather(-1, case["responses"].unsqueeze(-1)).squeeze(-1)
    (log_probs * case["weights"]).sum().backward()
    return {"log_probs": log_probs.detach(), "features": features,
            "grads": {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}}


def score_omni(model_dir: str, case_path: str) -> dict[str, Any]:
    """On each rank of one SP group: stage 1 (with gradients) once per prompt, then each layout's log-probs and the
    gradients of its weighted sum; and the audio frames this rank's tower encoded."""
    case = torch.load(case_path, weights_only=False)
    adapter = get_adapter(FAMILY)
    model = adapter.load_model(Path(model_dir)).eval()
    use_mrsp_attention(model)
    groups = build_sp_groups(dist.get_world_size())
    frames: list[int] = []
    model.model.audio_tower.register_forward_pre_hook(
        lambda _module, _args, kwargs: frames.append(int(kwargs["feature_lens"].sum())), with_kwargs=True)
    rows = case["vision_rows"]
    tokens = {key: case[key] for key in ("input_ids", "attention_mask")}
    positions = adapter.position_ids(model, tokens, position_inputs(rows, adapter.input_keys))
    cpu = torch.device("cpu")
    results: dict[str, Any] = {}
    for mode in ("padded", "shared"):
        model.zero_grad(set_to_none=True)
        frames.clear()
        distinct = rows[:2]  # the prompts of uids a and b
        per_prompt = append_row_audio(encode_row_videos(adapter.video_encoder(model), distinct, groups, cpu),
                                      encode_row_audio(adapter.audio_encoder(model), distinct, groups, cpu))
        features = torch.cat([per_prompt[0 if uid == "a" else 1] for uid in UIDS])
        inputs = PrefillInputs(case["input_ids"], case["attention_mask"], positions, case["responses"], features,
                               adapter.media_placeholder_ids(model), case["pad_token_id"], list(UIDS))
        log_probs, _ = sharded_response_scores(model, inputs, groups, adapter.encoder_kwargs,
                                               shared_prefix=mode == "shared")
        (log_probs * case["weights"]).sum().backward()
        grads = {}
        for name, param in model.named_parameters():
            grad = param.grad.clone() if param.grad is not None else torch.zeros_like(param)
            dist.all_reduce(grad)
            grads[name] = grad / dist.get_world_size()
        results[mode] = {"log_probs": log_probs.detach(), "grads": grads, "audio_frames": list(frames),
                         "features": [f.detach() for f in per_prompt]}
    return results


@pytest.fixture(scope="module")
def omni_case(tiny_model_dir, tmp_path_factory):
    model_dir = tiny_model_dir(FAMILY)
    case, path = _case(model_dir, tmp_path_factory.mktemp("omni_sp"))
    return model_dir, case, path, _reference(model_dir, case)


@pytest.mark.parametrize("sp", [1, 2])
def test_video_and_audio_rows_through_mrsp_equal_the_plain_forward(omni_case, sp):
    model_dir, case, path, reference = omni_case
    audio_frames = [int(row["feature_attention_mask"].sum()) for row in case["vision_rows"][:2]]
    assert audio_frames == [100, 55]
    results = run_on_ranks(sp, score_omni, str(model_dir), path)
    for mode in ("padded", "shared"):
        for rank in results[1:]:
            assert torch.equal(rank[mode]["log_probs"], results[0][mode]["log_probs"]), "SP ranks disagree"
        for got, expected in zip(results[0][mode]["features"], reference["features"]):
            assert (got - expected).abs().max() < 1e-6
        lp = max_masked_diff(results[0][mode]["log_probs"], reference["log_probs"], case["response_mask"])
        worst = max((results[0][mode]["grads"][n] - g).abs().max().item() / (g.abs().max().item() + 1e-8)
                    for n, g in reference["grads"].items())
        print(f"omni sp={sp} {mode}: max|dlogp|={lp:.2e}, max relative gradient difference {worst:.2e}")
        assert lp < 1e-5 and worst < 1e-4
        audio_grads = [n for n, g in reference["grads"].items() if "audio_tower" in n and g.abs().sum() > 0]
        assert audio_grads  # the audio tower is trained through the gathered features
        # Every audio frame encoded once over the group; at SP=2 both ranks took a share.
        shares = [sum(rank[mode]["audio_frames"]) for rank in results]
        assert sum(shares) == sum(audio_frames)
        assert all(share > 0 for share in shares)
