"""The CoT-SFT worker: the policy alone (no rollout engine, no reference), trained on reasoning targets.

Batches arrive as prompt + target in the rollout layout (``longrl.sft.batch``), so the update is the actor's own
mini-/micro-batched step with MR-SP (sharded video encoding, sequence-parallel prefill) and the same FSDP
checkpoints: the RL stage starts from the merged SFT checkpoint without any conversion.
"""

from __future__ import annotations

from longrl.controller import Dispatch, register
from longrl.protocol import Batch
from longrl.workers.policy_worker import PolicyWorker


class SFTWorker(PolicyWorker):
    @register(Dispatch.DP_COMPUTE)
    def train_step(self, batch: Batch) -> dict[str, float]:
        """One SFT step on this rank's share: the loss, grad norm and lr, plus the vision-tower work (``mrsp/*``)."""
        return {**self.actor.update_supervised(batch, self.dp_size), **self.tower_metrics(self.actor)}

    @register(Dispatch.DP_COMPUTE)
    def validation_loss(self, batch: Batch) -> dict[str, float]:
        """The SFT loss of this rank's share of a validation batch, without training.

        Its vision-tower work is not counted in the next training step's ``mrsp/*``."""
        counted = len(self.actor.encoded_slices)
        try:
            return self.actor.supervised_loss(batch)
        finally:
            del self.actor.encoded_slices[counted:]
