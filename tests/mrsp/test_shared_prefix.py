"""Shared-prefix scoring equals the unshared paths: log-probs, entropy and gradients, at SP=1 and SP=2.

Six rows, three per prompt, of two prompts interleaved (uids ``a b a b b a``, so groups are not contiguous), prompts
left-padded to one width, responses of different lengths. The shared layout packs each prompt once plus its three
responses as branches; it is compared with the padded and the padding-free (packed) layouts of the same sharded
prefill, and with the single-process Hugging Face forward (pixels in, the tower run there). Qwen2.5-VL with a video
per prompt (3-D mrope ids), and text-only Qwen2 and Qwen3 (per-head query/key norms).
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
from longrl.protocol import TOKEN_KEYS
from longrl.workers.vision_inputs import merge_vision_inputs, position_inputs

from mrsp.ranks import max_masked_diff
from mrsp.spawn import run_on_ranks

pytestmark = pytest.mark.slow
UIDS = ("a", "b", "a", "b", "b", "a")
RESPONSE_LENGTHS = (5, 2, 3, 4, 1, 4)  # per row; R = 5, the shorter ones right-padded
RESPONSE_WIDTH = 5
QUESTIONS = ("What happens first?", "Which object appears last in the video, and where does it go afterwards?")
MODES = ("padded", "packed", "shared")


def _case(family: str, model_dir: Path, tmp_path: Path) -> tuple[dict, str]:
    adapter = get_adapter(family)
    processor = adapter.load_processor(model_dir)
    rng = np.random.default_rng(5)
    samples = []
    for index, (uid, question) in enumerate(zip(("a", "b"), QUESTIONS)):
        video = None
        content: list[dict[str, Any]] = [{"type": "text", "text": question}]
        if adapter.supports_video:
            frames = 4 + 2 * index
            video = DecodedVideo(f"{uid}.mp4", rng.integers(0, 256, (frames, 56, 56, 3), dtype=np.uint8),
                                 np.arange(frames) / 2.0, 2.0, frames)
            content.insert(0, {"type": "video"})
        inputs = adapter.encode(processor, [{"role": "user", "content": content}], video)
        samples.append({"uid": uid, "inputs": {k: v[0] if k in TOKEN_KEYS else v for k, v in inputs.items()},
                        "question": question, "options": None, "answer": "A", "reasoning": None, "task": "t",
                        "video_path": None, "timestamps": None})
    pad = processor.tokenizer.pad_token_id if hasattr(processor, "tokenizer") else processor.pad_token_id
    prompts = collate_left_padded([samples[0 if uid == "a" else 1] for uid in UIDS], pad)
    rows = len(UIDS)
    responses = torch.full((rows, RESPONSE_WIDTH), pad)
    response_mask = torch.zeros(rows, RESPONSE_WIDTH, dtype=torch.long)
    for row, length in enumerate(RESPONSE_LENGTHS):
        responses[row, :length] = torch.from_numpy(rng.integers(10, 900, length))
        response_mask[row, :length] = 1
    case = {key: torch.cat([prompts[key], responses if key == "input_ids" else response_mask
                            if key == "attention_mask" else torch.zeros_like(responses)], 1)
            for key in TOKEN_KEYS if key in prompts}
    case.update({"responses": responses, "response_mask": response_mask, "pad_token_id": pad, "uids": list(UIDS),
                 "vision_rows": list(prompts["vision_inputs"]),
                 "prompt_lengths": prompts["attention_mask"].sum(1),
                 "weights": torch.from_numpy(rng.normal(size=(rows, RESPONSE_WIDTH))).float() * response_mask})
    path = tmp_path / f"{family}.pt"
    torch.save(case, path)
    return case, str(path)


def _reference(family: str, model_dir: Path, case: dict) -> dict:
    """The plain HF forward of the six full rows (the tower runs on each row's pixels)."""
    adapter = get_adapter(family)
    model = adapter.load_model(model_dir).eval()
    tokens = {k: case[k] for k in TOKEN_KEYS if k in case}
    logits = model(**tokens, **merge_vision_inputs(case["vision_rows"], adapter.input_keys)).logits
    prompt_width = case["input_ids"].shape[1] - RESPONSE_WIDTH
    logits = logits[:, prompt_width - 1 : -1].float()
    log_probs = torch.log_softmax(logits, -1).gather(-1, case["responses"].unsqueeze(-1)).squeeze(-1)
    entropy = torch.logsumexp(logits, -1) - (torch.softmax(logits, -1) * logits).sum(-1)
    (log_probs * case["weights"]).sum().backward()
    return {"log_probs": log_probs.detach(), "entropy": entropy.detach(),
            "grads": {n: p.grad.clone() if p.grad is not None else torch.zeros_like(p) for n, p in model.named_parameters()}}


def score_modes(family: str, model_dir: str, case_path: str) -> dict[str, dict[str, Any]]:
    """On each rank of one SP group: every layout's log-probs, entropy, gradients and forward width.

    Video features are encoded once per uid (as the actor does) and handed to every row of the uid.
    """
    case = torch.load(case_path, weights_only=False)
    adapter = get_adapter(family)
    model = adapter.load_model(Path(model_dir)).eval()
    use_mrsp_attention(model)
    groups = build_sp_groups(dist.get_world_size())
    widths: list[int] = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[1] * groups.sp_size), with_kwargs=True)
    tokens = {k: case[k] for k in TOKEN_KEYS if k in case}
    grids = position_inputs(case["vision_rows"], adapter.input_keys)
    positions = adapter.position_ids(model, tokens, grids)
    first = {uid: row for row, uid in reversed(list(enumerate(case["uids"])))}
    results = {}
    for mode in MODES:
        model.zero_grad(set_to_none=True)
        features = None
        encoder = adapter.video_encoder(model)
        if encoder is not None:
            encoded = encode_row_videos(encoder, [case["vision_rows"][row] for row in first.values()], groups,
                                        torch.device("cpu"), 1)
            by_uid = dict(zip(first, encoded))
            features = torch.cat([by_uid[uid] for uid in case["uids"]])
        inputs = PrefillInputs(case["input_ids"], case["attention_mask"], positions, case["responses"], features,
                               adapter.media_placeholder_ids(model), case["pad_token_id"], case["uids"])
        log_probs, entropy = sharded_response_scores(model, inputs, groups, adapter.encoder_kwargs, with_entropy=True,
                                                     padding_free=mode == "packed", shared_prefix=mode == "shared")
        (log_probs * case["weights"]).sum().backward()
        grads = {}
        for name, param in model.named_parameters():
            grad = param.grad.clone() if param.grad is not None else torch.zeros_like(param)
            dist.all_reduce(grad)
            grads[name] = grad / dist.get_world_size()
        results[mode] = {"log_probs": log_probs.detach(), "entropy": entropy.detach(), "grads": grads,
                         "width": widths[-1]}
    return results


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen2", "qwen3"])
def family_case(request, tiny_model_dir, tmp_path_factory):
    family = request.param
    model_dir = tiny_model_dir(family)
    case, path = _case(family, model_dir, tmp_path_factory.mktemp(family))
    return family, model_dir, case, path, _reference(family, model_dir, case)


def _relative_grad_diff(grads: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    return max((grads[n] - g).abs().max().item() / (g.abs().max().item() + 1e-8) for n, g in reference.items())


@pytest.mark.parametrize("sp", [1, 2])
def test_shared_prefix_equals_unshared(family_case, sp):
    family, model_dir, case, path, reference = family_case
    results = run_on_ranks(sp, score_modes, family, str(model_dir), path)
    mask = case["response_mask"]
    shared = results[0]["shared"]
    for rank in results:
        assert torch.equal(rank["shared"]["log_probs"], shared["log_probs"]), "SP ranks disagree"
    # (1) log-probs and entropy: the unshared sharded layouts and the HF forward.
    for name, other in (("padded", results[0]["padded"]), ("packed", results[0]["packed"]), ("hf", reference)):
        lp = max_masked_diff(shared["log_probs"], other["log_probs"], mask)
        ent = max_masked_diff(shared["entropy"], other["entropy"], mask)
        print(f"{family} sp={sp} shared vs {name}: max|dlogp|={lp:.2e} max|dentropy|={ent:.2e}")
        assert lp < 1e-5 and ent < 1e-5
    assert torch.all(shared["log_probs"][~mask.bool()] == 0) and torch.all(shared["entropy"][~mask.bool()] == 0)
    # (2) gradients of a loss over the response log-probs.
    for name, other in (("packed", results[0]["packed"]["grads"]), ("hf", reference["grads"])):
        worst = _relative_grad_diff(shared["grads"], other)
        print(f"{family} sp={sp} shared vs {name}: max relative gradient difference {worst:.2e}")
        assert worst < 1e-4
    missing = [n for n, g in reference["grads"].items() if g.abs().sum() > 0 and shared["grads"][n].abs().sum() == 0]
    assert not missing
    # (4) one prompt per uid plus every response: P_g + sum(R_i), not sum(P_g + R_i) (packed) nor n (P + R) (padded).
    lengths = torch.tensor(RESPONSE_LENGTHS)
    prompt = {uid: int(case["prompt_lengths"][UIDS.index(uid)]) for uid in set(UIDS)}
    expected = sum(prompt.values()) + int(lengths.sum())
    packed = sum(prompt[uid] for uid in UIDS) + int(lengths.sum())
    padded = len(UIDS) * case["input_ids"].shape[1]
    print(f"{family} sp={sp} forward width: shared {expected}, packed {packed}, padded {padded}")
    assert shared["width"] == -(-expected // sp) * sp
    assert results[0]["packed"]["width"] == -(-packed // sp) * sp
    assert expected < packed < padded


def test_actor_groups_rows_by_prompt_and_restores_their_order():
    """The actor's passes put each uid's rows side by side (so micro-batches hold whole groups) and undo it."""
    from types import SimpleNamespace

    from longrl.config.loader import load_config
    from longrl.protocol import Batch
    from longrl.workers.actor import PolicyModel

    cfg = load_config(["worker.actor.shared_prefix=true"])
    assert cfg.worker.actor.shared_prefix
    batch = Batch.from_dict({"row": torch.arange(6)}, non_tensors={"uid": list(UIDS)})
    grouped, inverse = PolicyModel._by_prompt(SimpleNamespace(config=cfg.worker.actor), batch)
    assert grouped.tensors["row"].tolist() == [0, 2, 5, 1, 3, 4]
    assert list(grouped.non_tensors["uid"]) == ["a", "a", "a", "b", "b", "b"]
    assert grouped.tensors["row"][torch.from_numpy(inverse)].tolist() == list(range(6))
    unshared, none = PolicyModel._by_prompt(SimpleNamespace(config=load_config([]).worker.actor), batch)
    assert unshared is batch and none is None
