"""Images through MR-SP: a multi-image row and an image + video row score like the single-process model.

The reference is the plain Hugging Face forward with pixel values (the model's own image and video paths, full
sequence, one process). MR-SP encodes every image as one temporal slice beside the video's slices, spread over two
gloo ranks, and the sharded prefill splices the gathered features at the image and video placeholders of each rank's
block. Row 0 holds two images of different sizes; row 1 an image, then a 5-frame video (3 temporal slices).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrl.data.dataset import collate_left_padded
from longrl.data.video import DecodedVideo
from longrl.models import get_adapter
from longrl.protocol import TOKEN_KEYS
from longrl.workers.logprob import response_log_probs
from longrl.workers.vision_inputs import merge_vision_inputs, placeholder_tokens, position_inputs

from mrsp.ranks import max_masked_diff, score_with_sp
from mrsp.spawn import run_on_ranks

pytestmark = pytest.mark.slow
RESPONSE_LENGTHS = (4, 2)
RESPONSE_WIDTH = 4
IMAGE_SIZES = (((56, 84), (28, 56)), ((56, 56),))  # per row
VIDEO_FRAMES = (None, 5)


def _case(family: str, model_dir, tmp_path) -> tuple[dict, str]:
    adapter = get_adapter(family)
    processor = adapter.load_processor(model_dir)
    rng = np.random.default_rng(11)
    samples = []
    for index, (sizes, frames) in enumerate(zip(IMAGE_SIZES, VIDEO_FRAMES)):
        images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in sizes]
        content = [{"type": "image"} for _ in images]
        video = None
        if frames:
            video = DecodedVideo("v.mp4", rng.integers(0, 256, (frames, 56, 56, 3), dtype=np.uint8),
                                 np.arange(frames) / 2.0, 2.0, frames)
            content.append({"type": "video"})
        content.append({"type": "text", "text": "Which picture shows the red square?"})
        inputs = adapter.encode(processor, [{"role": "user", "content": content}], video, images=images)
        samples.append({"uid": str(index), "inputs": {k: v[0] if k in TOKEN_KEYS else v for k, v in inputs.items()},
                        "question": "q", "options": None, "answer": "A", "reasoning": None, "task": "t",
                        "video_path": None, "timestamps": None})
    pad = processor.tokenizer.pad_token_id
    prompts = collate_left_padded(samples, pad)
    responses = torch.full((2, RESPONSE_WIDTH), pad)
    response_mask = torch.zeros(2, RESPONSE_WIDTH, dtype=torch.long)
    for row, length in enumerate(RESPONSE_LENGTHS):
        responses[row, :length] = torch.from_numpy(rng.integers(10, 900, length))
        response_mask[row, :length] = 1
    case = {
        "input_ids": torch.cat([prompts["input_ids"], responses], 1),
        "attention_mask": torch.cat([prompts["attention_mask"], response_mask], 1),
        "mm_token_type_ids": torch.cat([prompts["mm_token_type_ids"], torch.zeros_like(responses)], 1),
        "responses": responses, "response_mask": response_mask, "pad_token_id": pad,
        "vision_rows": list(prompts["vision_inputs"]),
        "weights": torch.from_numpy(rng.normal(size=(2, RESPONSE_WIDTH))).float() * response_mask,
    }
    path = tmp_path / f"{family}_images.pt"
    torch.save(case, path)
    return case, str(path)


def _reference(family: str, model_dir, case: dict) -> dict:
    """Log-probs and gradients of the plain forward; each row's features as the model's own image and video
    encoders give them (images first, then the video: the order of the row's placeholders)."""
    model = get_adapter(family).load_model(model_dir).eval()
    rows = case["vision_rows"]
    features = []
    with torch.no_grad():
        for row in rows:
            parts = [model.get_image_features(row["pixel_values"], row["image_grid_thw"], return_dict=True)]
            if "pixel_values_videos" in row:
                parts.append(model.get_video_features(row["pixel_values_videos"], row["video_grid_thw"],
                                                      return_dict=True))
            features += [torch.cat(list(part.pooler_output)) for part in parts]
    vision = merge_vision_inputs(rows, get_adapter(family).input_keys)
    logits = model(**{k: case[k] for k in TOKEN_KEYS}, **vision).logits
    prompt_width = case["input_ids"].shape[1] - RESPONSE_WIDTH
    logits = logits[:, prompt_width - 1 : -1].float()
    log_probs = torch.log_softmax(logits, -1).gather(-1, case["responses"].unsqueeze(-1)).squeeze(-1)
    (log_probs * case["weights"]).sum().backward()
    return {"log_probs": log_probs.detach(), "features": torch.cat(features),
            "grads": {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}}


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen2_vl"])
def test_images_and_video_through_mrsp_equal_the_plain_forward(family, tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir(family)
    case, path = _case(family, model_dir, tmp_path)
    reference = _reference(family, model_dir, case)
    image_tokens = (case["input_ids"] == get_adapter(family).load_model(model_dir).config.image_token_id).sum(1)
    assert image_tokens.tolist() == [(2 * 3 + 1 * 2), 2 * 2]  # merged 2x2: (56x84 -> 2x3) + (28x56 -> 1x2); 56x56
    results = run_on_ranks(2, score_with_sp, family, str(model_dir), path, False, 1, True)
    assert torch.equal(results[0]["log_probs"], results[1]["log_probs"]), "SP ranks disagree"
    lp = max_masked_diff(results[0]["log_probs"], reference["log_probs"], case["response_mask"])
    feat = (results[0]["features"] - reference["features"]).abs().max().item()
    print(f"{family} images sp=2: max|dlogp|={lp:.2e} max|dfeature|={feat:.2e}")
    assert lp < 1e-5 and feat < 1e-6
    # Three images (one slice each) and the video's three slices, each encoded once over the group.
    assert sum(sum(r["encoded_slices"]) for r in results) == 3 + 3
    worst = max((results[0]["grads"][n] - g).abs().max().item() / (g.abs().max().item() + 1e-8)
                for n, g in reference["grads"].items())
    print(f"{family} images sp=2: max relative gradient difference {worst:.2e}")
    assert worst < 1e-4


@pytest.mark.parametrize("family", ["qwen2_5_vl"])
def test_unsharded_scoring_with_precomputed_image_and_video_features(family, tiny_model_dir, tmp_path):
    """The actor's path without SP (``response_log_probs``, the forward given the features through the family's
    ``encoder_kwargs``) equals the plain forward too: image rows reach the image input, video rows the video input."""
    model_dir = tiny_model_dir(family)
    case, _ = _case(family, model_dir, tmp_path)
    reference = _reference(family, model_dir, case)
    adapter = get_adapter(family)
    model = adapter.load_model(model_dir).eval()
    tokens = {k: case[k] for k in TOKEN_KEYS}
    grids = position_inputs(case["vision_rows"], adapter.input_keys)
    kwargs = {**grids, **adapter.encoder_kwargs(model, reference["features"], placeholder_tokens(
        case["input_ids"], adapter.media_placeholder_ids(model)))}
    with torch.no_grad():
        scores = response_log_probs(model, tokens, kwargs, case["responses"])
    assert max_masked_diff(scores.log_probs, reference["log_probs"], case["response_mask"]) < 1e-5
