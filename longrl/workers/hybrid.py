"""The hybrid worker: actor, reference and rollout colocated in one process per device (verl's hybrid engine).

The trainer calls it through a worker group: data-parallel methods receive their rank's share of the batch and
return their part of the result; the controller pads, splits and concatenates. Rollout sampling is seeded from
(``worker.rollout.seed``, step, data-parallel rank), so a resumed run draws the same samples without having to
checkpoint each worker's random state.

MR-SP: ``worker.actor.ulysses_size`` ranks form one sequence-parallel group that shares a data-parallel share of
every batch (the controller sends it to all of them and keeps rank 0's result). ``generate`` runs stage 1 once per
prompt on the actor's tower (frames split over the group) and the features travel with the rollout rows; with a
frozen tower the pixels are then dropped from the rows, since no later pass needs them. The ranks of a group
split each prompt's samples between them and all-gather the result (``rollout/group_split.py``): every rank ends
with the samples one rank would have drawn alone.
"""

from __future__ import annotations

from longrl.config.schema import RootConfig
from longrl.controller import Dispatch, register
from longrl.embeds.cache import cache_root, write_back
from longrl.embeds.store import EmbeddingStore
from longrl.models.lora import adapters_disabled
from longrl.protocol import EMBED_ENTRY, ENTROPY, OLD_LOG_PROBS, REF_LOG_PROBS, TIMESTAMPS, VISION_INPUTS, Batch
from longrl.workers.actor import PolicyModel
from longrl.workers.cuda_allocator import prefer_expandable_segments
from longrl.workers.policy_worker import PolicyWorker
from longrl.workers.rollout.engines import build_rollout_engine, engine_dtype
from longrl.workers.rollout.group_split import generate_over_group
from longrl.workers.rollout.sampling import SamplingParams
from longrl.workers.vision_inputs import VIDEO_EMBEDS, without_pixels


def needs_reference(cfg: RootConfig) -> bool:
    """A reference policy is loaded only when a KL term (loss or reward penalty) will use it."""
    return not cfg.algorithm.disable_kl and (cfg.algorithm.use_kl_loss or cfg.algorithm.kl_coef > 0)


class HybridWorker(PolicyWorker):
    def __init__(self, cfg: RootConfig, total_steps: int):
        prefer_expandable_segments(cfg.worker.rollout.name)  # before this process allocates on the GPU
        super().__init__(cfg, total_steps)
        self.eos_token_ids = self.adapter.stop_token_ids(self.model_path, self.processor)
        device = self.device()
        # With LoRA the reference is the actor's base (its adapters disabled): no second copy of the weights.
        self.ref = (PolicyModel(cfg.worker.actor, self.adapter, device, cfg.worker.ref.fsdp, cfg.worker.ref.offload,
                                trainable=False, groups=self.groups, pad_token_id=self.pad_token_id)
                    if needs_reference(cfg) and self.actor.lora is None else None)
        # worker.rollout.name's engine (its module imported only when chosen) over the actor's checkpoint.
        self.rollout = build_rollout_engine(cfg.worker.actor.model, cfg.worker.rollout, self.adapter,
                                            engine_dtype(device), device)
        # Videos encoded live because the embedding cache lacked them are written to it (once per SP group).
        root = cache_root(cfg)
        self.cache = EmbeddingStore(root) if root is not None else None

    def _sampling(self, step: int, validate: bool) -> SamplingParams:
        rollout = self.cfg.worker.rollout
        params = SamplingParams.from_config(rollout, max_new_tokens=rollout.response_length,
                                            eos_token_ids=self.eos_token_ids, pad_token_id=self.pad_token_id,
                                            validation=validate)
        return params.with_overrides({"seed": rollout.seed * 1_000_003 + step * 1_009 + self.groups.dp_rank})

    @register(Dispatch.DP_COMPUTE)
    def generate(self, prompts: Batch, step: int, validate: bool = False) -> Batch:
        """``n`` responses per prompt; the rows carry the prompt's video features (``video_embeds``) onwards."""
        counted = len(self.actor.encoded_slices)
        known = prompts.non_tensors.get(VIDEO_EMBEDS, [None] * len(prompts))
        missing = [index for index, features in enumerate(known) if features is None]
        prompts = self.actor.with_video_features(prompts)
        if self.cache is not None and EMBED_ENTRY in prompts.non_tensors and self.groups.sp_rank == 0:
            positions = [without_pixels(row, self.adapter.input_keys) for row in prompts.non_tensors[VISION_INPUTS]]
            write_back(self.cache, prompts.non_tensors[EMBED_ENTRY], positions, prompts.non_tensors[VIDEO_EMBEDS],
                       prompts.non_tensors[TIMESTAMPS], missing)
        if validate:  # validation's encoding is not part of any training step's count
            del self.actor.encoded_slices[counted:]
        if not self.actor.tower_trained:  # no later pass of the step re-encodes: the features are all they need
            rows = [without_pixels(row, self.adapter.input_keys) for row in prompts.non_tensors[VISION_INPUTS]]
            prompts = prompts.with_non_tensors(vision_inputs=rows)
        sampling = self._sampling(step, validate)
        output = generate_over_group(self.rollout, prompts, sampling, self.groups, self.device())
        self.rollout.release()  # the log-prob passes and the update get the memory
        return output

    @register(Dispatch.DP_COMPUTE)
    def compute_log_prob(self, batch: Batch) -> Batch:
        scores = self.actor.compute_log_prob(batch, with_entropy=True)
        return Batch.from_dict({OLD_LOG_PROBS: scores.tensors["log_probs"], ENTROPY: scores.tensors["entropy"]})

    @register(Dispatch.DP_COMPUTE)
    def compute_ref_log_prob(self, batch: Batch) -> Batch:
        # The rollout's features came from the actor's tower: the reference's equals it only while it is not trained.
        reuse = not self.actor.tower_trained
        if self.ref is not None:
            scores = self.ref.compute_log_prob(batch, reuse_features=reuse)
        else:
            with adapters_disabled(self.actor.model):
                scores = self.actor.compute_log_prob(batch, reuse_features=reuse)
        return Batch.from_dict({REF_LOG_PROBS: scores.tensors["log_probs"]})

    @register(Dispatch.DP_COMPUTE)
    def update_actor(self, batch: Batch) -> dict[str, float]:
        """The PPO update, plus this rank's vision-tower work over the step (``mrsp/*``: calls, temporal slices)."""
        return {**self.actor.update_policy(batch, self.dp_size), **self.tower_metrics(self.actor, self.ref)}

    @register(Dispatch.ONE_TO_ALL)
    def sync_rollout_weights(self) -> None:
        """Push the updated actor weights into the rollout engine, tensor by tensor (no disk round trip)."""
        self.rollout.resume()
        self.rollout.load_weights(self.actor.full_tensors())

    @register(Dispatch.ONE_TO_ALL)
    def load_checkpoint(self, directory: str) -> None:
        super().load_checkpoint(directory)
        self.sync_rollout_weights()
