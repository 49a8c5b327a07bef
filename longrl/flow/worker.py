"""The Flow-GRPO worker: one rank of a generator trained through the Ray controller, like the text stages' workers.

Each rank loads the pipeline directory's transformer (optionally with LoRA adapters) and shards it with FSDP over the
default process group, holds the reference for the KL (the base under the adapters, or a frozen sharded copy; none
when ``algorithm.kl_coef`` is 0), the frozen text encoder(s) and the media decoder (the frozen VAE, or pixel space).
The trainer calls it through a :class:`~longrl.controller.worker_group.RayWorkerGroup`: ``generate`` and
``update_actor`` get this rank's share of the rows (``DP_COMPUTE``); checkpoints are written by every rank (sharded
DCP) into the directory the trainer's checkpoint manager opened, and restore the run exactly.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from longrl.controller import Dispatch, Worker, register
from longrl.flow.config import FlowRootConfig
from longrl.flow.families import family_of
from longrl.flow.media import MediaDecoder
from longrl.flow.policy import FlowPolicy
from longrl.flow.text import TextEncoder
from longrl.models.lora import add_lora
from longrl.plain_pt import load_dcp_metadata, load_plain, save_plain
from longrl.protocol import Batch
from longrl.workers.actor import build_optimizer
from longrl.workers.fsdp import shard_model


class FlowWorker(Worker):
    def __init__(self, cfg: FlowRootConfig, total_steps: int):
        super().__init__()
        self.cfg = cfg
        self.init_distributed(cfg.trainer.collective_timeout_s)
        device = self.device()
        actor = cfg.worker.actor
        path = Path(actor.model.model_path)
        self.flow = family_of(path)
        self.lora = actor.lora.rank > 0
        self.model = self.flow.load(path / "transformer")
        if self.lora:  # the adapters' random init is seeded: every rank and every run starts from the same one
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(cfg.worker.rollout.seed)
                add_lora(self.model, actor.lora.rank, actor.lora.alpha, actor.lora.target_modules)
        if actor.model.enable_gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        shard_model(self.model.to(device), actor.fsdp, actor.offload, device)
        reference: torch.nn.Module | str | None = None
        if cfg.algorithm.kl_coef > 0:
            reference = "lora" if self.lora else self._frozen_reference(path, device)
        encoder_dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        text = TextEncoder(self.flow.family, path, device, self.flow.text_dims(self.model)[0],
                           actor.model.max_text_length, encoder_dtype)
        decoder = MediaDecoder(self.flow, path, self.model, device)  # the VAE decodes in float32 (as Flow-GRPO's)
        self.optimizer, self.scheduler = build_optimizer(self.model, actor.optim, total_steps)
        self.policy = FlowPolicy(cfg, self.flow, self.model, reference, text, decoder, self.optimizer, device)
        # A LoRA checkpoint holds the adapters only (the base weights are the model directory's), so loading one
        # leaves the frozen weights as loaded.
        self.state_options = StateDictOptions(ignore_frozen_params=self.lora)
        self.load_options = StateDictOptions(ignore_frozen_params=self.lora, strict=not self.lora)

    def _frozen_reference(self, path: Path, device: torch.device) -> torch.nn.Module:
        reference = self.flow.load(path / "transformer").requires_grad_(False)
        shard_model(reference.to(device), self.cfg.worker.ref.fsdp, self.cfg.worker.ref.offload, device)
        return reference

    @register(Dispatch.DP_COMPUTE)
    def generate(self, prompts: Batch, validate: bool = False) -> Batch:
        """Sample each row's ``prompt`` from its ``seed``: SDE trajectories with their per-step log-probs, and the
        media as 8-bit values; validation samples the ODE and returns the media only."""
        eta = 0.0 if validate else self.cfg.worker.rollout.eta
        states, log_probs, media = self.policy.generate(prompts.non_tensors["prompt"], prompts.non_tensors["seed"],
                                                        eta)
        if validate:
            return Batch.from_dict({"media": media})
        return Batch.from_dict({"states": states, "log_probs": log_probs, "media": media})

    @register(Dispatch.DP_COMPUTE)
    def update_actor(self, batch: Batch) -> dict[str, float]:
        """The clipped policy-gradient update on this rank's rows; advances the lr schedule once per step."""
        metrics = self.policy.update(batch, self.world_size)
        metrics["actor/lr"] = self.scheduler.get_last_lr()[0]
        self.scheduler.step()
        return metrics

    @register(Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, directory: str) -> None:
        """``model/`` and (unless ``trainer.save_model_only``) ``optim/`` as sharded DCP (LoRA: the adapters only),
        ``extra.pt`` (the lr schedule) and ``transformer_config.json`` (what the weights are for, with the LoRA
        settings)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        dcp.save(get_model_state_dict(self.model, options=self.state_options), checkpoint_id=str(out / "model"))
        if not self.cfg.trainer.save_model_only:
            dcp.save(get_optimizer_state_dict(self.model, self.optimizer, options=self.state_options),
                     checkpoint_id=str(out / "optim"))
        if dist.get_rank() == 0:
            save_plain({"lr_scheduler": self.scheduler.state_dict()}, out / "extra.pt")
            lora = self.cfg.worker.actor.lora
            info = {"transformer": dict(self.model.config), "model_path": str(self.cfg.worker.actor.model.model_path),
                    "lora": {"rank": lora.rank, "alpha": lora.alpha, "target_modules": list(lora.target_modules)}
                    if self.lora else None}
            (out / "transformer_config.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
        dist.barrier()

    @register(Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, directory: str) -> None:
        path = Path(directory)
        model_state = get_model_state_dict(self.model, options=self.state_options)
        load_dcp_metadata(path / "model")  # refuses a crafted one before DCP unpickles it unrestricted
        dcp.load(model_state, checkpoint_id=str(path / "model"))
        set_model_state_dict(self.model, model_state, options=self.load_options)
        if (path / "optim").is_dir():  # else a model-only checkpoint: the optimizer starts fresh (the driver logs it)
            optim_state = get_optimizer_state_dict(self.model, self.optimizer, options=self.state_options)
            load_dcp_metadata(path / "optim")
            dcp.load(optim_state, checkpoint_id=str(path / "optim"))
            set_optimizer_state_dict(self.model, self.optimizer, optim_state, options=self.load_options)
        self.scheduler.load_state_dict(load_plain(path / "extra.pt")["lr_scheduler"])
