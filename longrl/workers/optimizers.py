"""The optimizers ``worker.actor.optim.strategy`` names, as EasyR1 names them: ``adamw`` (torch's AdamW, float32
state for float32 weights) and ``adamw_bf16`` (AdamW with its two moments stored in bfloat16, half the state memory).

``adamw_bf16`` does its arithmetic in float32: each step upcasts the moments, updates them, rounds them back to
bfloat16 and takes the step from the rounded moments. Where the weights themselves are bfloat16, a bfloat16 Kahan
compensation buffer carries the part of each update the weights' rounding dropped, as EasyR1's optimizer does, so
updates far smaller than a weight still add up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch

from longrl.config.choices import OPTIMIZER_STRATEGIES


class AdamWBF16(torch.optim.Optimizer):
    """AdamW (decoupled weight decay, bias-corrected moments) with ``exp_avg`` and ``exp_avg_sq`` in bfloat16."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is not None:
                    self._update(param, group)
        return loss

    def _update(self, param: torch.Tensor, group: dict) -> None:
        state = self.state[param]
        if not state:
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(param, dtype=torch.bfloat16)
            state["exp_avg_sq"] = torch.zeros_like(param, dtype=torch.bfloat16)
            if param.dtype == torch.bfloat16:
                state["compensation"] = torch.zeros_like(param, dtype=torch.bfloat16)
        state["step"] += 1
        step = float(state["step"])
        (beta1, beta2), lr = group["betas"], group["lr"]
        grad = param.grad.float()
        state["exp_avg"].copy_(state["exp_avg"].float().mul_(beta1).add_(grad, alpha=1 - beta1))
        state["exp_avg_sq"].copy_(state["exp_avg_sq"].float().mul_(beta2).addcmul_(grad, grad, value=1 - beta2))
        denom = (state["exp_avg_sq"].float().sqrt() / math.sqrt(1 - beta2 ** step)).add_(group["eps"])
        step_size = lr / (1 - beta1 ** step)
        target = param.float() * (1 - lr * group["weight_decay"]) - step_size * state["exp_avg"].float() / denom
        if "compensation" in state:
            target = target + state["compensation"].float()
            param.copy_(target)
            state["compensation"].copy_(target - param.float())
        else:
            param.copy_(target)


def make_optimizer(params: list[torch.Tensor], strategy: str, lr: float, betas: tuple[float, float],
                   weight_decay: float) -> torch.optim.Optimizer:
    """The ``strategy`` optimizer over ``params``; an unknown strategy is a ValueError listing the known ones."""
    if strategy == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    if strategy == "adamw_bf16":
        return AdamWBF16(params, lr=lr, betas=betas, weight_decay=weight_decay)
    raise ValueError(f"worker.actor.optim.strategy={strategy!r} is not one of {list(OPTIMIZER_STRATEGIES)}")


def move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device | str) -> None:
    """Move ``optimizer``'s per-parameter state (moments, Kahan buffers; FSDP's sharded DTensors included) to
    ``device``, in place: ``worker.actor.offload.offload_optimizer`` parks it on the CPU between updates. Scalar
    state (AdamW's ``step`` counter) stays where the optimizer keeps it."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                state[key] = value.to(device, non_blocking=True)
    if torch.device(device).type == "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()  # the copies have landed before their GPU memory is reused
