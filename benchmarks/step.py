"""GRPO step benchmark: the DESIGN.md workload under each configuration, one table row per configuration and size.

Configurations (``--job NAME@GPUS:FRAMES,...``; a size is ``F`` frames at 448x448 or ``FxSIDE`` at SIDE x SIDE):

* ``baseline``: the step with none of longrl's work-saving: no SP, the rollout is ``generate`` with
  ``num_return_sequences=n`` on token ids and pixels (a tower pass and a prefill per sample), and the old-log-prob,
  reference and update passes score each of the n rows as its own full sequence, running the vision tower again.
  Through the real workers (FSDP actor and reference), one row per micro-batch.
* ``longrl``: what longrl does: the video encoded once (MR-SP stage 1, frames split over the GPUs) and its features
  reused, the prompt prefilled once and its n samples decoded from one cache (split over the SP group), the group
  scored as the prompt once plus n response branches (shared prefix) in one micro-batch, Ulysses SP over the job's
  GPUs, activation checkpointing, response-only logits.
* ``longrl-vllm``: ``longrl`` with the rollout on vLLM's engine in the worker process (``worker.rollout.name=vllm``,
  the MR-SP features entering as ``video_embeds``), asleep while the actor computes, on a share of each GPU
  (``VLLM_GPU_SHARE``) that leaves the actor room.
* ``peer``: the same step as a plain Hugging Face loop (``peer.py``), what a user would write instead (1 GPU).

Each job runs in its own processes (one per GPU) after an untimed warm-up step at ``--warmup-frames`` (the same for
every job); jobs of fewer GPUs than the machine has run side by side on disjoint GPUs. Each row gives the time per
phase, the step time, the peak GPU memory, sequence tokens per second (n x (prompt + response), the tokens the
baseline computes), the speedup over the baseline row of the same size, and the gap to the step's physical floor
(``step_flops.py``: FLOPs at the measured bf16 matmul rate, decoding at the measured memory bandwidth). For each
job's largest size, where the GPU memory goes: weights, gradients and optimizer state held through the step, and per
phase what it adds on top (activations, key/value cache, gathered parameters). For the two longrl configurations,
the rollout engine after each step: the actor's weights pushed into it as the trainer does after an update (timed
apart: the step's time leaves it out), one sleep and wake of the engine with the GPU memory each gives back or takes,
and the trainer's rollout-vs-actor probability gap (``training/rollout_probs_diff``).

Run on the GPU machine from the repo root (``benchmarks/README.md`` has the command and the latest results)::

    python benchmarks/step.py --job baseline@1:512 --job longrl@1:512 --job peer@1:512 --out $OUT/step.json
    python benchmarks/step.py --job longrl@1:64 --job longrl-vllm@1:64 --warmup-frames 16   # HF against vLLM
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from longrl.protocol import Batch
from longrl.workers.rollout.hf import HFRollout
from step_flops import StepShape, TextShape, VisionShape, measure_rates, step_floor
from workload import FRAME_SIDE, N_ROLLOUTS, PHASES, RESPONSE_LENGTH, grpo_step, make_prompts, model_directory
from workload import phase, set_rank_environment, spawn, worker_config

CONFIGS = ("baseline", "longrl", "longrl-vllm", "peer")
SINGLE_GPU = ("baseline", "peer")
# worker.rollout.gpu_memory_utilization of longrl-vllm: vLLM's share of each GPU, 24 GiB of an 80 GiB H100, for the 3B
# model's bf16 weights (7 GiB), its start-up profile of the vision tower and the KV cache (36 KiB a token: 2.3 GiB
# a copy of a 512-frame prompt). Woken, it sits beside the actor's fp32 weights and Adam state (37 GiB on one GPU);
# asleep, it leaves the update the rest.
VLLM_GPU_SHARE = 0.3


@dataclass(frozen=True)
class Job:
    config: str
    gpus: int
    sizes: tuple[tuple[int, int], ...]  # (frames, side)

    @classmethod
    def parse(cls, text: str) -> Job:
        """``NAME@GPUS:F[xSIDE],...``, e.g. ``longrl@2:512,3600x336``."""
        try:
            head, sizes = text.split(":")
            config, gpus = head.split("@")
            parsed = tuple((int(size.split("x")[0]), int(size.split("x")[1]) if "x" in size else FRAME_SIDE)
                           for size in sizes.split(","))
            job = cls(config, int(gpus), parsed)
        except ValueError as error:
            raise SystemExit(f"--job {text!r}: expected NAME@GPUS:F[xSIDE],... e.g. longrl@2:512,3600x336") from error
        if config not in CONFIGS or (config in SINGLE_GPU and job.gpus != 1):
            raise SystemExit(f"--job {text!r}: configurations are {CONFIGS}; {' and '.join(SINGLE_GPU)} run on 1 GPU")
        return job


def config_overrides(config: str, gpus: int, n: int, length: int) -> tuple[int, tuple[str, ...]]:
    """The worker configuration of ``config`` on ``gpus`` GPUs: (Ulysses SP size, overrides); ``longrl-vllm`` adds
    :func:`vllm_overrides`."""
    common = (f"worker.rollout.n={n}", f"data.max_response_length={length}")
    if config == "baseline":
        return 1, (*common, "worker.actor.shared_prefix=false")
    group = n  # the whole group in one micro-batch: its prompt computed once
    return gpus, (*common, "worker.actor.shared_prefix=true",
                  f"worker.actor.micro_batch_size_per_device_for_update={group}",
                  f"worker.actor.micro_batch_size_per_device_for_experience={group}")


def vllm_overrides(model_dir: Path, sizes: Iterable[tuple[int, int]]) -> tuple[str, ...]:
    """The vLLM engine on ``VLLM_GPU_SHARE`` of the GPU, with ``data.max_prompt_length`` the longest prompt of
    ``sizes``: vLLM sizes itself for one sequence of max_prompt_length + max_response_length and profiles its vision
    tower on a dummy video of that length at start, so a looser bound would take the share from the KV cache."""
    longest = max(int(make_prompts(model_dir, frames, side).tensors["attention_mask"].sum()) for frames, side in sizes)
    return ("worker.rollout.name=vllm", f"worker.rollout.gpu_memory_utilization={VLLM_GPU_SHARE}",
            f"data.max_prompt_length={longest}")


def _bytes(tensors: Any) -> float:
    """GiB of the GPU-resident local parts of ``tensors`` (DTensor shards counted by their local shard)."""
    total = 0
    for tensor in tensors:
        local = tensor.to_local() if hasattr(tensor, "to_local") else tensor
        if isinstance(local, torch.Tensor) and local.is_cuda:
            total += local.numel() * local.element_size()
    return total / 2**30


def _optimizer_tensors(optimizer: torch.optim.Optimizer | None) -> list[torch.Tensor]:
    if optimizer is None:
        return []
    return [value for state in optimizer.state.values() for value in state.values() if isinstance(value, torch.Tensor)]


def held_memory(worker: Any) -> dict[str, float]:
    """What a worker keeps on the GPU between steps (GiB): weights of the actor shard, reference and the HF engine's
    rollout copy, gradients left, optimizer state. (vLLM's memory is its sleep and wake columns.)"""
    actor = list(worker.actor.model.parameters())
    held = {"actor_weights": _bytes(actor), "actor_grads": _bytes(p.grad for p in actor if p.grad is not None),
            "optimizer_state": _bytes(_optimizer_tensors(worker.actor.optimizer)),
            "reference_weights": _bytes(worker.ref.model.parameters()) if worker.ref is not None else 0.0}
    if isinstance(worker.rollout, HFRollout):
        held["rollout_weights"] = _bytes(worker.rollout.model.parameters())
    return held


def peer_held_memory(loop: Any) -> dict[str, float]:
    policy = list(loop.policy.parameters())
    return {"actor_weights": _bytes(policy), "actor_grads": _bytes(p.grad for p in policy if p.grad is not None),
            "optimizer_state": _bytes(_optimizer_tensors(loop.optimizer)),
            "reference_weights": _bytes(loop.reference.parameters()), "rollout_weights": 0.0}


def _timed_free_memory(call: Callable[[], None]) -> tuple[float, float, float]:
    """Seconds ``call()`` takes, and the GPU's free memory before and after it (GiB; 0 on a CPU) as
    ``torch.cuda.mem_get_info`` sees it: vLLM's sleep unmaps the memory under tensors that torch still counts."""
    def free() -> float:
        return torch.cuda.mem_get_info()[0] / 2**30 if torch.cuda.is_available() else 0.0

    before, start = free(), time.perf_counter()
    call()
    return time.perf_counter() - start, before, free()


def worker_step(worker: Any, prompts: Batch, variant: str) -> dict[str, Any]:
    """``grpo_step``; where the worker's own engine made the rollout (not ``stock``), then also what the trainer does
    after the update: the actor's weights pushed into the engine (``sync_weights``; vLLM is woken for it), and one
    release and resume of the engine, as each rollout ends and each sync begins (vLLM: sleep at level 1 and wake; a
    no-op for HF)."""
    record = grpo_step(worker, prompts, variant)[0]
    if variant == "stock":
        return record
    with phase("sync_weights", record):
        worker.sync_rollout_weights()
    seconds, before, after = _timed_free_memory(worker.rollout.release)
    record.update(sleep_s=seconds, sleep_freed_gib=after - before)
    seconds, before, after = _timed_free_memory(worker.rollout.resume)
    record.update(wake_s=seconds, wake_taken_gib=before - after)
    return record


def _vision_shape(prompts: Batch) -> dict[str, int]:
    grid = prompts.non_tensors["vision_inputs"][0]["video_grid_thw"]
    return {"patches": int(grid.prod(dim=-1).sum()), "patches_per_slice": int(grid[0, 1] * grid[0, 2])}


def _job_rank(rank: int, world: int, port: int, job: dict, model_dir: str, result_file: str, warmup_frames: int,
              n: int, length: int, extra: tuple[str, ...] = ()) -> None:
    """One rank of one job: warm up, then one measured step per size; rank 0 appends a row per size to
    ``result_file`` as it goes (a size that runs out of GPU memory is recorded as such and ends the job)."""
    set_rank_environment(rank, world, port)
    job = Job(job["config"], job["gpus"], tuple(tuple(size) for size in job["sizes"]))
    model_path = Path(model_dir)
    if job.config == "peer":
        from longrl.models.tokenizer import QwenTokenIds, build_tokenizer
        from peer import PeerLoop

        ids = QwenTokenIds.from_tokenizer(build_tokenizer())
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        loop = PeerLoop(model_path, device, ids.pad_token_id, (ids.eos_token_id, ids.pad_token_id), n, length)
        step, held = (lambda prompts: loop.step(prompts)), (lambda: peer_held_memory(loop))
    else:
        from longrl.workers.hybrid import HybridWorker

        ulysses, overrides = config_overrides(job.config, world, n, length)
        if job.config == "longrl-vllm":
            overrides += vllm_overrides(model_path, {(warmup_frames, FRAME_SIDE), *job.sizes})
        overrides += tuple(extra)
        worker = HybridWorker(worker_config(model_path, world, ulysses, *overrides), total_steps=1000)
        variant = "stock" if job.config == "baseline" else "encode-once"
        step, held = (lambda prompts: worker_step(worker, prompts, variant)), (lambda: held_memory(worker))
    step(make_prompts(model_path, warmup_frames))
    rows: list[dict] = []
    for frames, side in job.sizes:
        prompts = make_prompts(model_path, frames, side)
        row = {"config": job.config, "gpus": world, "frames": frames, "side": side, **_vision_shape(prompts)}
        try:
            row.update(step(prompts))
            row["held"] = held()
        except torch.OutOfMemoryError as error:
            row["oom"] = "; ".join([*getattr(error, "__notes__", []), str(error).splitlines()[0]])
        rows.append(row)
        if rank == 0:
            Path(result_file).write_text(json.dumps(rows))
        if "oom" in row:
            break


def run_jobs(jobs: list[Job], model_dir: Path, gpus: int, warmup_frames: int, n: int, length: int,
             extra: tuple[str, ...] = ()) -> list[dict]:
    """Every job's rows, in job order; jobs start in order as soon as enough of the ``gpus`` GPUs are free.
    ``extra``: configuration overrides added to every job but the peer's."""
    widest = max(job.gpus for job in jobs)
    if gpus and widest > gpus:
        raise SystemExit(f"a job asks for {widest} GPUs; this machine has {gpus}")
    free = list(range(gpus or widest))  # on a CPU, as many process slots as the widest job has ranks
    running: list[tuple[Any, list[int]]] = []
    files = []
    for job in jobs:
        while len(free) < job.gpus:
            for context, held in list(running):
                if _join(context, timeout=5):
                    running.remove((context, held))
                    free.extend(held)
        taken, free = free[:job.gpus], free[job.gpus:]
        files.append(tempfile.NamedTemporaryFile(suffix=".json", delete=False).name)
        if torch.cuda.is_available():
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, taken))
        context = spawn(_job_rank, job.gpus, asdict(job), str(model_dir), files[-1], warmup_frames, n, length,
                        tuple(extra), join=False)
        running.append((context, taken))
        time.sleep(1)  # the children read CUDA_VISIBLE_DEVICES at start
    for context, _ in running:
        _join(context)
    return [row for name in files for row in json.loads(Path(name).read_text() or "[]")]


def _join(context: Any, timeout: float | None = None) -> bool:
    """Whether the job's processes have ended (waiting up to ``timeout``, or until they have); a job that failed is
    reported and counts as ended, so the other jobs' rows still come out."""
    try:
        while not context.join(timeout):
            if timeout is not None:
                return False
        return True
    except Exception as error:  # noqa: BLE001 - any failure of a child process: report it, keep the other jobs
        print(f"a job failed: {error}", flush=True)
        return True


def add_floors(rows: list[dict], model_dir: Path, n: int, matmul: float, bandwidth: float) -> None:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(str(model_dir))
    text, vision = TextShape.of(config.text_config), VisionShape.of(config.vision_config)
    for row in rows:
        if "oom" in row:
            continue
        shape = StepShape(row["prompt_tokens"], n, round(row["response_tokens"] / n), row["patches"],
                          row["patches_per_slice"])
        # The floor on G GPUs: the step's work spread perfectly over them.
        row.update({key: value / row["gpus"] if key.endswith("_s") else value
                    for key, value in step_floor(text, vision, shape, matmul, bandwidth).items()})
        row["tokens_per_s"] = n * (row["prompt_tokens"] + row["response_tokens"] / n) / row["total_s"]


def reference_row(config: str, row: dict, rows: list[dict]) -> dict | None:
    """The ``config`` row of the same size that ran (the baseline or the peer), if any."""
    return next((other for other in rows if other["config"] == config and "oom" not in other
                 and (other["frames"], other["side"]) == (row["frames"], row["side"])), None)


LABEL = f"{'config':<12}{'GPUs':>5}{'frames':>7}{'side':>5}"


def _label(row: dict) -> str:
    return f"{row['config']:<12}{row['gpus']:>5}{row['frames']:>7}{row['side']:>5}"


def table(rows: list[dict]) -> str:
    head = (f"{LABEL}{'tokens':>8}" + "".join(f"{p + ' s':>15}" for p in PHASES)
            + f"{'step s':>9}{'peak GiB':>10}{'tokens/s':>10}{'vs base':>9}{'vs peer':>9}{'floor s':>9}{'x floor':>9}")
    lines = [head, "-" * len(head)]
    for row in rows:
        label = _label(row)
        if "oom" in row:
            lines.append(f"{label}  out of GPU memory: {row['oom'][:90]}")
            continue
        speedups = ""
        for config in ("baseline", "peer"):
            other = reference_row(config, row, rows)
            speedups += f"{other['total_s'] / row['total_s']:>8.2f}x" if other else f"{'-':>9}"
        lines.append(f"{label}{row['prompt_tokens']:>8}" + "".join(f"{row[p + '_s']:>15.2f}" for p in PHASES)
                     + f"{row['total_s']:>9.2f}{row['peak_gib']:>10.1f}{row['tokens_per_s']:>10.0f}{speedups}"
                     + f"{row['floor_s']:>9.2f}{row['total_s'] / row['floor_s']:>8.1f}x")
    return "\n".join(lines)


def memory_table(rows: list[dict]) -> str:
    """Where the GPU memory goes at each job's largest size that ran (rank 0, GiB)."""
    largest: dict[tuple[str, int], dict] = {}
    for row in rows:
        if "oom" not in row:
            largest[(row["config"], row["gpus"])] = row
    lines = []
    for (config, gpus), row in largest.items():
        held = ", ".join(f"{key} {value:.1f}" for key, value in row["held"].items())
        lines.append(f"{config} on {gpus} GPU(s), {row['frames']} frames at {row['side']}px: held between steps: {held}")
        for name in PHASES:
            lines.append(f"  {name:<13} starts holding {row[name + '_held_gib']:6.1f}, peaks at {row[name + '_peak_gib']:6.1f}"
                         f" (+{row[name + '_peak_gib'] - row[name + '_held_gib']:.1f} during the phase)")
    return "\n".join(lines)


def engine_table(rows: list[dict]) -> str:
    """The rollout engine after each step that used it (rank 0): weight sync, sleep and wake (seconds, GiB of GPU
    memory freed and taken back), and |p_rollout - p_actor| over the response tokens; empty without such rows."""
    head = (f"{LABEL}{'sync s':>9}{'sleep s':>9}{'frees GiB':>10}{'wake s':>9}{'takes GiB':>10}"
            f"{'|dp| mean':>11}{'|dp| max':>10}")
    lines = [f"{_label(row)}{row['sync_weights_s']:>9.3f}{row['sleep_s']:>9.3f}{row['sleep_freed_gib']:>10.2f}"
             f"{row['wake_s']:>9.3f}{row['wake_taken_gib']:>10.2f}{row['training/rollout_probs_diff/mean']:>11.1e}"
             f"{row['training/rollout_probs_diff/max']:>10.1e}" for row in rows if "sync_weights_s" in row]
    return "\n".join([head, "-" * len(head), *lines]) if lines else ""


def render(machine: str, rows: list[dict]) -> str:
    report = f"{machine}\n{table(rows)}\n\nGPU memory (GiB):\n{memory_table(rows)}"
    engines = engine_table(rows)
    if engines:
        report += f"\n\nThe rollout engine after the step (rank 0; not part of step s):\n{engines}"
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--job", dest="jobs", type=Job.parse, action="append", default=[],
                        help="NAME@GPUS:F[xSIDE],...; NAME one of " + ", ".join(CONFIGS))
    parser.add_argument("--report", type=Path, default=None, help="print the tables of a run saved with --out")
    parser.add_argument("--warmup-frames", type=int, default=64)
    parser.add_argument("--model", choices=("3b", "tiny"), default="3b", help="tiny: the CPU test's model")
    parser.add_argument("--n", type=int, default=N_ROLLOUTS)
    parser.add_argument("--response-length", type=int, default=RESPONSE_LENGTH)
    parser.add_argument("--out", type=Path, default=None, help="write the rows and tables as JSON here")
    parser.add_argument("--override", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="a configuration override for every job but the peer, e.g. "
                             "worker.actor.offload.offload_optimizer=true (repeatable)")
    args = parser.parse_args()
    if args.report is not None:
        saved = json.loads(args.report.read_text())
        print(render(saved["machine"], saved["rows"]))
        return
    if not args.jobs:
        parser.error("give at least one --job (or --report FILE)")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB per engine on vLLM's CPU backend: the tiny model's need
    gpus = torch.cuda.device_count()
    with model_directory(args.model) as model_dir:
        device = torch.device("cuda" if gpus else "cpu")
        matmul, bandwidth = measure_rates(device)
        torch.cuda.empty_cache() if gpus else None
        rows = run_jobs(args.jobs, model_dir, gpus, args.warmup_frames, args.n, args.response_length,
                        tuple(args.overrides))
        add_floors(rows, model_dir, args.n, matmul, bandwidth)
    machine = (f"{gpus} x {torch.cuda.get_device_name(0)}" if gpus else "CPU") + (
        f"; measured bf16 matmul {matmul / 1e12:.0f} TFLOP/s, memory copy {bandwidth / 1e12:.2f} TB/s") + (
        f"; overrides {' '.join(args.overrides)}" if args.overrides else "")
    report = render(machine, rows)
    print(report, flush=True)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"machine": machine, "matmul_flops": matmul, "memory_bandwidth": bandwidth,
                                        "rows": rows, "report": report}, indent=1))


if __name__ == "__main__":
    main()
