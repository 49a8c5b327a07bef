"""What every worker that trains the policy holds: its rank in the MR-SP layout, the model family's adapter and
processor, and the FSDP policy with its checkpoints.

The RL stage's hybrid worker and the CoT-SFT stage's worker both extend it, so the two stages load, shard and
checkpoint the policy the same way: an SFT checkpoint is an RL checkpoint (``actor/`` with DCP ``model/`` and
``optim/`` plus ``huggingface/``), and the merger turns either into a Hugging Face directory.
"""

from __future__ import annotations

from pathlib import Path

from longrl.config.schema import RootConfig
from longrl.controller import Dispatch, Worker, register
from longrl.models.hub_kernels import use_hub_kernels
from longrl.models.registry import adapter_for_model_dir
from longrl.models.run_processor import load_run_processor
from longrl.mrsp import build_sp_groups
from longrl.workers.actor import PolicyModel


class PolicyWorker(Worker):
    """One rank: joins the process group, builds the SP groups and loads the trainable policy."""

    def __init__(self, cfg: RootConfig, total_steps: int):
        super().__init__()
        self.cfg = cfg
        actor = cfg.worker.actor
        self.sp_size = actor.ulysses_size
        self.init_distributed(cfg.trainer.collective_timeout_s)
        self.groups = build_sp_groups(actor.ulysses_size)
        self.dp_size = self.groups.dp_size
        self.model_path = actor.model.model_path
        use_hub_kernels(actor.model.use_hub_kernels)
        self.adapter = adapter_for_model_dir(self.model_path)
        self.processor = load_run_processor(self.adapter, cfg)
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        self.pad_token_id = self.tokenizer.pad_token_id
        self.actor = PolicyModel(actor, self.adapter, self.device(), actor.fsdp, actor.offload, trainable=True,
                                 groups=self.groups, pad_token_id=self.pad_token_id, total_steps=total_steps)

    def tower_metrics(self, *models: PolicyModel | None) -> dict[str, float]:
        """``mrsp/*``: this rank's vision-tower calls and encoded temporal slices since the last read."""
        slices = [count for model in models if model is not None for count in model.read_encoded_slices()]
        return {"mrsp/vision_tower_calls": float(len(slices)), "mrsp/encoded_slices": float(sum(slices))}

    @register(Dispatch.ONE_TO_ALL)
    def save_checkpoint(self, directory: str) -> None:
        Path(directory).mkdir(parents=True, exist_ok=True)
        self.actor.save(directory, self.processor, with_optimizer=not self.cfg.trainer.save_model_only)

    @register(Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, directory: str) -> None:
        self.actor.load(directory)
