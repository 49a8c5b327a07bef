"""The FSDP policy (actor) and the frozen reference: response log-probs, the PPO update, checkpoints.

One class serves both roles because they share loading, sharding and the log-prob pass; only the actor owns an
optimizer and a learning-rate schedule. Batches arrive already split by data-parallel rank (the controller's
``DP_COMPUTE``); here they are cut into mini-batches (one optimizer step each, ``global_batch_size`` prompts x ``n``
over the data-parallel ranks) and micro-batches (gradient accumulation).

Video features: rows may carry ``video_embeds`` (MR-SP stage 1, computed once per prompt when the step's rollout
was prepared); passes that may reuse them splice them instead of running the vision tower. Otherwise the tower runs
once per distinct prompt (rows sharing a ``uid``) of the batch, under the same frame sharding. The update re-runs it
only when the tower is trained, through stage 1 with gradients, once per prompt of each micro-batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.tensor import DTensor
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)

from longrl.algos import agg_loss, compute_kl_loss, compute_policy_loss
from longrl.config.schema import ActorConfig, FSDPConfig, OffloadConfig, OptimConfig
from longrl.models.lora import ADAPTER_SUBDIR, merged_tensors, write_adapter
from longrl.models.registry import ModelAdapter
from longrl.mrsp import (
    PrefillInputs,
    SequenceParallelGroups,
    encode_row_media,
    kv_head_repeat,
    sharded_response_scores,
    use_mrsp_attention,
)
from longrl.protocol import (
    ADVANTAGES,
    ATTENTION_MASK,
    INPUT_IDS,
    OLD_LOG_PROBS,
    REF_LOG_PROBS,
    RESPONSE_MASK,
    RESPONSES,
    TOKEN_KEYS,
    UID,
    VISION_INPUTS,
    Batch,
)
from longrl.plain_pt import load_dcp_metadata, load_plain, save_plain
from longrl.workers.fsdp import load_sharded_model
from longrl.workers.logprob import ResponseScores, response_log_probs
from longrl.workers.micro_batches import fixed_micro_batches, loss_share, token_budget_micro_batches
from longrl.workers.optimizers import make_optimizer, move_optimizer_state
from longrl.workers.vision_inputs import (VIDEO_EMBEDS, has_pixels, joined_features, placeholder_tokens,
                                          position_inputs)


# A micro-batch's loss (scalar, before the micro/mini weighting) and its metrics.
LossFn = Callable[[Batch], "tuple[torch.Tensor, dict[str, float]]"]


def warmup_then_decay(total_steps: int, warmup_steps: int, scheduler: str, min_lr_ratio: float) -> Callable[[int], float]:
    """The lr multiplier per step: linear warmup, then constant or cosine down to ``min_lr_ratio``."""

    def multiplier(step: int) -> float:
        if warmup_steps and step < warmup_steps:
            return (step + 1) / warmup_steps
        if scheduler == "cosine" and total_steps > warmup_steps:
            progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
            return min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return 1.0

    return multiplier


def build_optimizer(model: torch.nn.Module, optim: OptimConfig,
                    total_steps: int) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """The ``worker.actor.optim.strategy`` optimizer over ``model``'s trainable parameters and its schedule (warmup
    steps, or a ratio of ``total_steps``)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = make_optimizer(params, optim.strategy, optim.lr, tuple(optim.betas), optim.weight_decay)
    warmup = optim.lr_warmup_steps if optim.lr_warmup_steps is not None else int(optim.lr_warmup_ratio * total_steps)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_then_decay(total_steps, warmup, optim.lr_scheduler_type, optim.min_lr_ratio or 0.0))


class PolicyModel:
    """An FSDP-sharded policy; ``trainable=False`` makes it the reference (no optimizer, no grads).

    It reads ``worker.actor`` only (``config``), the values other sections decide included (its derived fields); the
    reference shares it and brings its own ``fsdp`` / ``offload``.
    """

    def __init__(self, config: ActorConfig, adapter: ModelAdapter, device: torch.device, fsdp: FSDPConfig,
                 offload: OffloadConfig, trainable: bool, groups: SequenceParallelGroups, pad_token_id: int,
                 total_steps: int = 1):
        self.config, self.adapter, self.device = config, adapter, device
        self.groups, self.pad_token_id = groups, pad_token_id
        actor = config
        self.sharded_prefill = groups.enabled or actor.padding_free or actor.shared_prefix
        # LoRA (the trained policy only): a frozen base with adapters; the reference is that base, adapters disabled.
        self.lora = actor.model.lora if trainable and actor.model.lora.rank > 0 else None
        self.model = load_sharded_model(adapter, actor.model.model_path, fsdp, offload, device,
                                        gradient_checkpointing=trainable and actor.model.enable_gradient_checkpointing,
                                        trust_remote_code=actor.model.trust_remote_code, lora=self.lora,
                                        lora_seed=actor.model.lora.seed)
        if self.sharded_prefill:
            text = self.model.config.get_text_config()
            kv_head_repeat(text.num_attention_heads, text.num_key_value_heads, groups.sp_size)  # fail at start
            use_mrsp_attention(self.model)
        self.encoded_slices: list[int] = []  # temporal slices per vision-tower call on this rank, since last read
        tower = adapter.vision_tower(self.model)
        # With LoRA the tower trains only if it has adapters (exclude_modules may leave it as the base's).
        self.tower_trained = trainable and not actor.model.freeze_vision_tower and (
            tower is None or any(param.requires_grad for param in tower.parameters()))
        if tower is not None:
            tower.register_forward_hook(self._count_encoded_slices, with_kwargs=True)
        self.optimizer: torch.optim.Optimizer | None = None
        self.scheduler: torch.optim.lr_scheduler.LambdaLR | None = None
        self.offload_optimizer = trainable and offload.offload_optimizer
        if not trainable:
            self.model.requires_grad_(False)
            return
        if actor.model.freeze_vision_tower:
            tower = adapter.vision_tower(self.model)
            if tower is None:
                raise ValueError("worker.actor.model.freeze_vision_tower=true but the model has no vision tower")
            tower.requires_grad_(False)
        self.optimizer, self.scheduler = build_optimizer(self.model, actor.optim, total_steps)

    # ----- video features and log-probs ------------------------------------------------------------------------
    def _count_encoded_slices(self, module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        grid = kwargs.get("grid_thw", args[1] if len(args) > 1 else None)
        self.encoded_slices.append(int(grid[:, 0].sum()) if grid is not None else 0)

    def encode_videos(self, batch: Batch) -> list[torch.Tensor | None]:
        """MR-SP stage 1 for ``batch``: per row, its video features (then its audio's, for a family with an audio
        tower); once per distinct ``uid`` (rows of one prompt)."""
        encoder = self.adapter.video_encoder(self.model)
        rows = list(batch.non_tensors[VISION_INPUTS])
        if encoder is None:
            return [None] * len(rows)
        keys = list(batch.non_tensors[UID]) if UID in batch.non_tensors else list(range(len(rows)))
        first: dict[Any, int] = {}
        for index, key in enumerate(keys):
            first.setdefault(key, index)
        distinct = [rows[i] for i in first.values()]
        features = encode_row_media(encoder, self.adapter.audio_encoder(self.model), distinct, self.groups,
                                    self.device, self.config.num_chunk_seq)
        by_key = dict(zip(first, features))
        return [by_key[key] for key in keys]

    def with_video_features(self, batch: Batch) -> Batch:
        """``batch`` with ``video_embeds`` (the visual features: images' then video's) for every row with pixels: rows
        that carry theirs (rollout rows, rows the embedding cache filled) keep them; the others are encoded here,
        without gradients.

        Every rank calls the (collective) encoding, with or without rows of its own to encode.
        """
        known = list(batch.non_tensors[VIDEO_EMBEDS]) if VIDEO_EMBEDS in batch.non_tensors else [None] * len(batch)
        rows = batch.non_tensors[VISION_INPUTS]
        keys = self.adapter.input_keys
        todo = np.array([i for i, f in enumerate(known) if f is None and has_pixels(rows[i], keys)], dtype=np.int64)
        with torch.no_grad():
            for index, features in zip(todo.tolist(), self.encode_videos(batch[todo])):
                known[index] = features.cpu() if features is not None else None
        return batch.with_non_tensors(**{VIDEO_EMBEDS: known})

    def _scores(self, micro: Batch, features: list[torch.Tensor | None], with_entropy: bool,
                temperature: float | None = None) -> ResponseScores:
        """Log-probs of ``micro``'s responses with its rows' video ``features`` spliced in (no tower run here).

        ``temperature`` defaults to the rollout's, so RL scores the distribution the rollout sampled from.
        """
        tokens = {key: micro.tensors[key].to(self.device) for key in TOKEN_KEYS if key in micro.tensors.keys()}
        responses = micro.tensors[RESPONSES].to(self.device)
        temperature = self.config.temperature if temperature is None else temperature
        grids = {key: value.to(self.device)
                 for key, value in position_inputs(micro.non_tensors[VISION_INPUTS], self.adapter.input_keys).items()}
        joined = joined_features(features, self.device)
        placeholder_ids = self.adapter.media_placeholder_ids(self.model)
        if not self.sharded_prefill:
            kwargs = dict(grids)
            if joined is not None:
                kwargs.update(self.adapter.encoder_kwargs(
                    self.model, joined, placeholder_tokens(tokens[INPUT_IDS], placeholder_ids)))
            return response_log_probs(self.model, tokens, kwargs, responses, temperature, with_entropy)
        actor = self.config
        uids = list(micro.non_tensors[UID]) if UID in micro.non_tensors else list(range(len(micro)))
        inputs = PrefillInputs(tokens[INPUT_IDS], tokens[ATTENTION_MASK],
                               self.adapter.position_ids(self.model, tokens, grids), responses, joined,
                               placeholder_ids, self.pad_token_id, uids)
        log_probs, entropy = sharded_response_scores(
            self.model, inputs, self.groups, self.adapter.encoder_kwargs, temperature, with_entropy,
            actor.padding_free, actor.shared_prefix)
        return ResponseScores(log_probs, entropy)

    @torch.no_grad()
    def compute_log_prob(self, batch: Batch, with_entropy: bool = False, reuse_features: bool = True) -> Batch:
        """``log_probs`` (and ``entropy``) of every response token, in micro-batches; no grad.

        ``reuse_features=False`` ignores the batch's ``video_embeds`` and encodes with this model's own tower (the
        reference, when the actor's tower is trained and so no longer equals the reference's).
        """
        self.model.eval()
        if not reuse_features:
            batch = batch.without_non_tensors(VIDEO_EMBEDS)
        batch = self.with_video_features(batch)
        batch, inverse = self._by_prompt(batch)
        outputs: dict[str, list[torch.Tensor]] = {"log_probs": [], "entropy": []}
        plan = self._micro_batches(batch, self.config.micro_batch_size_per_device_for_experience)
        for rows in plan:
            micro = batch[rows]
            scores = self._scores(micro, list(micro.non_tensors[VIDEO_EMBEDS]), with_entropy)
            outputs["log_probs"].append(scores.log_probs.cpu())
            if with_entropy:
                outputs["entropy"].append(scores.entropy.cpu())
        restore = np.argsort(np.concatenate(plan))  # micro-batch order -> batch order (-> the caller's order)
        if inverse is not None:
            restore = restore[inverse]
        index = torch.from_numpy(restore)
        return Batch.from_dict({key: torch.cat(values)[index] for key, values in outputs.items() if values})

    def _micro_batches(self, batch: Batch, size: int) -> list[np.ndarray]:
        """Row indices of ``batch``'s micro-batches: ``size`` rows each, or with ``worker.actor.dynamic_batching``
        packed under ``size`` x the batch's width tokens. Rows count their real tokens where the forward drops the
        padding (the packed prefill); a padded forward costs every row the full width, so there the packing only
        balances."""
        actor = self.config
        if not actor.dynamic_batching:
            return fixed_micro_batches(len(batch), size)
        mask = batch.tensors[ATTENTION_MASK]
        if not self.sharded_prefill:
            mask = torch.ones_like(mask)
        groups = batch.non_tensors[UID] if actor.shared_prefix and UID in batch.non_tensors else None
        return token_budget_micro_batches(mask, size, groups)

    def _by_prompt(self, batch: Batch) -> tuple[Batch, np.ndarray | None]:
        """With ``shared_prefix``: ``batch`` with the rows of each uid made contiguous (groups in order of first
        appearance, rows stable inside), so micro-batches of a multiple of ``n`` rows hold whole groups and score each
        prompt once; and the permutation that restores the original order (``None``: nothing moved)."""
        if not self.config.shared_prefix or UID not in batch.non_tensors:
            return batch, None
        first: dict[Any, int] = {}
        group = np.array([first.setdefault(uid, len(first)) for uid in batch.non_tensors[UID]])
        order = np.argsort(group, kind="stable")
        return batch[order], np.argsort(order)

    # ----- update ----------------------------------------------------------------------------------------------
    def update_policy(self, batch: Batch, data_parallel_size: int) -> dict[str, float]:
        """PPO-clip (+ KL loss, - entropy bonus) over mini-batches; returns metrics averaged over micro-batches."""
        batch = self._prepare_update(batch)
        metrics: dict[str, list[float]] = {}
        for _ in range(self.config.ppo_epochs):
            self._optimize(batch, data_parallel_size, self._ppo_loss, metrics)
        return self._finish_update(metrics)

    def update_supervised(self, batch: Batch, data_parallel_size: int) -> dict[str, float]:
        """One pass of supervised fine-tuning (CoT-SFT): the negative log-likelihood of the response tokens.

        The same mini-/micro-batching, feature reuse and MR-SP prefill as the PPO update, so an SFT stage trains
        exactly what the RL stage will later score.
        """
        metrics: dict[str, list[float]] = {}
        self._optimize(self._prepare_update(batch), data_parallel_size, self._sft_loss, metrics)
        return self._finish_update(metrics)

    @torch.no_grad()
    def supervised_loss(self, batch: Batch) -> dict[str, float]:
        """The SFT loss of ``batch`` without training (validation), aggregated over the whole batch."""
        self.model.eval()
        batch = self.with_video_features(batch)
        actor, mask = self.config, batch.tensors[RESPONSE_MASK]
        loss = 0.0
        for rows in self._micro_batches(batch, actor.micro_batch_size_per_device_for_experience):
            micro_loss, _ = self._sft_loss(batch[rows])
            loss += micro_loss.item() * loss_share(mask[rows], mask, actor.loss_agg_mode)
        return {"loss": loss}

    def _prepare_update(self, batch: Batch) -> Batch:
        """Once per update, before its epochs: train mode, the step's features on every row (a frozen tower is not
        re-run) and, with ``shared_prefix``, each prompt's rows together so mini- and micro-batches share it."""
        assert self.optimizer is not None and self.scheduler is not None, "an update was called on the reference"
        self.model.train()
        self._place_optimizer_state(next(self.model.parameters()).device)  # the GPU, or the CPU with offload_params
        if not self.tower_trained:
            batch = self.with_video_features(batch)
        return self._by_prompt(batch)[0]

    def _place_optimizer_state(self, device: torch.device) -> None:
        """With ``worker.actor.offload.offload_optimizer``, the optimizer state goes to ``device``: the CPU between
        updates, this rank's device for one."""
        if self.offload_optimizer:
            move_optimizer_state(self.optimizer, device)

    def _optimize(self, batch: Batch, data_parallel_size: int, loss_fn: LossFn,
                  metrics: dict[str, list[float]]) -> None:
        """One pass over ``batch``: an optimizer step per mini-batch (``global_batch_size`` prompts x ``n`` over the
        data-parallel ranks), gradients accumulated over its micro-batches, grad-norm clipped; appends to
        ``metrics``."""
        actor = self.config
        mini_rows = max(1, actor.samples_per_update // data_parallel_size)
        for mini in batch.split(mini_rows):
            self._accumulate(mini, loss_fn, metrics)
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], actor.max_grad_norm)
            grad_norm = float(grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm)
            if math.isfinite(grad_norm):
                self.optimizer.step()
            metrics.setdefault("actor/grad_norm", []).append(grad_norm)
            self.optimizer.zero_grad(set_to_none=True)

    def _accumulate(self, mini: Batch, loss_fn: LossFn, metrics: dict[str, list[float]]) -> None:
        """Back-propagate ``mini``'s loss micro-batch by micro-batch. Each micro-batch's loss is weighted by its share
        of the mini-batch (:func:`loss_share`), so the gradient is the mini-batch loss's whichever rows share a
        micro-batch."""
        actor, mask = self.config, mini.tensors[RESPONSE_MASK]
        for rows in self._micro_batches(mini, actor.micro_batch_size_per_device_for_update):
            loss, step_metrics = loss_fn(mini[rows])
            (loss * loss_share(mask[rows], mask, actor.loss_agg_mode)).backward()
            for key, value in step_metrics.items():
                metrics.setdefault(key, []).append(value)

    def _finish_update(self, metrics: dict[str, list[float]]) -> dict[str, float]:
        """Advance the lr schedule (once per trainer step), park the optimizer state if it is offloaded, and average
        the metrics over micro-batches."""
        metrics["actor/lr"] = [self.scheduler.get_last_lr()[0]]
        self.scheduler.step()
        self._place_optimizer_state(torch.device("cpu"))
        return {key: sum(values) / len(values) for key, values in metrics.items()}

    def _sft_loss(self, micro: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        """Token-level negative log-likelihood of the targets at temperature 1 (no rollout distribution here)."""
        mask = micro.tensors[RESPONSE_MASK].to(self.device)
        scores = self._scores(micro, self._update_features(micro), with_entropy=False, temperature=1.0)
        loss = agg_loss(-scores.log_probs, mask, self.config.loss_agg_mode)
        return loss, {"sft/loss": loss.item()}

    def _ppo_loss(self, micro: Batch) -> tuple[torch.Tensor, dict[str, float]]:
        actor = self.config
        t = {key: micro.tensors[key].to(self.device) for key in
             (RESPONSES, RESPONSE_MASK, OLD_LOG_PROBS, ADVANTAGES)}
        want_entropy = actor.entropy_coeff != 0
        scores = self._scores(micro, self._update_features(micro), with_entropy=want_entropy)
        pg_loss, pg_metrics = compute_policy_loss(
            t[OLD_LOG_PROBS], scores.log_probs, t[ADVANTAGES], t[RESPONSE_MASK], actor.clip_ratio_low,
            actor.clip_ratio_high, actor.clip_ratio_dual, actor.loss_agg_mode, actor.loss_type, actor.tau_positive,
            actor.tau_negative)
        loss = pg_loss
        metrics = {"actor/pg_loss": pg_loss.item(), **{f"actor/{k}": float(v) for k, v in pg_metrics.items()}}
        if want_entropy:
            entropy = agg_loss(scores.entropy, t[RESPONSE_MASK], actor.loss_agg_mode)
            loss = loss - actor.entropy_coeff * entropy
            metrics["actor/entropy"] = entropy.item()
        if actor.use_kl_loss:
            kl_loss = compute_kl_loss(scores.log_probs, micro.tensors[REF_LOG_PROBS].to(self.device),
                                      t[RESPONSE_MASK], actor.kl_penalty, actor.loss_agg_mode)
            loss = loss + actor.kl_coef * kl_loss
            metrics["actor/kl_loss"] = kl_loss.item()
        return loss, metrics

    def _update_features(self, micro: Batch) -> list[torch.Tensor | None]:
        """Frozen tower: the step's features. Trained tower: stage 1 again with gradients, under the same frame
        sharding, once per prompt of the micro-batch."""
        if not self.tower_trained:
            return list(micro.non_tensors[VIDEO_EMBEDS])
        return self.encode_videos(micro)

    def read_encoded_slices(self) -> list[int]:
        """Temporal slices this rank's tower encoded per call since the last read (then forgets them)."""
        slices, self.encoded_slices = self.encoded_slices, []
        return slices

    # ----- weights and checkpoints -----------------------------------------------------------------------------
    def full_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Every tensor of the model's state dict unsharded, one at a time: what the rollout engine loads. With LoRA,
        the plain model's names and weights, each adapter folded in (the engine holds the plain model).

        Each tensor is a collective (an all-gather of its shards), so every rank must consume the whole stream in
        the same order; the rollout engine then never holds more than one unsharded tensor besides its own copy.
        """
        tensors = self._unsharded(self.model.state_dict().items())
        return tensors if self.lora is None else merged_tensors(tensors, self.lora.alpha / self.lora.rank)

    def _unsharded(self, tensors: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
        for name, tensor in tensors:
            if isinstance(tensor, DTensor):
                tensor = tensor.to(self.device).full_tensor()
            yield name, tensor.detach()

    def save(self, directory: str | Path, processor: Any, with_optimizer: bool = True) -> None:
        """``model/`` and (``with_optimizer``, false under ``trainer.save_model_only``) ``optim/`` as sharded DCP,
        ``extra.pt`` (lr schedule), ``huggingface/`` (config, tokenizer); with LoRA, ``model/`` holds the base and the
        adapters (a resume needs no model directory) and ``optim/`` the adapters' state, plus ``lora_adapter/``."""
        directory = Path(directory)
        dcp.save(get_model_state_dict(self.model), checkpoint_id=str(directory / "model"))
        if self.optimizer is not None and with_optimizer:
            dcp.save(get_optimizer_state_dict(self.model, self.optimizer), checkpoint_id=str(directory / "optim"))
        if dist.get_rank() == 0:
            if self.scheduler is not None:
                save_plain({"lr_scheduler": self.scheduler.state_dict()}, directory / "extra.pt")
            self.model.config.save_pretrained(directory / "huggingface")
            generation_config = getattr(self.model, "generation_config", None)
            if generation_config is not None:
                generation_config.save_pretrained(directory / "huggingface")
            processor.save_pretrained(directory / "huggingface")
        if self.lora is not None:
            self._save_adapter(directory / ADAPTER_SUBDIR)
        dist.barrier()

    def _save_adapter(self, directory: Path) -> None:
        """``lora_adapter/`` in peft's layout, as EasyR1 writes it: the adapters alone (to serve over the base model)
        and the scale the merger folds ``model/``'s adapters with. Every rank gathers; rank 0 writes."""
        adapters = dict(self._unsharded((name, tensor) for name, tensor in self.model.state_dict().items()
                                        if ".lora_" in name))
        if dist.get_rank() == 0:
            write_adapter(directory, adapters, self.lora.rank, self.lora.alpha, self.lora.target_modules,
                          self.lora.exclude_modules, str(self.config.model.model_path))

    def load(self, directory: str | Path) -> None:
        directory = Path(directory)
        model_state = get_model_state_dict(self.model)
        load_dcp_metadata(directory / "model")  # refuses a crafted one before DCP unpickles it unrestricted
        dcp.load(model_state, checkpoint_id=str(directory / "model"))
        set_model_state_dict(self.model, model_state)
        if self.optimizer is not None and (directory / "optim").is_dir():  # else model-only: a fresh optimizer
            optim_state = get_optimizer_state_dict(self.model, self.optimizer)
            load_dcp_metadata(directory / "optim")
            dcp.load(optim_state, checkpoint_id=str(directory / "optim"))
            set_optimizer_state_dict(self.model, self.optimizer, optim_state)
            self._place_optimizer_state(torch.device("cpu"))
        if self.scheduler is not None:
            self.scheduler.load_state_dict(load_plain(directory / "extra.pt")["lr_scheduler"])
