"""The hybrid worker: actor, reference and rollout colocated in one process per device (verl's hybrid engine).

The trainer calls it through a worker group: data-parallel methods receive their rank's share of the batch and
return their part of the result; the controller pads, splits and concatenates. Rollout sampling is seeded from
(``worker.rollout.seed``, step, data-parallel rank), so a resumed run draws the same samples without having to
checkpoint each worker's random state.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import GenerationConfig

from longrl.config.schema import RootConfig
from longrl.controller import Dispatch, Worker, register
from longrl.models.registry import adapter_for_model_dir
from longrl.protocol import Batch
from longrl.workers.actor import PolicyModel
from longrl.workers.rollout.sampling import SamplingParams
from longrl.workers.rollout.hf import HFRollout


def needs_reference(cfg: RootConfig) -> bool:
    """A reference policy is loaded only when a KL term (loss or reward penalty) will use it."""
    return not cfg.algorithm.disable_kl and (cfg.algorithm.use_kl_loss or cfg.algorithm.kl_coef > 0)


class HybridWorker(Worker):
    def __init__(self, cfg: RootConfig, total_steps: int):
        super().__init__()
        if cfg.worker.actor.ulysses_size != 1:
            raise NotImplementedError("worker.actor.ulysses_size > 1 (MR-SP) is not available yet; use 1")
        if cfg.worker.rollout.name != "hf":
            raise NotImplementedError(f"worker.rollout.name={cfg.worker.rollout.name!r} is not available yet; use hf")
        self.cfg = cfg
        self.init_distributed()
        device = self.device()
        model_path = cfg.worker.actor.model.model_path
        self.adapter = adapter_for_model_dir(model_path)
        self.processor = self.adapter.load_processor(model_path)
        actor = cfg.worker.actor
        self.actor = PolicyModel(cfg, self.adapter, device, actor.fsdp, actor.offload, trainable=True,
                                 total_steps=total_steps)
        self.ref = (PolicyModel(cfg, self.adapter, device, cfg.worker.ref.fsdp, cfg.worker.ref.offload,
                                trainable=False) if needs_reference(cfg) else None)
        self.rollout = HFRollout(model_path, dtype=torch.float32 if device.type == "cpu" else torch.bfloat16,
                                 device=device)
        self.dp_size = self.world_size // actor.ulysses_size
        tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.pad_token_id = tokenizer.pad_token_id
        stop = GenerationConfig.from_pretrained(model_path).eos_token_id or tokenizer.eos_token_id
        self.eos_token_ids = [stop] if isinstance(stop, int) else list(stop)

    def _sampling(self, step: int, validate: bool) -> SamplingParams:
        rollout = self.cfg.worker.rollout
        params = SamplingParams.from_config(rollout, max_new_tokens=self.cfg.data.max_response_length,
                                            eos_token_ids=self.eos_token_ids, pad_token_id=self.pad_token_id,
                                            validation=validate)
        dp_rank = self.rank // self.cfg.worker.actor.ulysses_size
        return params.with_overrides({"seed": rollout.seed * 1_000_003 + step * 1_009 + dp_rank})

    @register(Dispatch.DP_COMPUTE)
    def generate(self, prompts: Batch, step: int, validate: bool = False) -> Batch:
        return self.rollout.generate(prompts, self._sampling(step, validate))

    @register(Dispatch.DP_COMPUTE)
    def compute_log_prob(self, batch: Batch) -> Batch:
        scores = self.actor.compute_log_prob(batch, with_entropy=True)
        return Batch.from_dict({"old_log_probs": scores.tensors["log_probs"], "entropy": scores.tensors["entropy"]})

    @register(Dispatch.DP_COMPUTE)
    def compute_ref_log_prob(self, batch: Batch) -> Batch:
        scores = self.ref.compute_log_prob(batch)
        return Batch.from_dict({"ref_log_probs": scores.tensors["log_probs"]})

    @register(Dispatch.DP_COMPUTE)
    def update_actor(self, batch: Batch) -> dict[str, float]:
        return self.actor.update_policy(batch, self.dp_size)

    @register(Dispatch.ONE_TO_ALL)
    def sync_rollout_weights(self) -> None:
        """Push the updated actor weights into the rollout engine (no disk round trip)."""
        self.rollout.load_weights(self.actor.full_state_dict())

    @register(Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.actor.save(directory, self.processor)

    @register(Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, directory: str) -> None:
        self.actor.load(directory)
        self.rollout.load_weights(self.actor.full_state_dict())
