"""Sampling ``n`` responses per prompt with each prompt prefilled once and its cache shared by the samples.

``generate`` takes a batch of whole sequences, so ``n`` samples of a prompt cost ``n`` prefills of it, ``n`` copies of
its key/value cache, and ``n`` reads of that cache per generated token. For a long video prompt these are the rollout:
eight prefills of a 259k-token prompt take minutes and do not fit one GPU. Here the ``B`` prompts are prefilled once,
their keys and values kept once per prompt (:mod:`longrl.workers.rollout.prefix_cache`), and decoding goes on token by
token with the step rule of ``generate``'s sampling loop: processors on float32 logits, softmax, one draw per row,
finished rows padded, stop when every row has stopped.

Each sample draws from its own counter-based random stream, keyed by ``(seed, prompt, sample index)`` and indexed by
the response column (:mod:`longrl.workers.rollout.draws`): a sample does not depend on which other samples share its
batch, so the ``n`` samples of a prompt can be split over the ranks of a sequence-parallel group and still be the
samples one rank would have drawn alone.

A decode step (:meth:`_Decoder.step`: the model's forward for one token per sample, the logits processors, the draw,
writing the token and its log-prob, stop tracking) reads and writes only tensors whose shapes and addresses are fixed
for the call, with the step counter on the device. On CUDA it is captured once in a CUDA graph after one eager step
(run on a side stream, which warms up the kernels) and replayed per token, so a token costs one graph launch instead
of a few thousand kernel launches from Python; ``running.any()`` is read back every ``check_every`` steps only, and
the extra steps after every row has stopped write padding and are trimmed off. Elsewhere, with ``cuda_graphs=False``,
or when the processors are not all known to read nothing but the scores (temperature, top-k, top-p, suppressed
tokens), the same step runs eagerly; a capture that fails is logged once and the call goes on eagerly.

Log-probs are recorded from the raw logits of each step before any processor touches them, as
``log_softmax(logits / T)``: the distribution the actor recomputes, not the top-k/top-p truncated one the token was
drawn from.

Positions come from the model family's adapter over prompt + response columns (what the actor's forward uses), so
rollout and actor score every token at the same positions.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LogitsProcessorList, PreTrainedModel
from transformers.generation.logits_process import (
    SuppressTokensLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from longrl.workers.rollout.compiled_layers import decodes_compiled
from longrl.workers.rollout.draws import RowSampler
from longrl.workers.rollout.prefix_cache import PrefixCache, prefix_cache_attention_on

__all__ = ["DecodeInputs", "sample_with_shared_prefill"]

logger = logging.getLogger(__name__)

# Processors that read only the scores, with fixed shapes and no host synchronisation: a step using only these can be
# captured. Suppressed tokens are applied here as an index fill (the same scores as the processor's).
_SCORE_ONLY = (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, SuppressTokensLogitsProcessor)
_warned_capture = False


@dataclass
class DecodeInputs:
    """What the loop needs of ``B`` left-padded prompts of width ``P``."""

    features: dict[str, Any]  # the prefill's keywords for the prompts' precomputed media features (the family's)
    input_ids: torch.Tensor  # (B, P)
    attention_mask: torch.Tensor  # (B, P)
    position_ids: torch.Tensor  # (B, P + max_new_tokens) or (k, B, P + max_new_tokens) for mrope


@torch.no_grad()
def sample_with_shared_prefill(
    model: PreTrainedModel,
    inputs: DecodeInputs,
    processors: LogitsProcessorList,
    *,
    n: int,
    first_sample: int,
    max_new_tokens: int,
    greedy: bool,
    eos_token_ids: tuple[int, ...],
    pad_token_id: int,
    seed: int | None,
    log_prob_temperature: float = 1.0,
    cuda_graphs: bool = True,
    check_every: int = 16,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(B * n, steps)`` generated tokens and their float32 log-probs under ``log_softmax(logits /
    log_prob_temperature)``, prompt row ``i``'s samples at rows ``i*n .. i*n+n-1``; these are samples
    ``first_sample .. first_sample+n-1`` of each prompt (their seeds). Rows are padded after their stop token (their
    log-probs there are those of the padding). ``cuda_graphs``: capture the decode step on CUDA (see the module
    docstring); ``check_every``: decode steps between two checks whether every row has stopped."""
    decoder = _Decoder(model, inputs, processors, n=n, first_sample=first_sample, max_new_tokens=max_new_tokens,
                       greedy=greedy, eos_token_ids=eos_token_ids, pad_token_id=pad_token_id, seed=seed,
                       log_prob_temperature=log_prob_temperature)
    width = inputs.input_ids.shape[1]
    graphs = (cuda_graphs and decoder.capturable and decoder.device.type == "cuda"
              and max_new_tokens > 2)  # at least one replay after the eager warm-up step
    with prefix_cache_attention_on(model):
        logits = model(input_ids=inputs.input_ids, position_ids=inputs.position_ids[..., :width], use_cache=False,
                       logits_to_keep=1, shared_decode=decoder.cache, **inputs.features
                       ).logits[:, -1].repeat_interleave(n, dim=0)
        decoder.choose(logits, 0)
        runner = _GraphRunner(decoder) if graphs else None
        column = 1
        while column < max_new_tokens:
            for column in range(column, min(column + check_every, max_new_tokens)):
                if runner is None:
                    decoder.step(column)
                elif runner.graph is not None:
                    runner.graph.replay()
                elif not runner.step_and_capture(column):
                    runner = None
            column += 1
            if column < max_new_tokens and not bool(decoder.running.any()):
                break
    steps = int(decoder.active_steps)
    return decoder.generated[:, :steps], decoder.log_probs[:, :steps]


class _Decoder:
    """The state of one call (tokens, log-probs, stop flags, the cache) in fixed tensors, and the step over them."""

    def __init__(self, model: PreTrainedModel, inputs: DecodeInputs, processors: LogitsProcessorList, *, n: int,
                 first_sample: int, max_new_tokens: int, greedy: bool, eos_token_ids: tuple[int, ...],
                 pad_token_id: int, seed: int | None, log_prob_temperature: float):
        batch, width = inputs.input_ids.shape
        self.device = device = inputs.input_ids.device
        self.model = model
        text = model.config.get_text_config()
        self.cache = PrefixCache(inputs.attention_mask, n, max_new_tokens,
                                 text.num_attention_heads // text.num_key_value_heads,
                                 model.get_input_embeddings().weight.dtype, compiled=decodes_compiled(model))
        rows = batch * n
        # Response columns' positions per sample: (.., B * n, max_new_tokens); a step reads the fed token's column.
        self.positions = inputs.position_ids[..., width:].repeat_interleave(n, dim=-2).contiguous()
        self.prompts = inputs.input_ids.repeat_interleave(n, dim=0)
        self.processors = list(processors)
        self.capturable = all(isinstance(processor, _SCORE_ONLY) for processor in self.processors)
        self.suppressed = [processor.suppress_tokens.to(device=device, dtype=torch.long)
                           if isinstance(processor, SuppressTokensLogitsProcessor) else None
                           for processor in self.processors]
        self.sampler = RowSampler(greedy, seed, batch, n, first_sample, device, columns=max_new_tokens)
        self.temperature = log_prob_temperature
        self.pad_token_id = pad_token_id
        self.stops = torch.tensor(list(eos_token_ids), device=device)
        self.tokens = torch.full((rows,), pad_token_id, dtype=torch.long, device=device)  # the latest token per row
        self.generated = torch.full((rows, max_new_tokens), pad_token_id, dtype=torch.long, device=device)
        self.log_probs = torch.zeros(rows, max_new_tokens, dtype=torch.float32, device=device)
        self.running = torch.ones(rows, dtype=torch.bool, device=device)
        self.active_steps = torch.zeros((), dtype=torch.long, device=device)  # steps begun with some row running

    def step(self, column: int | None) -> None:
        """Feed each row's latest token and choose the token of the next response column. ``column`` (a host int) is
        only needed by processors that read the generated ids; ``None`` inside a capture."""
        self.cache.advance()
        positions = self.positions.index_select(-1, self.cache.step.view(1))
        logits = self.model(input_ids=self.tokens[:, None], position_ids=positions, use_cache=False,
                            shared_decode=self.cache).logits[:, -1]
        self.choose(logits, column)

    def choose(self, logits: torch.Tensor, column: int | None) -> None:
        """Process, draw, record and stop-track the response column after the cache's current step."""
        index = (self.cache.step + 1).view(1)
        scores = logits.float()
        log_probs = torch.log_softmax(scores / self.temperature, dim=-1)
        scores = self._processed(scores, column)
        tokens = torch.where(self.running, self.sampler(scores, index[0]), self.pad_token_id)
        self.tokens.copy_(tokens)
        self.generated.index_copy_(1, index, tokens[:, None])
        self.log_probs.index_copy_(1, index, log_probs.gather(-1, tokens[:, None]))
        self.active_steps += self.running.any()
        self.running &= ~(tokens[:, None] == self.stops[None, :]).any(dim=-1)

    def _processed(self, scores: torch.Tensor, column: int | None) -> torch.Tensor:
        if not self.capturable:
            if column is None:
                raise RuntimeError("these logits processors read the generated ids: the step cannot be captured")
            ids = torch.cat([self.prompts, self.generated[:, :column]], dim=1)
            return LogitsProcessorList(self.processors)(ids, scores)
        for processor, suppressed in zip(self.processors, self.suppressed):
            if suppressed is None:
                scores = processor(None, scores)
            elif suppressed.numel():
                scores = scores.index_fill(-1, suppressed, -float("inf"))
        return scores


class _GraphRunner:
    """Runs the first decode step eagerly on a side stream (warming up the kernels and the libraries' workspaces for
    it), then captures :meth:`_Decoder.step` on that stream into a CUDA graph that later steps replay."""

    def __init__(self, decoder: _Decoder):
        self.decoder = decoder
        self.graph: torch.cuda.CUDAGraph | None = None
        self.stream = torch.cuda.Stream(decoder.device)

    def step_and_capture(self, column: int) -> bool:
        """Run the step of ``column`` and capture the step; False (the reason logged once) when capture failed, the
        step having run all the same."""
        global _warned_capture
        current = torch.cuda.current_stream(self.decoder.device)
        self.stream.wait_stream(current)
        graph = torch.cuda.CUDAGraph()
        error: Exception | None = None
        with torch.cuda.stream(self.stream):
            self.decoder.step(column)
            try:
                graph.capture_begin(capture_error_mode="thread_local")
            except Exception as caught:  # noqa: BLE001  (any failure leaves the eager step, which is exact)
                error = caught
            else:
                try:
                    self.decoder.step(None)  # recorded, not run: the state stays that after the eager step
                except Exception as caught:  # noqa: BLE001
                    error = caught
                try:
                    graph.capture_end()
                except Exception as caught:  # noqa: BLE001
                    error = error or caught
        current.wait_stream(self.stream)
        if error is None:
            self.graph = graph
            return True
        if not _warned_capture:
            logger.warning("HF rollout: capturing the decode step in a CUDA graph failed (%s: %s); decoding eagerly "
                           "instead", type(error).__name__, error)
            _warned_capture = True
        torch.cuda.synchronize(self.decoder.device)
        return False
