"""The HF rollout decoding through compiled decoder layers (longrl/workers/rollout/compiled_layers.py), on the CPU
in float32: the same samples as the eager layers and log-probs within float32 rounding of the model's float32
intermediates, amplified by the sharp weights (fused kernels round differently in the last bits), the layers and the
prompt cache's attention after its prompt part both compiled, the latter as one graph; the prefill stays eager; and an engine left to choose
compiles only a 16-bit model on CUDA."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from longrl.models import get_adapter
from longrl.workers.rollout import compiled_layers, hf, prefix_cache
from longrl.workers.rollout.hf import HFRollout
from prompt_cases import sampling_params, two_video_prompts
from sharp_weights import sharp_weights

FAMILY = "qwen2_5_vl"

pytestmark = pytest.mark.slow  # one inductor compilation on the CPU


def test_compiled_layers_decode_the_eager_layers_samples(tiny_model_dir, monkeypatch):
    model_dir = tiny_model_dir(FAMILY)
    prompts, eos, pad = two_video_prompts(get_adapter(FAMILY), model_dir)
    params = sampling_params(eos, pad, 6, n=3, temperature=0.7, top_k=20, seed=3)
    calls = {"layers": 0, "merge": 0}
    real_compile = torch.compile

    def counting_compile(eager, **options):
        compiled = real_compile(eager, **options)
        kind = "merge" if eager is prefix_cache.merge_step else "layers"

        def counted(*args, **kwargs):
            calls[kind] += 1
            return compiled(*args, **kwargs)
        return counted

    monkeypatch.setattr(torch, "compile", counting_compile)
    prefix_cache._compiled_merge_step.cache_clear()
    torch._dynamo.reset()  # compile afresh here, so the graph breaks below are this test's
    counters.clear()
    outs = []
    for compile_decode in (False, True):
        engine = HFRollout(model_dir, dtype=torch.float32, compile_decode=compile_decode)
        engine.load_weights(sharp_weights(engine.model, seed=0))
        outs.append(engine.generate(prompts, params))
    prefix_cache._compiled_merge_step.cache_clear()  # not kept for later tests: it counts
    layers = engine.model.get_decoder().layers
    assert compiled_layers.decodes_compiled(engine.model) and not compiled_layers.CompiledOrEager.failed_parts
    steps = outs[1].tensors["responses"].shape[1]
    # Every decode step, never the prefill, through the layers' and the attention's compiled code alike.
    assert calls == {part: len(layers) * (steps - 1) for part in calls}
    # The layers' graphs break only around the prompt cache's attention; its merge is one graph, bmms included.
    assert counters["graph_break"] and all("prefix_cache_attention" in reason for reason in counters["graph_break"])
    assert torch.equal(outs[0].tensors["responses"], outs[1].tensors["responses"])
    torch.testing.assert_close(outs[1].tensors["rollout_log_probs"], outs[0].tensors["rollout_log_probs"],
                               atol=2e-4, rtol=0)


def test_only_a_16_bit_model_on_cuda_with_graphs_compiles_by_default(tiny_model_dir, monkeypatch):
    compiled = []
    monkeypatch.setattr(hf, "compile_decode_layers", compiled.append)
    model_dir = tiny_model_dir(FAMILY)
    for dtype in (torch.float32, torch.bfloat16):
        HFRollout(model_dir, dtype=dtype)
    assert compiled == []  # on a CPU nothing compiles unless asked


def test_a_model_without_decoder_layers_decodes_eagerly(caplog):
    """VILA's wrapper has no ``get_decoder``: its engine is built and decodes eagerly, saying so."""
    model = torch.nn.Linear(2, 2)
    compiled_layers.compile_decode_layers(model)
    assert not compiled_layers.decodes_compiled(model)
    assert "has no decoder layers to compile; decoding eagerly" in caplog.text
