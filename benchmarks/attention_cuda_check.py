"""CUDA check of the training attention's packed segments (``longrl.mrsp.varlen``) at the workload's shapes.

One layer's attention of Qwen2.5-VL-3B (16 query heads, 2 key/value heads, head dim 128) in bf16, random inputs, on
two layouts: ``shared``, the scoring passes' row (a 65,565-token prompt once and 8 responses of 512 tokens reading it
as branches), and ``packed``, an update micro-batch packed by tokens (32 samples of 2,048 tokens in one row). Each
runs through the kernel path (every segment a sequence of one varlen flash call) and through the fallback (the same
packed sequences, one SDPA call each, which is what the layer did before), and in float32 with the key/value heads
expanded (the reference). Checks that the kernel path's outputs and its gradients of queries, keys and values are as
close to the reference as the fallback's are (within 1.25x + 1e-3, relative Frobenius norms), and times a forward and
a forward + backward of both (CUDA events, one warm-up, median of 3) side by side. Exits 1 when a check failed,
after writing ``--out``.

    python benchmarks/attention_cuda_check.py --out attention.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import torch

from longrl.mrsp import varlen
from cuda_timing import median_ms

HEADS, KV_HEADS, DIM = 16, 2, 128
LAYOUTS = {
    "shared": ((0, 0, 65_565),) + tuple((0, 65_565 + 512 * i, 65_565 + 512 * (i + 1), 0, 65_565) for i in range(8)),
    "packed": tuple((0, 2_048 * i, 2_048 * (i + 1)) for i in range(32)),
}
ACCURACY_RATIO, ACCURACY_FLOOR = 1.25, 1e-3


@contextmanager
def fallback() -> Iterator[None]:
    """The layer's attention with the kernel path turned off: one SDPA call per sequence."""
    chosen = varlen.takes_flash_kernel
    varlen.takes_flash_kernel = lambda *args: False
    try:
        yield
    finally:
        varlen.takes_flash_kernel = chosen


def inputs(width: int, dtype: torch.dtype) -> list[torch.Tensor]:
    generator = torch.Generator("cuda").manual_seed(width)
    return [torch.randn(1, heads, width, DIM, generator=generator, device="cuda").to(dtype).requires_grad_()
            for heads in (HEADS, KV_HEADS, KV_HEADS)]


def forward_backward(tensors: list[torch.Tensor], segments: tuple, cotangent: torch.Tensor
                     ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    out = varlen.segments_attention(*tensors, segments, scale=None, dropout=0.0)
    return out, torch.autograd.grad(out, tensors, cotangent.to(out.dtype))


def relative(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.detach().float() - want.detach()).norm() / want.detach().norm())


def check_layout(name: str, segments: tuple) -> dict[str, object]:
    width = max(segment[2] for segment in segments)
    bf16 = inputs(width, torch.bfloat16)
    cotangent = torch.randn(1, width, HEADS, DIM, generator=torch.Generator("cuda").manual_seed(1), device="cuda")
    kernel_out, kernel_grads = forward_backward(bf16, segments, cotangent)
    with fallback():
        loop_out, loop_grads = forward_backward(bf16, segments, cotangent)
        # The reference: float32, every query head with its own copy of its key/value head (no GQA path).
        expanded = [x.detach().float().repeat_interleave(HEADS // x.shape[1], dim=1).requires_grad_() for x in bf16]
        reference_out, reference_grads = forward_backward(expanded, segments, cotangent)
    group = HEADS // KV_HEADS
    reference_grads = (reference_grads[0],
                       *(grad.unflatten(1, (KV_HEADS, group)).sum(2) for grad in reference_grads[1:]))
    errors = {}
    for part, kernel, loop, reference in (("output", kernel_out, loop_out, reference_out),
                                          *zip(("query grad", "key grad", "value grad"), kernel_grads, loop_grads,
                                               reference_grads)):
        errors[part] = {"kernel": relative(kernel, reference), "fallback": relative(loop, reference)}
    del expanded, reference_out, reference_grads
    torch.cuda.empty_cache()
    timings = {}
    for path in ("kernel", "fallback"):
        with fallback() if path == "fallback" else nullcontext():
            timings[f"{path}_forward_ms"] = median_ms(
                lambda: varlen.segments_attention(*bf16, segments, scale=None, dropout=0.0))
            timings[f"{path}_forward_backward_ms"] = median_ms(lambda: forward_backward(bf16, segments, cotangent))
    passed = all(values["kernel"] <= ACCURACY_RATIO * values["fallback"] + ACCURACY_FLOOR
                 for values in errors.values())
    print(f"{name}: {len(segments)} segments over {width} positions; relative distance to float32, kernel / "
          f"fallback: " + ", ".join(f"{part} {values['kernel']:.2e} / {values['fallback']:.2e}"
                                    for part, values in errors.items()) + f" -> {'ok' if passed else 'FAILED'}")
    print(f"{name}: forward {timings['kernel_forward_ms']:.1f} ms vs {timings['fallback_forward_ms']:.1f} ms "
          f"({timings['fallback_forward_ms'] / timings['kernel_forward_ms']:.2f}x), forward + backward "
          f"{timings['kernel_forward_backward_ms']:.1f} ms vs {timings['fallback_forward_backward_ms']:.1f} ms "
          f"({timings['fallback_forward_backward_ms'] / timings['kernel_forward_backward_ms']:.2f}x)", flush=True)
    return {"segments": len(segments), "width": width, "errors": errors, "passed": passed, **timings}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layouts", nargs="+", choices=tuple(LAYOUTS), default=list(LAYOUTS))
    parser.add_argument("--out", help="write the results here as JSON")
    args = parser.parse_args()
    kernel = varlen.takes_flash_kernel(torch.device("cuda"), torch.bfloat16, DIM)
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}; flash kernel serves the layer: {kernel}",
          flush=True)
    record = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__, "kernel_chosen": kernel,
              "layouts": {name: check_layout(name, LAYOUTS[name]) for name in args.layouts}}
    if args.out:
        with open(args.out, "w") as file:
            json.dump(record, file, indent=2)
    if not kernel or not all(layout["passed"] for layout in record["layouts"].values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
