"""The run configuration as typed dataclasses.

Key names follow EasyR1 / Long-RL (``data.*``, ``algorithm.*``, ``worker.{actor,ref,rollout,reward}.*``,
``trainer.*``) so their launch scripts port by changing the entry point only. Hydra composes the YAML defaults in
``configs/`` over these schemas, which is what makes a misspelt key an error instead of a silently ignored value.
Cross-field rules live in :mod:`longrl.config.validate` and run when the tree is built.

Each component is handed its own section (the actor its ``worker.actor``, an engine its ``worker.rollout``). A value
one section needs from another is a derived field of the section that reads it (``field(init=False)``), filled once by
:meth:`RootConfig.__post_init__`; derived fields are not keys to set (the loader refuses a value that disagrees).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import MISSING


def derived() -> Any:
    """A field :meth:`RootConfig.__post_init__` fills from the section that decides it (None until then); its note
    reads ``<the keys it is computed from>: <what it is>``."""
    return field(default=None, init=False)


@dataclass
class DataConfig:
    """Where the rows come from, how a row's fields are named, and how a video becomes a prompt."""

    # Training rows: comma-separated JSON/JSONL/parquet files or hub dataset IDs, each optionally "@split".
    train_files: str = "???"
    # Validation rows in the same form (null: no validation).
    val_files: Optional[str] = None
    # The held-out split the two-stage pipeline (longrl.sft.pipeline) evaluates on after each stage.
    test_files: Optional[str] = None
    # The row field holding the question.
    prompt_key: str = "problem"
    # The row field holding the reference answer.
    answer_key: str = "answer"
    # The row field holding a multiple-choice row's option texts (absent or empty: an open-ended row).
    options_key: str = "options"
    # The row field holding a reasoning trace (the CoT-SFT stage's target).
    reasoning_key: str = "reasoning"
    # The row field holding a row's image paths.
    image_key: str = "images"
    # The row field holding a row's video path.
    video_key: str = "videos"
    # The row field holding a row's audio path (read with data.use_audio).
    audio_key: str = "audio"
    # Give the model each row's audio (families that take audio: Qwen2.5-Omni): the file the row names under
    # data.audio_key, else its video's audio track (a video without one is a bad row: data.on_bad_row).
    use_audio: bool = False
    # Where relative video and audio paths resolve (default: the dataset file's directory).
    video_dir: Optional[str] = None
    # Where relative image paths resolve; relative videos too while data.video_dir is unset (EasyR1's meaning).
    image_dir: Optional[str] = None
    # A jinja chat template file replacing the processor's (prompts, and the template saved with checkpoints).
    override_chat_template: Optional[str] = None
    # Prompt tokens at most (video tokens included); longer prompts are filtered (data.filter_overlong_prompts).
    max_prompt_length: int = 8192
    # Tokens a response may have: generation stops there, and an SFT target must fit.
    max_response_length: int = 1024
    # Prompts per training step (each answered worker.rollout.n times).
    rollout_batch_size: int = 8
    # Prompts per round of generation (EasyR1's key, verl's gen_batch_size); rounds run until rollout_batch_size
    # prompts are kept (with algorithm.online_filtering, those whose groups pass the filter). null: rollout_batch_size.
    mini_rollout_batch_size: Optional[int] = None
    # Prompts per validation batch (-1: the whole validation set at once).
    val_batch_size: int = -1
    # A jinja file the question is rendered through (e.g. examples/format_prompt/r1v.jinja); null: the question alone.
    format_prompt: Optional[str] = None
    # Shuffle the training rows each epoch.
    shuffle: bool = True
    # Seed of the shuffle.
    seed: int = 1
    # Pixels per frame or image at most (resized down to fit, keeping the aspect ratio).
    max_pixels: int = 200704
    # Pixels per frame or image at least (resized up to reach it).
    min_pixels: int = 3136
    # Drop rows whose prompt exceeds data.max_prompt_length (counted in data/skipped_rows) instead of failing on them.
    filter_overlong_prompts: bool = True
    # "error" stops at the first unreadable row (naming row and file); "skip" drops it, counts it in
    # data/skipped_rows and logs a summary by kind (python -m longrl.eval --on-bad-row takes the same values).
    on_bad_row: str = "error"
    # The cached video-embedding store (scripts/cache_video_embeds.py fills it); cached videos skip the vision tower.
    cache_dir: Optional[str] = None


@dataclass
class AlgorithmConfig:
    """Advantage estimator, KL handling and the DAPO-style group filter."""

    # "grpo", "rloo", "reinforce_plus_plus" or "reinforce_plus_plus_baseline" (longrl.algos.advantages).
    adv_estimator: str = "grpo"
    # GRPO divides each group-centred reward by the group's std (false: Dr. GRPO's centring only).
    norm_adv_by_std_in_grpo: bool = True
    # Discount of REINFORCE++'s return-to-go (1: undiscounted).
    gamma: float = 1.0
    # No KL term at all, and no reference policy loaded.
    disable_kl: bool = False
    # KL to the reference as a loss term of the update (false: as a penalty on the reward, weighted by kl_coef).
    use_kl_loss: bool = True
    # The per-token KL estimator: "kl"/"k1", "abs", "mse"/"k2" or "low_var_kl"/"k3".
    kl_penalty: str = "low_var_kl"
    # Weight of the KL term (the loss coefficient, or the reward penalty's starting coefficient).
    kl_coef: float = 1.0e-2
    # The reward penalty's coefficient: "fixed" at kl_coef, or "adaptive" towards kl_target.
    kl_type: str = "fixed"
    # The KL per token the adaptive controller steers towards.
    kl_target: float = 0.1
    # Steps over which the adaptive controller closes its error (larger: slower changes).
    kl_horizon: float = 10000.0
    # DAPO's dynamic sampling: keep only groups whose mean filter_key lies inside (filter_low, filter_high).
    online_filtering: bool = False
    # The reward part the filter reads: "overall", "accuracy" (as a fraction) or any part the reward returns.
    filter_key: str = "overall"
    # A group is kept only above this mean (exclusive).
    filter_low: float = 0.01
    # A group is kept only below this mean (exclusive).
    filter_high: float = 0.99
    # Rounds of generation per step before the filter gives up (-1: no limit).
    max_try_make_batch: int = 20
    # DAPO's soft overlong punishment: tokens before data.max_response_length where the penalty starts (0: off).
    overlong_buffer_len: int = 0
    # The punishment at data.max_response_length (it grows linearly over the buffer).
    overlong_penalty_factor: float = 1.0


@dataclass
class LoraConfig:
    """LoRA on the policy (EasyR1's keys): only the adapters train, the reference is the base (adapters disabled), and
    the rollout engine and the merged model get the folded weights (``W + alpha / rank * B @ A``)."""

    # adapter rank; 0 turns LoRA off (every weight trains)
    rank: int = 0
    # the adapters' update is scaled by alpha / rank
    alpha: float = 64.0
    # "all-linear" (every linear layer but the output head) or comma-separated module names ("q_proj,v_proj")
    target_modules: str = "all-linear"
    # regex over full module names left without adapters (".*visual.*": the vision tower stays the base's)
    exclude_modules: Optional[str] = None
    # worker.rollout.seed: the seed of the adapters' initial values (every rank draws the same)
    seed: Optional[int] = derived()


@dataclass
class ModelConfig:
    """The policy's checkpoint and how it is loaded."""

    # A Hugging Face model directory or hub ID (any family with an adapter in longrl/models/).
    model_path: str = "???"
    # Where the tokenizer / processor is read from (null: model_path), as in EasyR1; checkpoints save this one.
    tokenizer_path: Optional[str] = None
    # Recompute activations in the backward pass instead of keeping them (less memory, more compute).
    enable_gradient_checkpointing: bool = True
    # Let the model directory's own Python (named by its config's auto_map) run when loading; a directory that
    # loads only through its code (VILA's, when it ships it) is refused while false. What runs is logged.
    trust_remote_code: bool = False
    # The vision tower does not train; its features are then computed once per step and may come from data.cache_dir.
    freeze_vision_tower: bool = False
    # transformers' kernels fetched from the Hugging Face hub on CUDA (needs internet); off by default
    use_hub_kernels: bool = False
    # LoRA adapters (rank > 0) instead of training every weight
    lora: LoraConfig = field(default_factory=LoraConfig)

    def processor_path(self) -> str:
        """The directory the tokenizer / processor is loaded from."""
        return self.tokenizer_path or self.model_path


@dataclass
class OptimConfig:
    """The actor's optimizer and learning-rate schedule."""

    # Peak learning rate.
    lr: float = 1.0e-6
    # AdamW's moment decays.
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    # AdamW's decoupled weight decay.
    weight_decay: float = 1.0e-2
    # "adamw" (float32 state for float32 weights) or "adamw_bf16" (AdamW with its moments stored in bfloat16)
    strategy: str = "adamw"
    # Linear warmup over this fraction of the run's steps (unless lr_warmup_steps is set).
    lr_warmup_ratio: float = 0.0
    # Linear warmup over this many steps (null: lr_warmup_ratio decides).
    lr_warmup_steps: Optional[int] = None
    # The cosine schedule ends at lr x this (null: 0).
    min_lr_ratio: Optional[float] = None
    # After warmup: "constant" or "cosine" (down to min_lr_ratio).
    lr_scheduler_type: str = "constant"


@dataclass
class FSDPConfig:
    """How FSDP shards a model and in which precisions it computes."""

    # Free each block's gathered parameters after its forward (ZeRO-3); false keeps them until the backward (ZeRO-2).
    enable_full_shard: bool = True
    # Keep the parameters on the CPU between uses (as offload.offload_params; GPU only).
    enable_cpu_offload: bool = False
    # Only rank 0 reads the checkpoint into host memory; the other ranks build the model on the meta device and get
    # the weights and buffers from rank 0 after sharding (same model; text stages only, Flow-GRPO logs it unapplied)
    enable_rank0_init: bool = False
    # The dtype weights are loaded in on a GPU ("bf16", "fp32", ...; null: float32).
    torch_dtype: Optional[str] = None
    # Mixed precision on a GPU: the dtype parameters compute in.
    mp_param_dtype: str = "bf16"
    # Mixed precision on a GPU: the dtype gradients are reduced in.
    mp_reduce_dtype: str = "fp32"
    # Mixed precision on a GPU: the dtype of floating buffers (e.g. rotary inverse frequencies).
    mp_buffer_dtype: str = "fp32"


@dataclass
class OffloadConfig:
    """What waits on the CPU while it is not in use."""

    # FSDP keeps the parameters (and gradients) on the CPU, moving them to the GPU per block (GPU only)
    offload_params: bool = False
    # The optimizer state waits on the CPU between updates and comes to the GPU for each (actor only)
    offload_optimizer: bool = False


@dataclass
class ActorConfig:
    """The trained policy: batch sizes, PPO clipping, FSDP and MR-SP (``ulysses_size``)."""

    # Prompts per optimizer step (their worker.rollout.n responses each); data.rollout_batch_size is a multiple.
    global_batch_size: int = 8
    # Rows per forward/backward on one device in the update (gradients accumulate over them).
    micro_batch_size_per_device_for_update: int = 1
    # Rows per forward on one device in the log-prob passes (old and reference).
    micro_batch_size_per_device_for_experience: int = 2
    # Gradients are clipped to this global norm (a step with a non-finite norm is skipped).
    max_grad_norm: float = 1.0
    # PPO clipping below: the ratio is kept above 1 - clip_ratio_low.
    clip_ratio_low: float = 0.2
    # PPO clipping above: the ratio is kept below 1 + clip_ratio_high (DAPO's clip-higher raises it).
    clip_ratio_high: float = 0.2
    # Dual-clip for negative advantages: the loss is bounded by clip_ratio_dual x the advantage.
    clip_ratio_dual: float = 3.0
    # How token losses become one: "token-mean", "seq-mean-token-sum" or "seq-mean-token-mean".
    loss_agg_mode: str = "token-mean"
    # "default" (PPO-clip, clip-higher, dual-clip), "gspo", "gspo_token", "cispo" or "sapo", as in EasyR1
    loss_type: str = "default"
    # SAPO's gate temperature for positive advantages
    tau_positive: float = 1.0
    # SAPO's gate temperature for negative advantages
    tau_negative: float = 1.05
    # Passes over each step's batch in the update.
    ppo_epochs: int = 1
    # Weight of the entropy bonus subtracted from the loss (0: off, and entropy is not computed in the update).
    entropy_coeff: float = 0.0
    # Micro-batches packed by tokens (budget: the micro_batch_size_per_device_* keys x the batch's padded width)
    # instead of fixed row counts; the loss is the same either way. Packs real tokens with padding_free/ulysses.
    dynamic_batching: bool = False
    # Pack the rows of a micro-batch without their padding (the sharded prefill, even at ulysses_size=1).
    padding_free: bool = False
    # Score the n rows of one prompt (uid) as that prompt once plus n response branches (implies the packed,
    # sharded prefill even at ulysses_size=1); exact, and the prompt's cost is paid once per group.
    shared_prefix: bool = False
    # MR-SP: ranks per sequence-parallel group (frames of a video and positions of a sequence split over them).
    ulysses_size: int = 1
    # Long-RL's name for data.cache_dir (set one of them, or both to the same directory).
    cached_embeds_dir: Optional[str] = None
    # The checkpoint the policy starts from.
    model: ModelConfig = field(default_factory=ModelConfig)
    # The optimizer and its schedule.
    optim: OptimConfig = field(default_factory=OptimConfig)
    # The actor's sharding and precision.
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)
    # The actor's CPU offload.
    offload: OffloadConfig = field(default_factory=OffloadConfig)
    # worker.actor.global_batch_size x worker.rollout.n: the rows of one optimizer step over all data-parallel ranks
    samples_per_update: Optional[int] = derived()
    # worker.rollout.temperature: log-probs are scored at the temperature the rollout sampled at
    temperature: Optional[float] = derived()
    # worker.rollout.num_chunk_seq: chunks bounding the buffers of the video features' all-gather
    num_chunk_seq: Optional[int] = derived()
    # algorithm.use_kl_loss and not algorithm.disable_kl: whether the update adds the KL loss
    use_kl_loss: Optional[bool] = derived()
    # algorithm.kl_penalty: the KL loss's estimator
    kl_penalty: Optional[str] = derived()
    # algorithm.kl_coef: the KL loss's weight
    kl_coef: Optional[float] = derived()


@dataclass
class RefConfig:
    """The frozen reference policy; it shares the actor's model path and batch sizes."""

    # The reference's sharding and precision (its parameters wait on the CPU by default).
    fsdp: FSDPConfig = field(default_factory=lambda: FSDPConfig(enable_cpu_offload=True))
    # The reference's CPU offload.
    offload: OffloadConfig = field(default_factory=OffloadConfig)


@dataclass
class RolloutConfig:
    """Generation engine and sampling, and (as in Long-RL) how many frames a video contributes."""

    # The engine: "hf" (Hugging Face generate with a shared prefill; the quickstart's) or "vllm".
    name: str = "hf"
    # Responses sampled per prompt (the group of GRPO and the other group estimators).
    n: int = 8
    # Sampling temperature (0: greedy); the log-prob passes score at the same temperature.
    temperature: float = 1.0
    # Nucleus sampling: the smallest set of tokens holding this probability (1: off).
    top_p: float = 1.0
    # Sample among the k likeliest tokens only (-1: off).
    top_k: int = -1
    # Seeds sampling, together with the step and the data-parallel rank (a resumed run draws the same samples).
    seed: int = 1
    # vLLM only: the fraction of GPU memory the engine may take (weights and KV cache).
    gpu_memory_utilization: float = 0.6
    # vLLM only: ranks one engine's weights are split over (must divide worker.actor.ulysses_size).
    tensor_parallel_size: int = 1
    # No CUDA graphs: vLLM's, and the HF engine's captured decode step (rollout/decode.py).
    enforce_eager: bool = False
    # vLLM only: V1's own default; it warns that turning it off may give wrong output.
    enable_chunked_prefill: bool = True
    # vLLM only: tokens one engine step may process.
    max_num_batched_tokens: int = 8192
    # vLLM only. How prompts enter the engine: "multi_modal" (token ids + the MR-SP video features as vLLM's
    # video_embeds; exact 3-D positions) or "embeds" (prompt_embeds; 1-D positions, so only for text prompts or
    # families without mrope). Either way vLLM never runs the vision tower.
    prompt_input: str = "multi_modal"
    # vLLM only: put the engine to sleep (KV cache freed, weights offloaded) while the actor trains, where the
    # platform supports it (GPUs; not vLLM's CPU backend).
    free_cache_engine: bool = True
    # Frames sampled evenly from each video (set this or fps).
    num_video_frames: Optional[int] = 16
    # Frames sampled per second of video, capped at max_video_frames (set this or num_video_frames).
    fps: Optional[float] = None
    # The most frames fps sampling takes from one video.
    max_video_frames: int = 768
    # Visual tokens per frame at most: tightens data.max_pixels for video frames (null: data.max_pixels alone).
    tokens_per_frame: Optional[int] = None
    # Chunks that bound the buffers of MR-SP's feature all-gather, and rounds vLLM generates a batch in.
    num_chunk_seq: int = 1
    # Sampling settings replaced in validation (keys of n, temperature, top_p, top_k, max_new_tokens, seed).
    val_override_config: dict[str, Any] = field(default_factory=lambda: {"temperature": 0.0, "n": 1})
    # data.max_response_length: tokens generated per response at most
    response_length: Optional[int] = derived()
    # data.max_prompt_length + data.max_response_length: the vLLM engine's context length
    max_model_len: Optional[int] = derived()


@dataclass
class JudgeConfig:
    """The open-ended judge (``worker.reward.kind=open_ended``): a chat model behind an OpenAI-compatible API.

    The API key is read from the environment variable named by ``api_key_env`` when a request is made; it is never a
    config value, so it is never saved with a run.
    """

    # The judge model's name, as the server knows it.
    model: str = "gpt-4o-mini"
    # The API's base URL (null: $OPENAI_BASE_URL, else https://api.openai.com/v1).
    base_url: Optional[str] = None
    # The environment variable holding the API key (read per request, never stored).
    api_key_env: str = "OPENAI_API_KEY"
    # A jinja file over question, reference, response: the judge's prompt.
    prompt_template: str = "examples/judge/open_ended.jinja"
    # A regex whose first group, searched in the reply, is the score in [0, 1].
    score_pattern: str = r"(?i)score\s*[:=]?\s*([01](?:\.\d+)?)"
    # The judge's sampling temperature.
    temperature: float = 0.0
    # Tokens the judge may reply with.
    max_tokens: int = 32
    # Merged into every request (server-specific options).
    extra_body: dict[str, Any] = field(default_factory=dict)
    # Requests in flight at once.
    max_concurrency: int = 8
    # Seconds per request: no answer within it is retried.
    timeout_s: float = 30.0
    # Retries of time-outs, dropped connections, 5xx/429 and bodies without a reply; never of 401/403/404.
    max_retries: int = 3
    # Seconds before the first retry (doubling after each).
    backoff_s: float = 1.0
    # A 429/5xx's Retry-After replaces the backoff, capped at this many seconds.
    retry_after_max_s: float = 60.0
    # After the retries: "zero" scores 0 and counts it, "fail" fails the step.
    on_outage: str = "zero"
    # Remember verdicts by (question, reference, response), so a repeated response costs one request.
    cache: bool = True


@dataclass
class RewardConfig:
    """How responses are scored: the reward function, where it runs, and the open-ended judge."""

    # "function" (the reward function grades every row) or "open_ended" (the judge grades rows without options).
    kind: str = "function"
    # "batch" or "sequential"; null: the reward file's REWARD_TYPE, else batch (as EasyR1 decides)
    reward_type: Optional[str] = None
    # The reward function: "path/to/file.py:fn" or "package.module:fn" (the default grades format and answer).
    reward_function: str = "longrl.rewards.r1v:compute_score"
    # Keyword arguments every call of the reward function gets.
    reward_function_kwargs: dict[str, Any] = field(default_factory=dict)
    # "fail" stops the run at a failing reward call (the last checkpoint stays intact); "skip_step" logs the failing
    # sample, skips that step's update and goes on.
    on_error: str = "fail"
    # Processes that run the reward calls (0: a thread of the trainer process). Either way a step's rewards are
    # computed while the old/reference log-probs are (unless online filtering needs them first). In a process the
    # grader runs on its main thread, where math_verify's time-out (SIGALRM) works; in a thread it cannot.
    num_workers: int = 1
    # Seconds one reward call may take (per sample for sequential functions, per batch for batch ones); past it the
    # call fails naming the function and sample, through on_error. Needs num_workers >= 1; null: no limit.
    timeout_s: Optional[float] = 600.0
    # The open-ended judge's API and prompt.
    judge: JudgeConfig = field(default_factory=JudgeConfig)


@dataclass
class WorkerConfig:
    """One section per worker role; each component is handed its own section."""

    # The trained policy.
    actor: ActorConfig = field(default_factory=ActorConfig)
    # The frozen reference policy (loaded only when a KL term uses it).
    ref: RefConfig = field(default_factory=RefConfig)
    # The generation engine and its sampling.
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    # The reward.
    reward: RewardConfig = field(default_factory=RewardConfig)


@dataclass
class TrainerConfig:
    """The run: its length, where it logs and checkpoints, and the devices it spans."""

    # Passes over the training rows.
    total_epochs: int = 1
    # Stop after this many steps, if fewer than total_epochs make (null: no cap).
    max_steps: Optional[int] = None
    # Names the run's tracker project and its log and checkpoint directories.
    project_name: str = "longrl"
    # Names the run within its project.
    experiment_name: str = "default"
    # Where metrics go: any of "console", "file" (JSONL), "wandb", "tensorboard", "swanlab".
    logger: list[str] = field(default_factory=lambda: ["console", "file"])
    # Machines in the run.
    nnodes: int = 1
    # Devices per machine.
    n_gpus_per_node: int = 1
    # Validate every this many steps, and after the last (-1: only before and after training).
    val_freq: int = -1
    # Validate before the first step.
    val_before_train: bool = True
    # Validate once and stop, without training.
    val_only: bool = False
    # Validation generations written to the trackers per validation.
    val_generations_to_log: int = 3
    # Checkpoint every this many steps and after the last (-1: never).
    save_freq: int = -1
    # Checkpoints kept, the newest (-1: all).
    save_limit: int = -1
    # Where checkpoints go (null: checkpoints/<project_name>/<experiment_name>); a run resumes from its latest.
    save_checkpoint_path: Optional[str] = None
    # Checkpoints without the optimizer state (about a third of the size with AdamW); a resume from one restarts the
    # optimizer's moments from zero, with a warning.
    save_model_only: bool = False
    # Resume from this global_step_N directory (or a run's folder: its latest step), not save_checkpoint_path's.
    load_checkpoint_path: Optional[str] = None
    # Seconds a rank waits for its peers in a collective (all-gather, all-to-all, all-reduce) before the step fails
    # naming the rank and the method; a hung or stopped rank otherwise stalls the run. Also bounds rank 0's longest
    # solo work between collectives (checkpoint writes), so keep it above that.
    collective_timeout_s: float = 600.0
    # "error" refuses to resume from a checkpoint whose saved run differs in algorithm, model or training data
    # (listing the keys); "allow" resumes anyway and logs the differences.
    resume_mismatch: str = "error"


@dataclass
class SFTConfig:
    """The CoT-SFT stage (``python -m longrl.sft.main``). Everything else is read from the same keys as the RL stage:
    ``data.*`` (rows, ``data.rollout_batch_size`` rows per step, ``data.max_response_length`` bounds a target),
    ``worker.actor.*`` (model, optimizer, FSDP, ``ulysses_size``, mini/micro batches) and ``trainer.*``."""

    # A jinja file over reasoning, answer, question, options; None: <think>reasoning</think><answer>answer</answer>.
    target_template: Optional[str] = None


@dataclass
class QuickstartConfig:
    """The quickstart default: a synthetic long-video dataset and a tiny model generated on first use.

    Only artefacts that the rest of the config actually points at are generated, so a run on real data or a real
    model never pays for them.
    """

    # Where the synthetic data and the tiny model are generated.
    root: str = "outputs/quickstart"
    # The family of the tiny model (any in longrl/models/; configs/config.yaml sets the default).
    model_family: str = MISSING
    # Synthetic videos generated (split into train, val and test).
    num_videos: int = 400
    # Frames per synthetic video.
    frames: int = 16
    # Seed of the synthetic data and of the tiny model's random weights.
    seed: int = 0
    # Synthetic tasks (longrl.data.synthetic.ALL_TASKS); majority_colour is the one a tiny model learns on a CPU.
    tasks: list[str] = field(default_factory=lambda: ["majority_colour"])


@dataclass
class RootConfig:
    """The text stages' whole tree (RL, CoT-SFT and the pipeline over both)."""

    # The rows and how a video becomes a prompt.
    data: DataConfig = field(default_factory=DataConfig)
    # The advantage estimator, KL and the group filter.
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    # The worker roles.
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    # The run.
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # The CoT-SFT stage.
    sft: SFTConfig = field(default_factory=SFTConfig)
    # The quickstart default's generated data and model.
    quickstart: QuickstartConfig = field(default_factory=QuickstartConfig)

    def __post_init__(self) -> None:
        """Fill the derived fields: each value one section decides for another is computed here, once."""
        data, algorithm, actor, rollout = self.data, self.algorithm, self.worker.actor, self.worker.rollout
        rollout.response_length = data.max_response_length
        rollout.max_model_len = data.max_prompt_length + data.max_response_length
        actor.samples_per_update = actor.global_batch_size * rollout.n
        actor.temperature = rollout.temperature
        actor.num_chunk_seq = rollout.num_chunk_seq
        actor.model.lora.seed = rollout.seed
        actor.use_kl_loss = algorithm.use_kl_loss and not algorithm.disable_kl
        actor.kl_penalty = algorithm.kl_penalty
        actor.kl_coef = algorithm.kl_coef
