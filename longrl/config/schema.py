"""The run configuration as typed dataclasses.

Key names follow EasyR1 / Long-RL (``data.*``, ``algorithm.*``, ``worker.{actor,ref,rollout,reward}.*``,
``trainer.*``) so their launch scripts port by changing the entry point only. Hydra composes the YAML defaults in
``configs/`` over these schemas, which is what makes a misspelt key an error instead of a silently ignored value.
Cross-field rules live in :mod:`longrl.config.validate` and run when the tree is built.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass
class DataConfig:
    """Where the rows come from, how a row's fields are named, and how a video becomes a prompt."""

    train_files: str = "???"
    val_files: Optional[str] = None
    # The held-out split the two-stage pipeline (longrl.trainer.pipeline) evaluates on after each stage.
    test_files: Optional[str] = None
    prompt_key: str = "problem"
    answer_key: str = "answer"
    options_key: str = "options"
    reasoning_key: str = "reasoning"
    image_key: str = "images"
    video_key: str = "videos"
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
    max_prompt_length: int = 8192
    max_response_length: int = 1024
    rollout_batch_size: int = 8
    # Prompts per round of generation (EasyR1's key, verl's gen_batch_size); rounds run until rollout_batch_size
    # prompts are kept (with algorithm.online_filtering, those whose groups pass the filter). null: rollout_batch_size.
    mini_rollout_batch_size: Optional[int] = None
    val_batch_size: int = -1
    format_prompt: Optional[str] = None
    shuffle: bool = True
    seed: int = 1
    max_pixels: int = 200704
    min_pixels: int = 3136
    filter_overlong_prompts: bool = True
    # "error" stops at the first unreadable row (naming row and file); "skip" drops it, counts it in
    # data/skipped_rows and logs a summary by kind (python -m longrl.eval --on-bad-row takes the same values).
    on_bad_row: str = "error"
    cache_dir: Optional[str] = None


@dataclass
class AlgorithmConfig:
    """Advantage estimator, KL handling and the DAPO-style group filter."""

    adv_estimator: str = "grpo"
    norm_adv_by_std_in_grpo: bool = True
    gamma: float = 1.0
    disable_kl: bool = False
    use_kl_loss: bool = True
    kl_penalty: str = "low_var_kl"
    kl_coef: float = 1.0e-2
    kl_type: str = "fixed"
    kl_target: float = 0.1
    kl_horizon: float = 10000.0
    online_filtering: bool = False
    filter_key: str = "overall"
    filter_low: float = 0.01
    filter_high: float = 0.99
    max_try_make_batch: int = 20
    overlong_buffer_len: int = 0
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


@dataclass
class ModelConfig:
    model_path: str = "???"
    # Where the tokenizer / processor is read from (null: model_path), as in EasyR1; checkpoints save this one.
    tokenizer_path: Optional[str] = None
    enable_gradient_checkpointing: bool = True
    # Let the model directory's own Python (named by its config's auto_map) run when loading; a directory that
    # loads only through its code (VILA's, when it ships it) is refused while false. What runs is logged.
    trust_remote_code: bool = False
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
    lr: float = 1.0e-6
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 1.0e-2
    # "adamw" (float32 state for float32 weights) or "adamw_bf16" (AdamW with its moments stored in bfloat16)
    strategy: str = "adamw"
    lr_warmup_ratio: float = 0.0
    lr_warmup_steps: Optional[int] = None
    min_lr_ratio: Optional[float] = None
    lr_scheduler_type: str = "constant"


@dataclass
class FSDPConfig:
    enable_full_shard: bool = True
    enable_cpu_offload: bool = False
    # Only rank 0 reads the checkpoint into host memory; the other ranks build the model on the meta device and get
    # the weights and buffers from rank 0 after sharding (same model; text stages only, Flow-GRPO logs it unapplied)
    enable_rank0_init: bool = False
    torch_dtype: Optional[str] = None
    mp_param_dtype: str = "bf16"
    mp_reduce_dtype: str = "fp32"
    mp_buffer_dtype: str = "fp32"


@dataclass
class OffloadConfig:
    # FSDP keeps the parameters (and gradients) on the CPU, moving them to the GPU per block (GPU only)
    offload_params: bool = False
    # The optimizer state waits on the CPU between updates and comes to the GPU for each (actor only)
    offload_optimizer: bool = False


@dataclass
class ActorConfig:
    """The trained policy: batch sizes, PPO clipping, FSDP and MR-SP (``ulysses_size``)."""

    global_batch_size: int = 8
    micro_batch_size_per_device_for_update: int = 1
    micro_batch_size_per_device_for_experience: int = 2
    max_grad_norm: float = 1.0
    clip_ratio_low: float = 0.2
    clip_ratio_high: float = 0.2
    clip_ratio_dual: float = 3.0
    loss_agg_mode: str = "token-mean"
    # "default" (PPO-clip, clip-higher, dual-clip), "gspo", "gspo_token", "cispo" or "sapo", as in EasyR1
    loss_type: str = "default"
    # SAPO's gate temperatures for positive and negative advantages
    tau_positive: float = 1.0
    tau_negative: float = 1.05
    ppo_epochs: int = 1
    entropy_coeff: float = 0.0
    # Micro-batches packed by tokens (budget: the micro_batch_size_per_device_* keys x the batch's padded width)
    # instead of fixed row counts; the loss is the same either way. Packs real tokens with padding_free/ulysses.
    dynamic_batching: bool = False
    padding_free: bool = False
    # Score the n rows of one prompt (uid) as that prompt once plus n response branches (implies the packed,
    # sharded prefill even at ulysses_size=1); exact, and the prompt's cost is paid once per group.
    shared_prefix: bool = False
    ulysses_size: int = 1
    cached_embeds_dir: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)
    offload: OffloadConfig = field(default_factory=OffloadConfig)


@dataclass
class RefConfig:
    """The frozen reference policy; it shares the actor's model path and batch sizes."""

    fsdp: FSDPConfig = field(default_factory=lambda: FSDPConfig(enable_cpu_offload=True))
    offload: OffloadConfig = field(default_factory=OffloadConfig)


@dataclass
class RolloutConfig:
    """Generation engine and sampling, and (as in Long-RL) how many frames a video contributes."""

    name: str = "hf"
    n: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    seed: int = 1
    gpu_memory_utilization: float = 0.6
    tensor_parallel_size: int = 1
    enforce_eager: bool = False  # no CUDA graphs: vLLM's, and the HF engine's captured decode step (rollout/decode.py)
    enable_chunked_prefill: bool = True  # vLLM V1's own default; it warns that turning it off may give wrong output
    max_num_batched_tokens: int = 8192
    # vLLM only. How prompts enter the engine: "multi_modal" (token ids + the MR-SP video features as vLLM's
    # video_embeds; exact 3-D positions) or "embeds" (prompt_embeds; 1-D positions, so only for text prompts or
    # families without mrope). Either way vLLM never runs the vision tower.
    prompt_input: str = "multi_modal"
    # vLLM only: put the engine to sleep (KV cache freed, weights offloaded) while the actor trains, where the
    # platform supports it (GPUs; not vLLM's CPU backend).
    free_cache_engine: bool = True
    num_video_frames: Optional[int] = 16
    fps: Optional[float] = None
    max_video_frames: int = 768
    tokens_per_frame: Optional[int] = None
    num_chunk_seq: int = 1
    open_ended_reward: bool = False
    val_override_config: dict[str, Any] = field(default_factory=lambda: {"temperature": 0.0, "n": 1})


@dataclass
class JudgeConfig:
    """The open-ended judge (``worker.rollout.open_ended_reward=true``): a chat model behind an OpenAI-compatible API.

    The API key is read from the environment variable named by ``api_key_env`` when a request is made; it is never a
    config value, so it is never saved with a run.
    """

    model: str = "gpt-4o-mini"
    base_url: Optional[str] = None  # default: $OPENAI_BASE_URL, else https://api.openai.com/v1
    api_key_env: str = "OPENAI_API_KEY"
    prompt_template: str = "examples/judge/open_ended.jinja"  # jinja over question, reference, response
    score_pattern: str = r"(?i)score\s*[:=]?\s*([01](?:\.\d+)?)"  # first group: a score in [0, 1]
    temperature: float = 0.0
    max_tokens: int = 32
    extra_body: dict[str, Any] = field(default_factory=dict)  # merged into every request (server-specific options)
    max_concurrency: int = 8
    timeout_s: float = 30.0  # per request: no answer within it is retried
    max_retries: int = 3  # time-outs, dropped connections, 5xx/429, bodies without a reply; never 401/403/404
    backoff_s: float = 1.0
    retry_after_max_s: float = 60.0  # a 429/5xx's Retry-After replaces the backoff, capped at this
    on_outage: str = "zero"  # after the retries: "zero" scores 0 and counts it, "fail" fails the step
    cache: bool = True


@dataclass
class RewardConfig:
    # "batch" or "sequential"; null: the reward file's REWARD_TYPE, else batch (as EasyR1 decides)
    reward_type: Optional[str] = None
    reward_function: str = "longrl.rewards.r1v:compute_score"
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
    judge: JudgeConfig = field(default_factory=JudgeConfig)


@dataclass
class WorkerConfig:
    actor: ActorConfig = field(default_factory=ActorConfig)
    ref: RefConfig = field(default_factory=RefConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)


@dataclass
class TrainerConfig:
    total_epochs: int = 1
    max_steps: Optional[int] = None
    project_name: str = "longrl"
    experiment_name: str = "default"
    logger: list[str] = field(default_factory=lambda: ["console", "file"])
    nnodes: int = 1
    n_gpus_per_node: int = 1
    val_freq: int = -1
    val_before_train: bool = True
    val_only: bool = False
    val_generations_to_log: int = 3
    save_freq: int = -1
    save_limit: int = -1
    save_checkpoint_path: Optional[str] = None
    # Checkpoints without the optimizer state (about a third of the size with AdamW); a resume from one restarts the
    # optimizer's moments from zero, with a warning.
    save_model_only: bool = False
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

    root: str = "outputs/quickstart"
    model_family: str = "qwen2_5_vl"
    num_videos: int = 400
    frames: int = 16
    seed: int = 0
    # Synthetic tasks (longrl.data.synthetic.ALL_TASKS); majority_colour is the one a tiny model learns on a CPU.
    tasks: list[str] = field(default_factory=lambda: ["majority_colour"])


@dataclass
class RootConfig:
    data: DataConfig = field(default_factory=DataConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    quickstart: QuickstartConfig = field(default_factory=QuickstartConfig)
