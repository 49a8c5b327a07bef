"""worker.actor.optim.strategy (adamw_bf16 keeps AdamW's moments in bfloat16 and steps as AdamW does from them), the
optimizer offload's mover and the FSDP buffer dtype."""

from __future__ import annotations

import pytest
import torch

from longrl.models import get_adapter
from longrl.workers.fsdp import cast_floating_buffers
from longrl.workers.optimizers import AdamWBF16, make_optimizer, move_optimizer_state

LR, BETAS, EPS, DECAY = 1e-2, (0.9, 0.999), 1e-8, 0.1


def _reference(weights: torch.Tensor, grads: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AdamW written out in float64, with each moment rounded to bfloat16 after its update."""
    m = torch.zeros_like(weights, dtype=torch.float64)
    v = torch.zeros_like(m)
    w = weights.double()
    for step, grad in enumerate(grads, start=1):
        g = grad.double()
        m = (BETAS[0] * m + (1 - BETAS[0]) * g).to(torch.bfloat16).double()
        v = (BETAS[1] * v + (1 - BETAS[1]) * g * g).to(torch.bfloat16).double()
        m_hat, v_hat = m / (1 - BETAS[0] ** step), v / (1 - BETAS[1] ** step)
        w = w * (1 - LR * DECAY) - LR * m_hat / (v_hat.sqrt() + EPS)
    return w, m, v


def test_adamw_bf16_keeps_bf16_moments_and_matches_the_written_out_steps():
    generator = torch.Generator().manual_seed(0)
    weights = torch.randn(64, generator=generator)
    grads = [torch.randn(64, generator=generator) * scale for scale in (1.0, 0.01, 3.0)]
    param = torch.nn.Parameter(weights.clone())
    optimizer = make_optimizer([param], "adamw_bf16", LR, BETAS, DECAY)
    assert isinstance(optimizer, AdamWBF16)
    for grad in grads:
        param.grad = grad.clone()
        optimizer.step()
    state = optimizer.state[param]
    assert state["exp_avg"].dtype == state["exp_avg_sq"].dtype == torch.bfloat16 and "compensation" not in state
    expected, m, v = _reference(weights, grads)
    assert torch.equal(state["exp_avg"].double(), m) and torch.equal(state["exp_avg_sq"].double(), v)
    assert torch.allclose(param.double(), expected, atol=1e-6)
    # The same steps by torch's float32 AdamW differ only by the moments' rounding.
    fp32 = torch.nn.Parameter(weights.clone())
    reference = make_optimizer([fp32], "adamw", LR, BETAS, DECAY)
    for grad in grads:
        fp32.grad = grad.clone()
        reference.step()
    assert torch.allclose(param, fp32, atol=3e-4) and not torch.equal(param, fp32)


def test_bf16_weights_keep_updates_smaller_than_their_rounding():
    """A weight of 1.0 in bf16 has a spacing of 2**-7; steps of 1e-3 each vanish without compensation but add up
    with it."""
    param = torch.nn.Parameter(torch.ones(4, dtype=torch.bfloat16))
    optimizer = AdamWBF16([param], lr=1e-3, betas=BETAS)
    for _ in range(20):
        param.grad = torch.ones(4, dtype=torch.bfloat16)  # Adam's step is ~lr whatever the gradient's size
        optimizer.step()
    assert optimizer.state[param]["compensation"].dtype == torch.bfloat16
    total = param.float() + optimizer.state[param]["compensation"].float()
    assert torch.allclose(total, torch.full((4,), 1 - 20e-3), atol=2e-4)
    assert param.float().max() < 1.0  # the rounded weights moved too


def test_an_unknown_strategy_names_the_known_ones():
    with pytest.raises(ValueError, match=r"'sgd' is not one of \['adamw', 'adamw_bf16'\]"):
        make_optimizer([torch.nn.Parameter(torch.zeros(1))], "sgd", LR, BETAS, DECAY)


@pytest.mark.parametrize("strategy", ["adamw", "adamw_bf16"])
def test_offloading_moves_every_moment_and_leaves_the_step_counter(strategy):
    """The mover of worker.actor.offload.offload_optimizer, onto a device other than the CPU this suite has: meta."""
    param = torch.nn.Parameter(torch.randn(8, 4))
    optimizer = make_optimizer([param], strategy, LR, BETAS, DECAY)
    param.grad = torch.ones(8, 4)
    optimizer.step()
    move_optimizer_state(optimizer, "meta")
    state = optimizer.state[param]
    assert {key: value.device.type for key, value in state.items()} == {
        "step": "cpu", "exp_avg": "meta", "exp_avg_sq": "meta"}


def test_mp_buffer_dtype_casts_the_floating_buffers_only(tiny_model_dir):
    model = get_adapter("qwen2_5_vl").load_model(tiny_model_dir("qwen2_5_vl"))
    floating = {name for name, buffer in model.named_buffers() if buffer.is_floating_point()}
    others = {name: buffer.clone() for name, buffer in model.named_buffers() if not buffer.is_floating_point()}
    assert floating  # the rotary frequencies
    cast_floating_buffers(model, torch.bfloat16)
    buffers = dict(model.named_buffers())
    assert all(buffers[name].dtype == torch.bfloat16 for name in floating)
    assert all(torch.equal(buffers[name], value) for name, value in others.items())
