"""Time per decoding step of the HF rollout engine, at a given video length, on each decode path side by side.

The engine (``HFRollout``, on the workload's Qwen2.5-VL-3B architecture) generates ``n`` samples of a prompt twice, with
``--short`` and ``--long`` new tokens, each timed from the end of its prefill (CUDA events) to its end; the difference
over the extra tokens is the cost of one decoding step (one token for every sample) without the tower pass, the
prefill and the CUDA graph capture. Paths
(``--paths``, all by default, each timed on the same prompt in this one run):

* ``eager``: the current step (split-prompt decode attention, device sampling), run from Python each token;
* ``graphs``: the step captured once in a CUDA graph and replayed per token (the same as ``eager`` on a CPU);
* ``compiled``: the step captured, its decoder layers compiled (``torch.compile``; the default on CUDA), on a second
  engine with the same weights.

``--profile`` profiles the decoding part (from the end of the prefill) of one ``--long`` run per path and prints, per
decoding step, how many kernels ran, their summed time and the span from the first kernel's start to the last one's
end (span minus sum: time the GPU sat idle between kernels), then the kernels with the most time per step; on a CPU the
same for the top-level operators. A CUDA graph's replay lists its kernels one by one. ``--trace DIR`` also writes each
profile as a Chrome trace. Random weights rarely draw the stop token, so a run decodes its full length (the step
counts divided by are those actually decoded).

    python benchmarks/decode_step.py --frames 64 512 --paths eager graphs compiled
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import longrl  # noqa: F401  (before torchvision: the CPU shim)
import torch

from longrl.models.tokenizer import QwenTokenIds, build_tokenizer
from longrl.protocol import RESPONSE_MASK
from longrl.workers.rollout.hf import HFRollout
from longrl.workers.rollout.sampling import SamplingParams
from workload import N_ROLLOUTS, make_prompts, model_directory

PATHS = ("eager", "graphs", "compiled")


def engine_for(engines: dict[bool, HFRollout], path: str, model_dir: Path, gpu: bool) -> HFRollout:
    """The engine that runs ``path`` (one with compiled layers, one without; built at first use), set for it."""
    compiled = path == "compiled"
    if compiled not in engines:
        engines[compiled] = HFRollout(model_dir, dtype=torch.bfloat16 if gpu else torch.float32,
                                      device="cuda" if gpu else "cpu", compile_decode=compiled)
    engine = engines[compiled]
    engine.cuda_graphs = path != "eager"
    return engine


def timed_generate(engine: HFRollout, prompts, tokens: int, n: int, profiler=None) -> tuple[float, float, int]:
    """Seconds of one ``generate`` call, of its part after the prefill (the decoding, with the CUDA graph capture
    where there is one: the tower pass and the prefill vary from call to call by more than a few steps cost), and the
    tokens its longest sample decoded (the loop stops early when every sample has drawn a stop token). A
    ``profiler`` given runs over the decoding part only."""
    ids = QwenTokenIds.from_tokenizer(build_tokenizer())
    sampling = SamplingParams(n=n, temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=tokens,
                              eos_token_ids=(ids.eos_token_id,), pad_token_id=ids.pad_token_id, seed=1)
    gpu = engine.device.type == "cuda"
    marks: list = []

    def mark():
        if gpu:
            marks.append(torch.cuda.Event(enable_timing=True))
            marks[-1].record()
        else:
            marks.append(time.perf_counter())

    def after_prefill(*_):  # the first forward of the call is the prefill; removed before any capture
        handle.remove()
        mark()
        if profiler is not None:
            profiler.start()

    handle = engine.model.register_forward_hook(after_prefill)
    if gpu:
        torch.cuda.synchronize()
    start = time.perf_counter()
    try:
        rollout = engine.generate(prompts, sampling)
    finally:
        handle.remove()
    mark()
    if gpu:
        torch.cuda.synchronize()
    if profiler is not None:
        profiler.stop()
    total = time.perf_counter() - start
    decoding = marks[0].elapsed_time(marks[1]) / 1000 if gpu else marks[1] - marks[0]
    return total, decoding, int(rollout.tensors[RESPONSE_MASK].sum(-1).max())


def kernel_summary(events: list, steps: int, gpu: bool, rows: int = 25) -> str:
    """Per decoding step of a profile over ``steps`` steps: the GPU's kernels (a CPU's top-level operators), their
    summed time, the span they cover, and the ``rows`` kernels with the most time."""
    device = torch.autograd.DeviceType.CUDA if gpu else torch.autograd.DeviceType.CPU
    ran = [e for e in events if e.device_type == device and (gpu or e.cpu_parent is None)]
    if not ran:
        return "no kernels recorded"
    busy = sum(e.time_range.elapsed_us() for e in ran)
    span = max(e.time_range.end for e in ran) - min(e.time_range.start for e in ran)
    totals: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for event in ran:
        totals[event.name][0] += 1
        totals[event.name][1] += event.time_range.elapsed_us()
    kind = "kernels" if gpu else "top-level operators"
    lines = [f"per decoding step ({steps} steps profiled): {len(ran) / steps:.1f} {kind}, {busy / steps / 1000:.3f} ms "
             f"of their time, {span / steps / 1000:.3f} ms from the first one's start to the last one's end",
             f"{'per step':>9}{'ms/step':>9}{'us each':>9}  name"]
    for name, (count, total) in sorted(totals.items(), key=lambda item: -item[1][1])[:rows]:
        lines.append(f"{count / steps:>9.1f}{total / steps / 1000:>9.3f}{total / count:>9.1f}  {name[:110]}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, nargs="+", default=[64, 512])
    parser.add_argument("--short", type=int, default=8)
    parser.add_argument("--long", type=int, default=72)
    parser.add_argument("--n", type=int, default=N_ROLLOUTS)
    parser.add_argument("--model", choices=("3b", "tiny"), default="3b")
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--trace", type=Path, help="with --profile: write each profile's Chrome trace into this folder")
    args = parser.parse_args()
    gpu = torch.cuda.is_available()
    with model_directory(args.model) as model_dir:
        engines: dict[bool, HFRollout] = {}
        print(f"device: {torch.cuda.get_device_name(0) if gpu else 'cpu'}, torch {torch.__version__}", flush=True)
        for frames in args.frames:
            prompts = make_prompts(model_dir, frames)
            tokens = int(prompts.tensors["attention_mask"].sum())
            per_step = {}
            for path in args.paths:
                engine = engine_for(engines, path, model_dir, gpu)
                timed_generate(engine, prompts, 4, args.n)  # warm-up at this size
                (short, short_decoding, short_steps), (_, long_decoding, long_steps) = (
                    timed_generate(engine, prompts, count, args.n) for count in (args.short, args.long))
                if long_steps <= short_steps:
                    raise SystemExit(f"frames {frames}, {path}: every sample stopped within {long_steps} tokens; "
                                     "no decoding steps to time (raise --long or change the model's seed)")
                per_step[path] = (long_decoding - short_decoding) / (long_steps - short_steps) * 1000
                print(f"frames {frames}: prompt {tokens} tokens, n={args.n}, {path}: {per_step[path]:.2f} ms per "
                      f"decoding step ({short_steps} tokens in {short:.2f} s, {short_decoding:.2f} s of it after "
                      f"the prefill; {long_steps} in the long call)", flush=True)
                if args.profile:
                    from torch.profiler import ProfilerActivity, profile

                    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
                    profiler = profile(activities=activities)
                    _, _, decoded = timed_generate(engine, prompts, args.long, args.n, profiler)
                    # The first token comes from the prefill's logits: decoded - 1 decoding steps were profiled.
                    print(f"frames {frames}, {path}, profile:\n{kernel_summary(profiler.events(), decoded - 1, gpu)}",
                          flush=True)
                    if args.trace:
                        args.trace.mkdir(parents=True, exist_ok=True)
                        profiler.export_chrome_trace(str(args.trace / f"decode_{frames}_{path}.json"))
            ratios = [f"eager / {path} {per_step['eager'] / per_step[path]:.2f}x" for path in per_step
                      if path != "eager" and "eager" in per_step]
            if ratios:
                print(f"frames {frames}: time per step, {', '.join(ratios)}", flush=True)


if __name__ == "__main__":
    main()
