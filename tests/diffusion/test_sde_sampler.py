"""The Flow-GRPO SDE sampler: right marginals, exact per-step log-densities, the same log-probs when re-scored,
on tiny random SD3 and Wan transformers."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

from longrl.diffusion import FLOW_FAMILIES, TextConditioning, flow_sigmas, sde_step


def test_one_sde_step_keeps_the_flow_marginals():
    """For data that is a single point x0 the exact velocity is (x - x0) / s. From x_s ~ N((1-s) x0, s^2), one SDE
    step must land on N((1-s') x0, s'^2), whatever eta: the drift correction is what makes that true."""
    generator = torch.Generator().manual_seed(0)
    x0 = torch.tensor([2.0, -1.0])
    s, s_next = 0.6, 0.59  # a small step: Euler-Maruyama's variance error is O(g^2 ds^2 / s)
    x = (1 - s) * x0 + s * torch.randn(400_000, 2, generator=generator)
    for eta in (0.0, 0.5, 1.0):
        step = sde_step((x - x0) / s, x, s, s_next, eta, generator=generator)
        assert torch.allclose(step.sample.mean(0), (1 - s_next) * x0, atol=5e-3), eta
        assert torch.allclose(step.sample.std(0), torch.full((2,), s_next), atol=3e-3), eta


def test_the_ode_limit_is_the_euler_step():
    x, v = torch.randn(3, 4), torch.randn(3, 4)
    assert torch.allclose(sde_step(v, x, 0.8, 0.6, eta=0.0).sample, x + (0.6 - 0.8) * v)
    with pytest.raises(ValueError, match="lower the noise level"):
        sde_step(v, x, 0.5, 0.6, eta=1.0)


@pytest.mark.parametrize("family,frames", [("sd3", 1), ("wan", 3)])
def test_trajectory_log_probs_are_gaussian_log_densities_and_rescore_exactly(tmp_path, family, frames):
    flow = FLOW_FAMILIES[family]
    model = flow.load(flow.build_tiny(tmp_path / family, seed=1)).eval()
    tokens_dim, pooled_dim = flow.text_dims(model)
    generator = torch.Generator().manual_seed(7)
    text = TextConditioning(torch.randn(2, 5, tokens_dim, generator=generator),
                            torch.randn(2, pooled_dim, generator=generator) if pooled_dim else None)
    latents = torch.randn(flow.latent_shape(model, 2, frames, 8, 8), generator=generator)
    sigmas = flow_sigmas(4, shift=3.0)
    trajectory = []
    with torch.no_grad():
        for s, s_next in zip(sigmas[:-1], sigmas[1:]):
            velocity = flow.velocity(model, latents, s, text)
            step = sde_step(velocity, latents, s, s_next, eta=0.7, generator=generator)
            # Independent density: torch's Normal over every element, averaged per sample.
            expected = Normal(step.mean, step.std).log_prob(step.sample).flatten(1).mean(1)
            assert torch.allclose(step.log_prob, expected, atol=1e-5), (family, float(s))
            trajectory.append((latents, s, s_next, step))
            latents = step.sample
        # The update scores stored transitions again: same model, same log-probs.
        for before, s, s_next, step in trajectory:
            again = sde_step(flow.velocity(model, before, s, text), before, s, s_next, eta=0.7, taken=step.sample)
            assert torch.allclose(again.log_prob, step.log_prob, atol=1e-6)
    assert torch.isfinite(latents).all() and latents.shape == flow.latent_shape(model, 2, frames, 8, 8)
