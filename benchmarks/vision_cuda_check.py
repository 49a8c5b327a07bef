"""CUDA check of the towers' varlen attention (``longrl.models.vision_attention``) on the Qwen2.5-VL-3B vision tower.

Random bf16 weights (neither the cost nor the agreement depends on their values) over one video of ``--frames``
frames of 448 x 448 pixels (per temporal patch: 16 windows of 64 patches, one frame of 1024): the tower with stock
"sdpa" (one SDPA call per window or frame in every layer) against the varlen attention (one varlen flash call per
layer). Checks that the kernel runs once per layer; that at ``--frames`` the two bf16 results differ by bf16
rounding, not by a wrong chunking; that on a shorter video (``--check-frames``) the varlen result is as close to
the same tower in float32 (stock attention: the reference) as stock bf16 is; and that the pixels' gradients agree on
``--grad-frames`` (the kernel's backward). Times a forward of each (CUDA events, one warm-up, median of 3) and prints
the ratio. Exits 1 when a check failed, after writing ``--out``.

    USE_HUB_KERNELS=NO HF_HUB_OFFLINE=1 python benchmarks/vision_cuda_check.py --frames 64 --out vision.json
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import longrl  # noqa: F401  (before torchvision: the CPU shim)
import torch
import transformers
from transformers import Qwen2_5_VLConfig
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

from longrl.models import vision_attention
from longrl.models.vision_attention import ATTENTION_NAME, takes_varlen_kernel
from cuda_timing import median_ms
from qwen2_5_vl_3b import VISION_3B

SIDE = 448
# Largest relative difference (Frobenius norms) between the two attentions' results in bf16 after 32 random layers
# (measured on an H100 at 512 frames: 2.2e-2); a wrong chunking or layout gives differences of order one.
FEATURES_TOLERANCE = 1e-1
# The varlen bf16 result's distance to the float32 reference, at most this many times stock bf16's (plus a floor).
ACCURACY_RATIO, ACCURACY_FLOOR = 1.25, 1e-3
# Gradients pass the 32 layers twice and the kernel's backward accumulates in a nondeterministic order.
GRADIENT_TOLERANCE = 5e-2


def build_tower() -> Qwen2_5_VisionTransformerPretrainedModel:
    torch.manual_seed(0)
    with torch.device("cuda"):
        tower = Qwen2_5_VisionTransformerPretrainedModel(Qwen2_5_VLConfig(vision_config=VISION_3B).vision_config)
    return tower.to(torch.bfloat16).eval()


def video(tower: Qwen2_5_VisionTransformerPretrainedModel, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random patches of a ``frames``-frame video and its grid, as the processor lays them out."""
    config = tower.config
    side = SIDE // config.patch_size
    grid = torch.tensor([[-(-frames // config.temporal_patch_size), side, side]], device="cuda")
    patch = config.in_channels * config.temporal_patch_size * config.patch_size**2
    generator = torch.Generator("cuda").manual_seed(frames)
    pixels = torch.randn(int(grid.prod()), patch, device="cuda", generator=generator, dtype=torch.bfloat16)
    return pixels, grid


def features(tower: Qwen2_5_VisionTransformerPretrainedModel, implementation: str, pixels: torch.Tensor,
             grid: torch.Tensor) -> torch.Tensor:
    tower.config._attn_implementation = implementation
    return tower(pixels, grid_thw=grid).pooler_output


def reference_errors(tower: Qwen2_5_VisionTransformerPretrainedModel, frames: int) -> dict[str, float]:
    """Each bf16 attention's relative distance to the same weights and pixels in float32 with stock attention."""
    pixels, grid = video(tower, frames)
    reference = copy.deepcopy(tower).float()
    with torch.no_grad():
        want = features(reference, "sdpa", pixels.float(), grid)
        del reference
        return {name: relative_difference(features(tower, implementation, pixels, grid), want)
                for name, implementation in (("stock", "sdpa"), ("varlen", ATTENTION_NAME))}


def relative_difference(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got.float() - want.float()).norm() / want.float().norm())


def pixel_gradient(tower: Qwen2_5_VisionTransformerPretrainedModel, implementation: str, pixels: torch.Tensor,
                   grid: torch.Tensor) -> torch.Tensor:
    """The pixels' gradient of a fixed random projection of the features."""
    pixels = pixels.detach().requires_grad_()
    out = features(tower, implementation, pixels, grid)
    projection = torch.randn(out.shape, device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    (out.float() * projection).sum().backward()
    return pixels.grad


@contextmanager
def counted_kernel_calls() -> Iterator[list[int]]:
    """The number of chunks of each varlen kernel call inside the block."""
    calls: list[int] = []
    kernel = vision_attention.varlen_attn

    def counted(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(len(args[3]) - 1)
        return kernel(*args, **kwargs)

    vision_attention.varlen_attn = counted
    try:
        yield calls
    finally:
        vision_attention.varlen_attn = kernel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--check-frames", type=int, default=64)
    parser.add_argument("--grad-frames", type=int, default=8)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    assert torch.cuda.is_available(), "needs a GPU"

    tower = build_tower()
    config = tower.config
    head_dim = config.hidden_size // config.num_heads
    record: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                              "transformers": transformers.__version__, "frames": args.frames, "side": SIDE}
    checks: dict[str, bool] = {"kernel_chosen": takes_varlen_kernel(torch.device("cuda"), torch.bfloat16, head_dim)}

    pixels, grid = video(tower, args.frames)
    with torch.no_grad():
        stock = features(tower, "sdpa", pixels, grid)
        with counted_kernel_calls() as calls:
            varlen = features(tower, ATTENTION_NAME, pixels, grid)
    windows = (SIDE // config.window_size) ** 2 * int(grid[0, 0])
    record.update(tokens=pixels.shape[0], windows=windows, kernel_calls=len(calls), chunks_per_call=sorted(set(calls)),
                  max_abs_diff=float((varlen.float() - stock.float()).abs().max()),
                  rel_diff=relative_difference(varlen, stock))
    checks["one_kernel_call_per_layer"] = len(calls) == config.depth
    checks["features_agree"] = record["rel_diff"] <= FEATURES_TOLERANCE
    del stock, varlen

    errors = reference_errors(tower, args.check_frames)
    record.update(check_frames=args.check_frames, stock_error=errors["stock"], varlen_error=errors["varlen"])
    checks["as_accurate_as_stock"] = errors["varlen"] <= ACCURACY_RATIO * errors["stock"] + ACCURACY_FLOOR

    small, small_grid = video(tower, args.grad_frames)
    record["grad_frames"] = args.grad_frames
    record["grad_rel_diff"] = relative_difference(pixel_gradient(tower, ATTENTION_NAME, small, small_grid),
                                                  pixel_gradient(tower, "sdpa", small, small_grid))
    checks["gradients_agree"] = record["grad_rel_diff"] <= GRADIENT_TOLERANCE

    with torch.no_grad():
        for implementation, key in (("sdpa", "sdpa_ms"), (ATTENTION_NAME, "varlen_ms")):
            record[key] = median_ms(functools.partial(features, tower, implementation, pixels, grid))
    record["speedup"] = record["sdpa_ms"] / record["varlen_ms"]
    record["checks"] = checks

    print(f"{record['device']}, torch {record['torch']}, transformers {record['transformers']}")
    print(f"{args.frames} frames of {SIDE} px: {record['tokens']} patches, {windows} windows; kernel calls per pass "
          f"{record['kernel_calls']} (chunks per call {record['chunks_per_call']})")
    print(f"features: max abs diff {record['max_abs_diff']:.3e}, relative {record['rel_diff']:.3e} "
          f"(tolerance {FEATURES_TOLERANCE}); pixel gradients at {args.grad_frames} frames: relative "
          f"{record['grad_rel_diff']:.3e} (tolerance {GRADIENT_TOLERANCE})")
    print(f"against float32 at {args.check_frames} frames: stock bf16 {errors['stock']:.3e}, varlen bf16 "
          f"{errors['varlen']:.3e} (at most {ACCURACY_RATIO}x stock + {ACCURACY_FLOOR})")
    print(f"tower forward: sdpa {record['sdpa_ms']:.1f} ms, varlen {record['varlen_ms']:.1f} ms, "
          f"speedup {record['speedup']:.2f}x")
    for name, ok in checks.items():
        print(("ok     " if ok else "FAILED ") + name)
    if args.out:
        with open(args.out, "w") as file:
            json.dump(record, file, indent=2)
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
