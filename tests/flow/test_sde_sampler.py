"""The Flow-GRPO SDE sampler: right marginals, per-step log-probs equal to an independent Gaussian log-density, the
same log-probs when the update re-scores a step (with each sample at its own noise level), on tiny random SD3 and Wan
transformers (the real diffusers classes)."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Normal

from longrl.flow.families import family_of
from longrl.flow.grpo import Guidance, guided_velocity, sample_trajectories
from longrl.flow.sde import flow_sigmas, sde_step
from longrl.flow.text import TextEncoder

ETA = 0.7


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


def _independent_log_prob(x: torch.Tensor, v: torch.Tensor, taken: torch.Tensor, s: float,
                          s_next: float) -> torch.Tensor:
    """Flow-GRPO's step written out on its own: the mean as x and v scaled separately, the noise level at s = 1
    taken at 0.99, and torch's Normal for the density, averaged over each sample's elements."""
    dt = s_next - s
    level = min(s, 0.99)
    g = ETA * (level / (1 - level)) ** 0.5
    mean = x * (1 + g**2 / (2 * s) * dt) + v * (1 + g**2 * (1 - s) / (2 * s)) * dt
    std = g * (-dt) ** 0.5
    return Normal(mean.double(), std).log_prob(taken.double()).flatten(1).mean(1)


@pytest.mark.parametrize("family, frames", [("sd3", 1), ("wan", 3)])
def test_trajectory_log_probs_are_gaussian_log_densities_and_rescore_exactly(tiny_pipeline, family, frames):
    model_dir = tiny_pipeline(family)
    flow = family_of(model_dir)
    model = flow.load(model_dir / "transformer").eval()
    text = TextEncoder(family, model_dir, torch.device("cpu"), flow.text_dims(model)[0]).encode(
        ["a photo of a red car", "a blue dog", "a green apple left of a yellow banana"])
    guidance = Guidance()

    def velocity(latents, sigma, conditioning):
        return guided_velocity(flow, model, latents, sigma, conditioning, guidance)

    sigmas = flow_sigmas(4, shift=3.0)
    shape = flow.latent_shape(model, 1, frames, 8, 8)[1:]
    generators = [torch.Generator().manual_seed(seed) for seed in (11, 12, 13)]
    out = sample_trajectories(velocity, text, sigmas, ETA, generators, shape, torch.device("cpu"))
    assert out.states.shape == (3, 5, *shape) and out.log_probs.shape == (3, 4)
    with torch.no_grad():
        diffs = []
        for t in range(4):
            x, taken = out.states[:, t], out.states[:, t + 1]
            expected = _independent_log_prob(x, velocity(x, sigmas[t], text), taken, float(sigmas[t]),
                                             float(sigmas[t + 1]))
            diffs.append(float((out.log_probs[:, t].double() - expected).abs().max()))
        # The update re-scores stored steps with each sample at its own step (here: steps 3, 0, 2).
        steps = torch.tensor([3, 0, 2])
        rows = torch.arange(3)
        state, taken = out.states[rows, steps], out.states[rows, steps + 1]
        again = sde_step(velocity(state, sigmas[steps], text), state, sigmas[steps], sigmas[steps + 1], ETA,
                         taken=taken)
        rescore = float((again.log_prob - out.log_probs[rows, steps]).abs().max())
    print(f"{family}: |log-prob - Normal log-density| max {max(diffs):.2e}; "
          f"re-scored per-sample steps max {rescore:.2e}")
    assert max(diffs) < 1e-5
    assert rescore < 1e-5
    assert torch.isfinite(out.states).all()


def test_a_sample_does_not_depend_on_its_batch(tiny_pipeline):
    """Sample i draws from its own generator: alone or beside others, the same trajectory (up to float rounding of
    the batched forward), so samples do not depend on how the rows were split over ranks and micro-batches."""
    model_dir = tiny_pipeline("sd3")
    flow = family_of(model_dir)
    model = flow.load(model_dir / "transformer").eval()
    encoder = TextEncoder("sd3", model_dir, torch.device("cpu"), flow.text_dims(model)[0])
    guidance = Guidance()

    def velocity(latents, sigma, conditioning):
        return guided_velocity(flow, model, latents, sigma, conditioning, guidance)

    sigmas, shape = flow_sigmas(4, 3.0), (3, 8, 8)
    both = sample_trajectories(velocity, encoder.encode(["a red car", "a blue dog"]), sigmas, ETA,
                               [torch.Generator().manual_seed(s) for s in (5, 6)], shape, torch.device("cpu"))
    alone = sample_trajectories(velocity, encoder.encode(["a blue dog"]), sigmas, ETA,
                                [torch.Generator().manual_seed(6)], shape, torch.device("cpu"))
    assert torch.allclose(both.states[1], alone.states[0], atol=1e-5)
    assert torch.allclose(both.log_probs[1], alone.log_probs[0], atol=1e-5)
