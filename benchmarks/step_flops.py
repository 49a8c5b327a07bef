"""The physical floor of one GRPO step: the least arithmetic the step needs, at the GPU's measured rates.

The least work: the vision tower encodes the video once (frozen tower: no gradients), the rollout prefills the prompt
once and decodes ``n`` responses, and the old-log-prob, reference and update passes each compute the prompt once and
the ``n`` responses against it (the update's backward counted as twice its forward; recomputation for activation
checkpointing is extra work, not part of the floor). Attention is causal (half the score matrix of a square block).

Floor time = the matmul FLOPs at the measured bf16 matmul rate, except decoding, which reads every weight and the
whole key/value cache once per generated token: its floor is the larger of its FLOPs at the matmul rate and its
bytes at the measured memory bandwidth.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import torch

BF16_BYTES = 2


@dataclass(frozen=True)
class TextShape:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def of(cls, config: Any) -> TextShape:
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        return cls(config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_attention_heads,
                   config.num_key_value_heads, head_dim, config.vocab_size)

    @property
    def layer_weights(self) -> int:
        """Matmul weights of one decoder layer (q, k, v, o projections and the gated MLP)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return self.hidden * (2 * q + 2 * kv) + 3 * self.hidden * self.intermediate

    def linear_flops(self, tokens: int, scored: int) -> float:
        """Projections and MLPs over ``tokens`` positions, the LM head over the ``scored`` ones."""
        return 2.0 * (self.layers * self.layer_weights * tokens + self.hidden * self.vocab * scored)

    def attention_flops(self, queries: int, keys: int, causal: bool) -> float:
        """Scores and weighted sum of ``queries`` against ``keys`` in every layer; ``causal`` (a square block, the
        queries being the keys) keeps the lower half."""
        pairs = queries * keys / 2 if causal else queries * keys
        return 4.0 * self.layers * self.heads * self.head_dim * pairs

    def forward_flops(self, prompt: int, responses: int, length: int) -> float:
        """One forward over the prompt once and ``responses`` branches of ``length`` tokens attending to it."""
        return (self.linear_flops(prompt + responses * length, responses * length)
                + self.attention_flops(prompt, prompt, causal=True)
                + responses * (self.attention_flops(length, prompt, causal=False)
                               + self.attention_flops(length, length, causal=True)))

    def kv_bytes_per_token(self) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * BF16_BYTES


@dataclass(frozen=True)
class VisionShape:
    hidden: int
    intermediate: int
    depth: int
    full_attention_layers: int
    patch_dim: int
    window_patches: int
    merge: int  # patches merged into one LM token
    out_hidden: int

    @classmethod
    def of(cls, config: Any) -> VisionShape:
        window = (config.window_size // config.patch_size) ** 2
        patch_dim = config.in_channels * config.temporal_patch_size * config.patch_size ** 2
        return cls(config.hidden_size, config.intermediate_size, config.depth, len(config.fullatt_block_indexes),
                   patch_dim, window, config.spatial_merge_size ** 2, config.out_hidden_size)

    def flops(self, patches: int, patches_per_slice: int) -> float:
        """The tower over ``patches``: patch embedding, the blocks (windowed attention, and full attention within
        each temporal slice of ``patches_per_slice``) and the merger's MLP over the merged tokens."""
        per_patch = 4 * self.hidden ** 2 + 3 * self.hidden * self.intermediate
        windowed = self.depth - self.full_attention_layers
        attention = 4.0 * self.hidden * patches * (windowed * self.window_patches
                                                   + self.full_attention_layers * patches_per_slice)
        merged = self.merge * self.hidden
        merger = 2.0 * (patches // self.merge) * (merged * merged + merged * self.out_hidden)
        return 2.0 * patches * (self.patch_dim * self.hidden + self.depth * per_patch) + attention + merger


@dataclass(frozen=True)
class StepShape:
    prompt: int  # prompt tokens
    responses: int  # n
    length: int  # mean response tokens
    patches: int  # vision-tower input patches of the video
    patches_per_slice: int


def step_floor(text: TextShape, vision: VisionShape, step: StepShape, matmul_flops: float,
               bandwidth: float) -> dict[str, float]:
    """Per phase the floor in seconds (``*_floor_s``), their sum (``floor_s``) and the step's FLOPs (``flops``)."""
    scoring = text.forward_flops(step.prompt, step.responses, step.length)
    prefill = text.linear_flops(step.prompt, 1) + text.attention_flops(step.prompt, step.prompt, causal=True)
    decoded = step.responses * step.length
    decode_flops = (text.linear_flops(decoded, decoded)
                    + step.responses * text.attention_flops(step.length, step.prompt + step.length / 2, causal=False))
    weights = (text.layers * text.layer_weights + text.hidden * text.vocab) * BF16_BYTES
    cache_reads = step.responses * text.kv_bytes_per_token() * (step.prompt * step.length + step.length ** 2 / 2)
    decode_s = max(decode_flops / matmul_flops, (step.length * weights + cache_reads) / bandwidth)
    encode = vision.flops(step.patches, step.patches_per_slice)
    floors = {"rollout_floor_s": (encode + prefill) / matmul_flops + decode_s,
              "old_log_prob_floor_s": scoring / matmul_flops, "ref_log_prob_floor_s": scoring / matmul_flops,
              "update_floor_s": 3 * scoring / matmul_flops}
    return {**floors, "floor_s": sum(floors.values()),
            "flops": encode + prefill + decode_flops + 5 * scoring}


def measure_rates(device: torch.device) -> tuple[float, float]:
    """(bf16 matmul FLOP/s of an 8192^3 product, bytes/s of a 2 GiB device-to-device copy counting reads and writes),
    each the best of ten timed runs after three warm-ups; on a CPU, a small float32 product and copy (the scripts'
    tests run there)."""
    gpu = device.type == "cuda"
    side, dtype = (8192, torch.bfloat16) if gpu else (512, torch.float32)
    a, b = torch.randn(side, side, device=device, dtype=dtype), torch.randn(side, side, device=device, dtype=dtype)
    source = torch.empty(2**31 if gpu else 2**24, dtype=torch.uint8, device=device)
    target = torch.empty_like(source)

    def best(work: Callable[[], Any]) -> float:
        times = []
        for _ in range(13):
            if gpu:
                torch.cuda.synchronize()
            start = time.perf_counter()
            work()
            if gpu:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return min(times[3:])

    return 2.0 * side ** 3 / best(lambda: a @ b), 2.0 * source.numel() / best(lambda: target.copy_(source))
