"""The DESIGN.md benchmark workload, shared by the benchmark scripts: the model, the prompt, one timed GRPO step.

Workload: Qwen2.5-VL-3B architecture (random weights: cost does not depend on their values), bf16 compute, one video
of F frames (448x448 = 128 visual tokens per frame by default; a smaller side for the longest videos), one question,
n = 8 rollouts of up to 512 tokens, one GRPO step (rollout, old log-probs, reference log-probs, update) through the
real ``HybridWorker`` (FSDP actor and reference, HF or vLLM rollout), vision tower frozen as in Long-RL's recipes.
``size = "tiny"`` swaps in the family's tiny model so the scripts run (and are tested) on a CPU.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import longrl  # noqa: F401  (before torchvision: the CPU shim)
import numpy as np
import torch
import torch.multiprocessing as mp

from longrl.config.loader import load_config
from longrl.data.dataset import collate_left_padded
from longrl.data.video import DecodedVideo
from longrl.embeds.store import EmbeddingStore
from longrl.models import get_adapter
from longrl.models.tokenizer import QwenTokenIds, build_tokenizer
from longrl.protocol import TOKEN_KEYS, Batch
from longrl.trainer.metrics import rollout_probs_diff
from longrl.workers.rollout.output import build_rollout_batch
from longrl.workers.rollout.sampling import SamplingParams
from longrl.workers.vision_inputs import VIDEO_EMBEDS, merge_vision_inputs, without_pixels
from qwen2_5_vl_3b import TEXT_3B, VISION_3B

FAMILY = "qwen2_5_vl"
FRAME_SIDE = 448
N_ROLLOUTS = 8
RESPONSE_LENGTH = 512
PHASES = ("rollout", "old_log_prob", "ref_log_prob", "update")
CACHE_KEY = "bench"


def build_model(out_dir: Path, size: str = "3b") -> Path:
    """A Qwen2.5-VL-3B-shaped checkpoint with random bf16 weights (built on the GPU), or the family's tiny model
    (``size="tiny"``), with longrl's local processor either way."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    get_adapter(FAMILY).build_tiny(out_dir)  # processor, tokenizer, generation config
    if size == "tiny":
        return out_dir
    for weights in out_dir.glob("*.safetensors"):
        weights.unlink()
    ids = QwenTokenIds.from_tokenizer(build_tokenizer())
    text = {**TEXT_3B, "bos_token_id": ids.pad_token_id, "eos_token_id": ids.eos_token_id, "pad_token_id": ids.pad_token_id}
    config = Qwen2_5_VLConfig(text_config=text, vision_config=VISION_3B, **ids.vision_token_kwargs(),
                              tie_word_embeddings=True, dtype="bfloat16")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = Qwen2_5_VLForConditionalGeneration(config).to(torch.bfloat16)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    del model
    torch.cuda.empty_cache()
    return out_dir


def make_prompts(model_dir: Path, frames: int, side: int = FRAME_SIDE) -> Batch:
    """One question about one random video of ``frames`` frames of ``side`` x ``side`` pixels."""
    adapter = get_adapter(FAMILY)
    processor = adapter.load_processor(model_dir)
    pixels = np.random.default_rng(frames).integers(0, 256, (frames, side, side, 3), dtype=np.uint8)
    video = DecodedVideo("bench.mp4", pixels, np.arange(frames) / 2.0, 2.0, frames)
    messages = [{"role": "user", "content": [
        {"type": "video"}, {"type": "text", "text": "What happens in this video? Think step by step."}]}]
    inputs = adapter.encode(processor, messages, video)
    sample = {"uid": "q0", "inputs": {k: v[0] if k in TOKEN_KEYS else v for k, v in inputs.items()}, "question": "",
              "options": None, "answer": "A", "reasoning": None, "task": "bench", "video_path": None, "timestamps": None}
    collated = collate_left_padded([sample], processor.tokenizer.pad_token_id)
    return Batch.from_dict({k: collated[k] for k in TOKEN_KEYS},
                           {"uid": collated["uid"], "vision_inputs": collated["vision_inputs"]})


def worker_config(model_dir: Path, gpus: int, ulysses: int, *extra: str):
    return load_config([
        f"worker.actor.model.model_path={model_dir}", f"trainer.n_gpus_per_node={gpus}",
        f"worker.actor.ulysses_size={ulysses}", f"worker.rollout.n={N_ROLLOUTS}",
        f"data.max_response_length={RESPONSE_LENGTH}", "data.max_prompt_length=400000", "data.rollout_batch_size=1",
        "worker.actor.global_batch_size=1", "worker.actor.micro_batch_size_per_device_for_update=1",
        "worker.actor.micro_batch_size_per_device_for_experience=1", "worker.actor.model.freeze_vision_tower=true",
        "worker.actor.model.enable_gradient_checkpointing=true", "worker.ref.fsdp.torch_dtype=bf16",
        "worker.rollout.temperature=1.0", "algorithm.use_kl_loss=true", "data.val_files=null",
        # lr 0: the update costs the same, and the weights stay put, so every step of every variant scores the
        # same model and their log-probs can be compared.
        "worker.actor.optim.lr=0", *extra])


@contextmanager
def phase(name: str, record: dict[str, Any]) -> Iterator[None]:
    """Wall time of the block (GPU work included), GPU memory held when it starts and its peak (GiB; 0 on a CPU),
    and the step's peak so far. Running out of GPU memory inside it adds the phase's name to the error's notes."""
    gpu = torch.cuda.is_available()
    if gpu:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    held = torch.cuda.memory_allocated() / 2**30 if gpu else 0.0
    start = time.perf_counter()
    try:
        yield
    except torch.OutOfMemoryError as error:
        error.add_note(f"phase: {name}")
        raise
    if gpu:
        torch.cuda.synchronize()
    record[f"{name}_s"] = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if gpu else 0.0
    record[f"{name}_held_gib"], record[f"{name}_peak_gib"] = held, peak
    record["peak_gib"] = max(record.get("peak_gib", 0.0), peak)


@torch.no_grad()
def stock_generate(model: torch.nn.Module, prompts: Batch, sampling: SamplingParams) -> Batch:
    """What a plain Hugging Face loop does: ``generate`` on the prompt's token ids and pixels with
    ``num_return_sequences=n``, so the vision tower and the prefill run once per sample. Rollout log-probs are not
    recorded (zeros): no step phase reads them."""
    device = next(model.parameters()).device
    vision = {key: value.to(device) for key, value in
              merge_vision_inputs(list(prompts.non_tensors["vision_inputs"]), get_adapter(FAMILY).input_keys).items()}
    tokens = {key: prompts.tensors[key].to(device) for key in TOKEN_KEYS if key in prompts.tensors.keys()}
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(sampling.seed or 0)
        sequences = model.generate(**tokens, **vision, do_sample=True, temperature=sampling.temperature,
                                   num_return_sequences=sampling.n, max_new_tokens=sampling.max_new_tokens,
                                   eos_token_id=list(sampling.eos_token_ids), pad_token_id=sampling.pad_token_id,
                                   # random weights draw them
                                   suppress_tokens=get_adapter(FAMILY).media_token_ids(model.config))
    generated = sequences[:, tokens["input_ids"].shape[1]:].cpu()
    return build_rollout_batch(prompts, sampling.n, generated, torch.zeros(generated.shape), sampling.eos_token_ids,
                               sampling.pad_token_id, sampling.max_new_tokens)


def grpo_step(worker: Any, prompts: Batch, variant: str, store: EmbeddingStore | None = None
              ) -> tuple[dict[str, Any], torch.Tensor]:
    """One step's phases and the old log-probs (0 off the response); advantages are random (their values do not
    change the cost). A rollout from the worker's engine also records the trainer's rollout-vs-actor probability gap
    (``training/rollout_probs_diff/*``). ``variant`` says how the rollout is made and whether its rows share one
    video encoding:

    * ``stock``: :func:`stock_generate` (a tower pass and a prefill per sample), rows without a shared key;
    * ``re-encode``: the worker's engine (one encoding, one prefill per prompt), rows without a shared key;
    * ``encode-once``: the worker's ``generate``, the rows carry the prompt's features onwards (MR-SP stage 1);
    * ``cached``: as ``encode-once`` from features read from ``store`` (the disk read is billed to the rollout).

    Without a shared key every later pass runs the vision tower on its own row, as a plain HF loop does."""
    record: dict[str, Any] = {}
    with phase("rollout", record):
        if variant == "stock":
            rollout = stock_generate(worker.rollout.model, prompts, worker._sampling(0, validate=False))
            rollout = rollout.without_non_tensors("uid")
        elif variant == "re-encode":
            rollout = worker.rollout.generate(prompts, worker._sampling(0, validate=False))
            rollout = rollout.without_non_tensors("uid")
        else:
            rollout = worker.generate(from_cache(prompts, store) if variant == "cached" else prompts, step=0)
    with phase("old_log_prob", record):
        batch = rollout.union(worker.compute_log_prob(rollout))
    with phase("ref_log_prob", record):
        batch = batch.union(worker.compute_ref_log_prob(batch))
    mask = batch.tensors["response_mask"].float()
    advantages = torch.randn(mask.shape[0], 1).expand_as(mask) * mask
    with phase("update", record):
        metrics = worker.update_actor(batch.union(Batch.from_dict({"advantages": advantages})))
    record["total_s"] = sum(record[f"{p}_s"] for p in PHASES)
    record["vision_tower_calls"] = metrics["mrsp/vision_tower_calls"]
    record["prompt_tokens"] = int(prompts.tensors["attention_mask"].sum())
    record["response_tokens"] = int(mask.sum())
    if variant != "stock":  # stock_generate records no rollout log-probs
        record.update(rollout_probs_diff(batch))
    return record, batch.tensors["old_log_probs"] * mask


def from_cache(prompts: Batch, store: EmbeddingStore) -> Batch:
    """The prompts as the data layer hands them over on a cache hit: features read from disk, no pixels."""
    row = prompts.non_tensors["vision_inputs"][0]
    cached = store.get(CACHE_KEY, {"frames": row["video_grid_thw"].tolist()})
    return prompts.with_non_tensors(vision_inputs=[without_pixels(row, get_adapter(FAMILY).input_keys)],
                                    **{VIDEO_EMBEDS: [cached.features]})


def set_rank_environment(rank: int, world: int, port: int) -> None:
    """The torch.distributed variables of rank ``rank`` of ``world`` spawned processes, and its one GPU: the
    ``rank``-th of those ``CUDA_VISIBLE_DEVICES`` lists (all of the machine's when unset)."""
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = visible.split(",")[rank] if visible else str(rank)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def spawn(fn: Callable[..., None], world: int, *args: Any, join: bool = True) -> Any:
    """``fn(rank, world, port, *args)`` in ``world`` fresh processes (spawned: CUDA is not forked); joined, or the
    process context returned (``join=False``)."""
    return mp.start_processes(fn, args=(world, free_port(), *args), nprocs=world, join=join, start_method="spawn")


@contextmanager
def model_directory(size: str) -> Iterator[Path]:
    """A freshly built benchmark model (see :func:`build_model`), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="longrl_bench_"))
    try:
        yield build_model(root / f"qwen2_5_vl_{size}_random", size)
    finally:
        shutil.rmtree(root, ignore_errors=True)
