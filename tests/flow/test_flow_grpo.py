"""The Flow-GRPO pieces on one process: group advantages, the per-step loss against a hand computation, classifier-free
guidance, and the policy's update with LoRA (only the adapters move; the reference is the base)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from longrl.config.loader import load_config
from longrl.flow.families import family_of
from longrl.flow.grpo import Guidance, group_advantages, guided_velocity, step_loss
from longrl.flow.media import MediaDecoder
from longrl.flow.policy import FlowPolicy
from longrl.flow.sde import sde_step
from longrl.flow.text import TextEncoder
from longrl.flow.validate import FLOW_SCHEMA
from longrl.models.lora import add_lora, adapters_disabled
from longrl.protocol import Batch

CPU = torch.device("cpu")


def test_group_advantages_normalise_within_each_prompt():
    scores = torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0, 0.0, 10.0])
    uids = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    advantages = group_advantages(scores, uids, clip=None)
    assert torch.allclose(advantages[:3], torch.tensor([-1.0, 0.0, 1.0]), atol=1e-5)  # std (Bessel) of 1,2,3 is 1
    assert torch.equal(advantages[3:6], torch.zeros(3))  # a group of equal scores teaches nothing
    assert torch.allclose(advantages[6:], torch.tensor([-0.7071, 0.7071]), atol=1e-4)
    assert torch.allclose(group_advantages(scores, uids, norm_by_std=False)[:3], torch.tensor([-1.0, 0.0, 1.0]))
    assert group_advantages(torch.tensor([0.0, 0.0, 0.0, 100.0]), np.zeros(4), clip=0.5).max() == 0.5


def test_step_loss_is_ppo_clip_plus_the_gaussian_kl():
    generator = torch.Generator().manual_seed(0)
    state, taken = torch.randn(4, 3, 2, 2, generator=generator), torch.randn(4, 3, 2, 2, generator=generator)
    v_new, v_ref = torch.randn(4, 3, 2, 2, generator=generator), torch.randn(4, 3, 2, 2, generator=generator)
    sigma, sigma_next = torch.tensor([0.9, 0.7, 0.5, 0.3]), torch.tensor([0.7, 0.5, 0.3, 0.1])
    old = torch.tensor([-1.0, -2.0, -1.5, -0.5])
    advantages = torch.tensor([1.0, -1.0, 2.0, -0.5])
    loss, metrics = step_loss(lambda *_: v_new, lambda *_: v_ref, None, state, taken, sigma, sigma_next, old,
                              advantages, eta=0.7, clip_low=0.2, clip_high=0.2, kl_coef=0.1)
    new = sde_step(v_new, state, sigma, sigma_next, 0.7, taken=taken)
    ref = sde_step(v_ref, state, sigma, sigma_next, 0.7, taken=taken)
    ratio = torch.exp(new.log_prob - old)
    pg = torch.maximum(-advantages * ratio, -advantages * ratio.clamp(0.8, 1.2)).mean()
    kl = ((new.mean - ref.mean) ** 2 / (2 * new.std**2)).flatten(1).mean(1).mean()
    assert float(loss) == pytest.approx(float(pg + 0.1 * kl), rel=1e-5)
    assert metrics["actor/kl_loss"] == pytest.approx(float(kl), rel=1e-5)


def test_guidance_mixes_the_conditional_and_empty_prompt_velocities(tiny_pipeline):
    model_dir = tiny_pipeline("sd3")
    flow = family_of(model_dir)
    model = flow.load(model_dir / "transformer").eval()
    encoder = TextEncoder("sd3", model_dir, CPU, 16)
    text, negative = encoder.encode(["a red car", "a blue cup"]), encoder.encode([""])
    latents = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    sigma = torch.tensor(0.6)
    with torch.no_grad():
        guided = guided_velocity(flow, model, latents, sigma, text, Guidance(negative, 4.5))
        cond = flow.velocity(model, latents, sigma, text)
        uncond = flow.velocity(model, latents, sigma, encoder.encode(["", ""]))
    assert torch.allclose(guided, uncond + 4.5 * (cond - uncond), atol=1e-5)


def test_lora_update_moves_only_the_adapters_and_the_reference_is_the_base(tiny_pipeline, prompt_file):
    """FlowPolicy on one process (no FSDP): sample, then one update with a KL term to the base. The base weights do
    not move, the adapters do, and the reference velocity equals the untouched model's."""
    model_dir = tiny_pipeline("sd3")
    cfg = load_config([f"data.train_files={prompt_file}", f"worker.actor.model.model_path={model_dir}",
                       "worker.rollout.n=2", "worker.rollout.num_steps=3", "worker.rollout.height=8",
                       "worker.rollout.width=8", "data.rollout_batch_size=2", "worker.actor.global_batch_size=2",
                       "worker.actor.micro_batch_size_per_device_for_update=2", "worker.rollout.guidance_scale=2.0",
                       "worker.actor.lora.rank=4"], config_name="flow", schema=FLOW_SCHEMA)
    flow = family_of(model_dir)
    base = flow.load(model_dir / "transformer")
    model = copy.deepcopy(base)
    torch.manual_seed(0)
    add_lora(model, 4, 8.0, ["to_q", "to_k", "to_v", "to_out.0"])
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    policy = FlowPolicy(cfg, flow, model, "lora", TextEncoder("sd3", model_dir, CPU, 16),
                        MediaDecoder(flow, model_dir, model, CPU), optimizer, CPU)
    prompts = ["a red car", "a red car", "a blue cup", "a blue cup"]
    states, log_probs, media = policy.generate(prompts, [1, 2, 3, 4], eta=0.7)
    assert states.shape == (4, 4, 3, 8, 8) and log_probs.shape == (4, 3)
    assert media.dtype == torch.uint8 and media.shape == (4, 3, 8, 8)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    batch = Batch.from_dict({"states": states, "log_probs": log_probs, "advantages": advantages,
                             "train_steps": torch.tensor([[0, 2]] * 4)}, {"prompt": prompts})
    metrics = policy.update(batch, data_parallel_size=1)
    assert metrics["actor/ppo_kl"] == pytest.approx(0.0, abs=1e-6) and metrics["actor/grad_norm"] > 0
    moved = {name for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert moved and all("lora_" in name for name in moved)
    text = policy.text_encoder.encode(["a red car"])
    latents, sigma = states[:1, 1], policy.sigmas[1]
    with torch.no_grad():
        reference = policy.reference(latents, sigma, text)
        plain = guided_velocity(flow, base, latents, sigma, text, policy.guidance)
        trained = policy.velocity(latents, sigma, text)
        with adapters_disabled(model):
            assert torch.allclose(policy.velocity(latents, sigma, text), plain, atol=1e-6)
    assert torch.allclose(reference, plain, atol=1e-6)
    assert not torch.allclose(trained, plain, atol=1e-6)
