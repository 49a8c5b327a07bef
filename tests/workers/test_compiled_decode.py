"""The HF rollout decoding through compiled decoder layers (longrl/workers/rollout/compiled_layers.py), on the CPU
in float32: the same samples as the eager layers and log-probs within float32 rounding of the model's float32
intermediates, amplified by the sharp weights (fused kernels round differently in the last bits); the prefill stays
eager; and an engine left to choose compiles only a 16-bit model on CUDA."""

from __future__ import annotations

import pytest
import torch

from longrl.models import get_adapter
from longrl.workers.rollout import compiled_layers, hf
from longrl.workers.rollout.hf import HFRollout
from prompt_cases import sampling_params, two_video_prompts
from sharp_weights import sharp_weights

FAMILY = "qwen2_5_vl"

pytestmark = pytest.mark.slow  # one inductor compilation on the CPU


def test_compiled_layers_decode_the_eager_layers_samples(tiny_model_dir, monkeypatch):
    model_dir = tiny_model_dir(FAMILY)
    prompts, eos, pad = two_video_prompts(get_adapter(FAMILY), model_dir)
    params = sampling_params(eos, pad, 6, n=3, temperature=0.7, top_k=20, seed=3)
    calls = {"compiled": 0, "eager": 0}

    class Counting(compiled_layers._CompiledWhileDecoding):
        def __init__(self, eager):
            super().__init__(eager)
            compiled = self.compiled

            def counted(*args, **kwargs):
                calls["compiled"] += 1
                return compiled(*args, **kwargs)
            self.compiled = counted

    monkeypatch.setattr(compiled_layers, "_CompiledWhileDecoding", Counting)
    outs = []
    for compile_decode in (False, True):
        engine = HFRollout(model_dir, dtype=torch.float32, compile_decode=compile_decode)
        engine.load_weights(sharp_weights(engine.model, seed=0))
        outs.append(engine.generate(prompts, params))
    layers = engine.model.get_decoder().layers
    assert all(isinstance(layer.forward, Counting) for layer in layers) and not Counting.failed
    steps = outs[1].tensors["responses"].shape[1]
    assert calls["compiled"] == len(layers) * (steps - 1)  # every decode step, never the prefill
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
