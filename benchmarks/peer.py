"""The peer row: the same GRPO step written as a plain Hugging Face loop on one GPU, what a user would write instead.

Policy and reference are the Hugging Face model loaded in bf16 (no FSDP), AdamW on the policy's trainable weights,
gradient checkpointing on, vision tower frozen. The step: ``generate`` with ``num_return_sequences=n`` on the prompt's
token ids and pixels, then for each of the ``n`` rows a forward with its pixels for the old log-probs, one for the
reference's, and one with gradients for the clipped-ratio loss with a KL term (one optimizer step for the group).
Every forward runs the vision tower and the whole prompt; only the response positions reach the LM head
(``logits_to_keep``), as TRL's GRPOTrainer does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from longrl.models import get_adapter
from longrl.protocol import TOKEN_KEYS, Batch
from longrl.workers.logprob import response_log_probs
from longrl.workers.rollout.sampling import SamplingParams
from longrl.workers.vision_inputs import merge_vision_inputs
from workload import FAMILY, N_ROLLOUTS, RESPONSE_LENGTH, phase, stock_generate

CLIP = 0.2
KL_COEF = 0.04


def _row_log_probs(model: torch.nn.Module, batch: Batch, row: int, vision: dict[str, torch.Tensor]) -> torch.Tensor:
    """Log-probs of row ``row``'s response tokens, from a forward over its prompt + response with the pixels."""
    device = next(model.parameters()).device
    tokens = {key: batch.tensors[key][row:row + 1].to(device) for key in TOKEN_KEYS if key in batch.tensors.keys()}
    responses = batch.tensors["responses"][row:row + 1].to(device)
    return response_log_probs(model, tokens, vision, responses).log_probs[0]


class PeerLoop:
    """Policy, reference and optimizer of the plain loop, loaded from ``model_dir`` onto ``device``."""

    def __init__(self, model_dir: Path, device: torch.device, pad_token_id: int, eos_token_ids: tuple[int, ...],
                 n: int = N_ROLLOUTS, length: int = RESPONSE_LENGTH):
        from transformers import AutoModelForImageTextToText

        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        self.policy = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=dtype).to(device)
        self.reference = AutoModelForImageTextToText.from_pretrained(str(model_dir), dtype=dtype).to(device).eval()
        self.policy.model.visual.requires_grad_(False)
        self.policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainable = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=0.0)  # lr 0: the same cost, the weights stay put
        self.sampling = SamplingParams(n=n, temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=length,
                                       eos_token_ids=eos_token_ids, pad_token_id=pad_token_id, seed=0)
        self.device = device

    def step(self, prompts: Batch) -> dict[str, Any]:
        record: dict[str, Any] = {}
        tower_calls: list[int] = []
        hooks = [model.model.visual.register_forward_hook(lambda *_: tower_calls.append(1))
                 for model in (self.policy, self.reference)]
        vision = {key: value.to(self.device) for key, value in
                  merge_vision_inputs(list(prompts.non_tensors["vision_inputs"]),
                                      get_adapter(FAMILY).input_keys).items()}
        with phase("rollout", record):
            self.policy.eval()
            batch = stock_generate(self.policy, prompts, self.sampling)
        rows = range(len(batch))
        with phase("old_log_prob", record), torch.no_grad():
            old = [_row_log_probs(self.policy, batch, row, vision) for row in rows]
        with phase("ref_log_prob", record), torch.no_grad():
            ref = [_row_log_probs(self.reference, batch, row, vision) for row in rows]
        masks = batch.tensors["response_mask"].to(self.device).float()
        advantages = torch.randn(len(batch), device=self.device)
        with phase("update", record):
            self.policy.train()
            for row in rows:
                log_probs = _row_log_probs(self.policy, batch, row, vision)
                ratio = torch.exp(log_probs - old[row])
                surrogate = torch.minimum(ratio * advantages[row], ratio.clamp(1 - CLIP, 1 + CLIP) * advantages[row])
                kl = torch.exp(ref[row] - log_probs) - (ref[row] - log_probs) - 1
                loss = ((-surrogate + KL_COEF * kl) * masks[row]).sum() / masks.sum()
                loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        for hook in hooks:
            hook.remove()
        record["total_s"] = sum(record[key] for key in record if key.endswith("_s"))
        record["vision_tower_calls"] = len(tower_calls)
        record["prompt_tokens"] = int(prompts.tensors["attention_mask"].sum())
        record["response_tokens"] = int(masks.sum())
        return record
