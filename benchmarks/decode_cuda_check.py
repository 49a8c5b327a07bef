"""CUDA checks of the HF rollout's captured decode step, on the tiny Qwen2.5-VL with sharp random weights (the CPU
tests' model and prompts: two videos, left-padded to one width). Every check runs (a part that raises is reported
and the next part runs: one GPU call should say all it can) and the script exits non-zero if any failed.

1. greedy (float32): the step is captured in a CUDA graph, and the tokens equal stock ``generate`` on the GPU;
2. sampled (float64, temperature 0.7, top-k 20, top-p 0.9, n=3): the step is captured, the rollout log-probs equal a
   full forward over prompt + response to 1e-9, and the tokens equal those of the same call on the CPU;
3. the same call with the eager step (``cuda_graphs=False``) gives the same tokens and log-probs;
4. float32 sampled, with a stop set that ends the rows at different columns, checking for stops every step
   (``check_every=1``) and every 16: the same rollout;
5. bfloat16 (the engines above, float32/float64, decode eagerly): an engine left to choose decodes through compiled
   decoder layers, and its greedy rollout equals that of one with eager layers (tokens; log-probs to 5e-2);
6. bfloat16 at the workload's shapes (a 65k-key prompt beside an 8k one, 8 samples x 8 query heads on 2 key/value
   heads): the split prompt attention through the flash kernel equals the reference pieces and one float32
   attention over each whole prompt, and a decode step of the cache with the flash kernel equals one without.

    python benchmarks/decode_cuda_check.py
"""

from __future__ import annotations

import functools
import sys
import traceback
from pathlib import Path

import longrl  # noqa: F401  (before torchvision: the CPU shim)
import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from prompt_cases import prompt_batch, response_tokens, sampling_params, video_prompt_sample  # noqa: E402
from sharp_weights import sharp_weights  # noqa: E402

from longrl.models import get_adapter  # noqa: E402
from longrl.protocol import TOKEN_KEYS  # noqa: E402
from longrl.workers.rollout import compiled_layers, decode, hf  # noqa: E402
from longrl.workers.rollout.hf import HFRollout  # noqa: E402
from longrl.workers.rollout.prefix_cache import PrefixCache  # noqa: E402
from longrl.workers.rollout.split_attention import flash_available, plan_splits, split_attention  # noqa: E402
from longrl.workers.vision_inputs import merge_vision_inputs  # noqa: E402

FAMILY = "qwen2_5_vl"
MAX_NEW = 12


def _samples(processor, adapter) -> list[dict]:
    rng = np.random.default_rng(0)
    return [video_prompt_sample(adapter, processor, rng, uid, frames, height, width, question)
            for uid, frames, height, width, question in (
                ("a", 4, 56, 56, "What happens in the video?"),
                ("b", 6, 56, 84, "Which object appears first, and where is it placed? Answer with the letter."))]


def _engine(model_dir: Path, dtype: torch.dtype, device: str) -> HFRollout:
    engine = HFRollout(model_dir, dtype=dtype, device=device)
    engine.load_weights(sharp_weights(engine.model, seed=0))
    return engine


FAILED: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("ok    " if ok else "FAILED ") + what, flush=True)
    if not ok:
        FAILED.append(what)


def main() -> None:
    assert torch.cuda.is_available(), "needs a GPU"
    for part in (check_split_attention, check_engines):
        try:
            part()
        except Exception:  # noqa: BLE001  (reported, and counted as a failure)
            traceback.print_exc()
            check(False, f"{part.__name__} raised")
    if FAILED:
        sys.exit(f"decode CUDA check: {len(FAILED)} failed")
    print("decode CUDA check passed", flush=True)


def check_engines() -> None:
    """Checks 1-5: the engines' rollouts against stock generate, a full forward, the CPU and each other."""
    captures: list[bool] = []
    step_and_capture = decode._GraphRunner.step_and_capture

    def counted(self, column):
        captures.append(step_and_capture(self, column))
        return captures[-1]

    decode._GraphRunner.step_and_capture = counted
    import tempfile

    adapter = get_adapter(FAMILY)
    with tempfile.TemporaryDirectory() as root:
        model_dir = adapter.build_tiny(Path(root) / "tiny", seed=0)
        processor = adapter.load_processor(model_dir)
        samples = _samples(processor, adapter)
        tokenizer = processor.tokenizer
        pad = tokenizer.convert_tokens_to_ids("<|endoftext|>")
        eos = (tokenizer.convert_tokens_to_ids("<|im_end|>"), pad)
        prompts = prompt_batch(samples, pad)

        gpu = _engine(model_dir, torch.float32, "cuda")
        greedy = gpu.generate(prompts, sampling_params(eos, pad, MAX_NEW))
        check(captures == [True], f"greedy: the decode step was captured ({captures})")
        for row, sample in enumerate(samples):
            inputs = {k: (v.unsqueeze(0) if k in TOKEN_KEYS else v).to("cuda") for k, v in sample["inputs"].items()}
            ids = gpu.model.generate(**inputs, max_new_tokens=MAX_NEW, do_sample=False, eos_token_id=list(eos),
                                     pad_token_id=pad)
            stock = ids[0, inputs["input_ids"].shape[1]:].tolist()
            check(response_tokens(greedy, row) == stock, f"greedy row {row} equals stock generate on the GPU")

        captures.clear()
        gpu64 = _engine(model_dir, torch.float64, "cuda")
        params = sampling_params(eos, pad, MAX_NEW, n=3, temperature=0.7, top_k=20, top_p=0.9)
        out = gpu64.generate(prompts, params)
        check(captures == [True], f"sampled float64: the decode step was captured ({captures})")
        vision = {k: v.to("cuda") for k, v in merge_vision_inputs(list(out.non_tensors["vision_inputs"]),
                                                                        gpu64.adapter.input_keys).items()}
        with torch.no_grad():
            logits = gpu64.model(input_ids=out.tensors["input_ids"].cuda(),
                                 attention_mask=out.tensors["attention_mask"].cuda(),
                                 mm_token_type_ids=out.tensors["mm_token_type_ids"].cuda(), **vision).logits
        prompt_width, width = out.tensors["prompts"].shape[1], out.tensors["responses"].shape[1]
        # On the GPU as the rollout computes it (float32 log-softmax over the vocabulary differs between devices).
        step_logits = logits[:, prompt_width - 1:prompt_width - 1 + width].float() / 0.7
        expected = torch.log_softmax(step_logits, -1).gather(
            -1, out.tensors["responses"].cuda().unsqueeze(-1)).squeeze(-1).cpu()
        mask = out.tensors["response_mask"].bool()
        error = float((out.tensors["rollout_log_probs"][mask] - expected[mask]).abs().max())
        check(error <= 1e-9, f"sampled float64: rollout log-probs equal a full forward (max error {error:.2e})")
        cpu = _engine(model_dir, torch.float64, "cpu").generate(prompts, params)
        check(torch.equal(cpu.tensors["responses"], out.tensors["responses"]),
              "sampled float64: the same tokens as the same call on the CPU")

        gpu64.cuda_graphs = False
        eager = gpu64.generate(prompts, params)
        check(torch.equal(eager.tensors["responses"], out.tensors["responses"])
              and torch.equal(eager.tensors["rollout_log_probs"], out.tensors["rollout_log_probs"]),
              "sampled float64: the eager step gives the same tokens and log-probs")

        free = gpu.generate(prompts, sampling_params(eos, pad, MAX_NEW, n=3, temperature=1.0))
        stops = {int(free.tensors["responses"][row, 2 + row % 3]) for row in range(len(free))}
        params = sampling_params((*stops, *eos), pad, MAX_NEW, n=3, temperature=1.0)
        runs = []
        for every in (1, 16):
            hf.sample_with_shared_prefill = functools.partial(decode.sample_with_shared_prefill, check_every=every)
            runs.append(gpu.generate(prompts, params))
        lengths = runs[0].tensors["response_mask"].sum(1).tolist()
        check(all(torch.equal(runs[0].tensors[k], runs[1].tensors[k])
                  for k in ("responses", "response_mask", "rollout_log_probs")) and max(lengths) <= 5,
              f"stops: checking every step or every 16 gives the same rollout (lengths {lengths})")
        bf16 = [HFRollout(model_dir, dtype=torch.bfloat16, device="cuda", compile_decode=choice)
                for choice in (None, False)]
        greedy16 = []
        for engine in bf16:
            engine.load_weights(sharp_weights(engine.model, seed=0))
            greedy16.append(engine.generate(prompts, sampling_params(eos, pad, MAX_NEW)))
        compiled = all(isinstance(layer.forward, compiled_layers._CompiledWhileDecoding)
                       for layer in bf16[0].model.get_decoder().layers)
        check(compiled and not compiled_layers.CompiledOrEager.failed_parts
              and torch._dynamo.utils.counters["stats"]["unique_graphs"] > 0,
              "bf16: the engine decoded through compiled decoder layers")
        gap = float((greedy16[0].tensors["rollout_log_probs"] - greedy16[1].tensors["rollout_log_probs"]).abs().max())
        check(torch.equal(greedy16[0].tensors["responses"], greedy16[1].tensors["responses"]) and gap < 5e-2,
              f"bf16 greedy: compiled layers give the eager layers' tokens (log-probs within {gap:.1e})")


def check_split_attention() -> None:
    """Check 6, at the workload's shapes."""
    generator = torch.Generator(device="cuda").manual_seed(0)
    lengths, rows, kv_heads, dim, scale = [65_565, 8_221], 64, 2, 128, 128 ** -0.5

    def rand(*shape):
        return torch.randn(*shape, generator=generator, device="cuda").to(torch.bfloat16)

    query, keys, values = rand(2, rows, kv_heads, dim), rand(sum(lengths), kv_heads, dim), rand(
        sum(lengths), kv_heads, dim)
    check(flash_available(query), "bf16: the flash kernel runs here")
    splits = plan_splits(lengths, rows, kv_heads, torch.device("cuda"))
    flash_out, flash_lse = split_attention(query, keys, values, splits, scale, use_flash=True)
    ref_out, ref_lse = split_attention(query, keys, values, splits, scale, use_flash=False)
    out_error, lse_error = float((flash_out - ref_out).abs().max()), float((flash_lse - ref_lse).abs().max())
    check(out_error < 2e-2 and lse_error < 1e-3, f"bf16, {splits.count} pieces a prompt: flash equals the reference "
          f"pieces (output {out_error:.1e}, log-sum-exp {lse_error:.1e})")
    offset = 0
    for prompt, length in enumerate(lengths):
        whole = F.scaled_dot_product_attention(
            query[prompt].transpose(0, 1)[None].float(), keys[offset:offset + length].transpose(0, 1)[None].float(),
            values[offset:offset + length].transpose(0, 1)[None].float(), scale=scale)[0].transpose(0, 1)
        error = float((flash_out[prompt] - whole).abs().max())
        check(error < 2e-2, f"bf16: prompt of {length} keys equals one float32 attention (max error {error:.1e})")
        offset += length

    mask = torch.ones(2, lengths[0], dtype=torch.long, device="cuda")
    mask[1, :lengths[0] - lengths[1]] = 0
    group, n, steps = 8, 8, 3
    outputs = []
    for flash in (True, False):
        cache = PrefixCache(mask, n, steps, group, torch.bfloat16, flash=flash)
        generator.manual_seed(1)
        cache.prefill(0, rand(2, kv_heads * group, lengths[0], dim), rand(2, kv_heads, lengths[0], dim),
                      rand(2, kv_heads, lengths[0], dim), None)
        for _ in range(steps):
            cache.advance()
            out = cache.decode(0, rand(2 * n, kv_heads * group, 1, dim), rand(2 * n, kv_heads, 1, dim),
                               rand(2 * n, kv_heads, 1, dim), None)
        outputs.append(out.float())
    error = float((outputs[0] - outputs[1]).abs().max())
    check(error < 2e-2, f"bf16: a decode step with the flash kernel equals one without (max error {error:.1e})")


if __name__ == "__main__":
    main()
