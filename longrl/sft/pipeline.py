"""``python -m longrl.sft.pipeline [key=value ...] [--sft key=value ...] [--rl key=value ...]``: Long-RL's two
stages in one command, CoT-SFT then RL, with the held-out split evaluated before, between and after.

1. evaluate the base model on ``data.test_files``;
2. CoT-SFT (``configs/sft.yaml``) from ``worker.actor.model.model_path``; merge its last checkpoint; evaluate it;
3. RL (``configs/config.yaml``, ``algorithm=`` as usual) from the merged SFT model; merge; evaluate it;
4. print the three accuracies side by side and chart them (``test_accuracy.png`` in the RL stage's log directory);
5. score the control: the RL model with every frame replaced by its video's median frame, next to chance (a model
   that answers from the video falls to chance; one that answers from the question alone does not).

Overrides before any marker apply to both stages (data, model, frames, cluster size); those after ``--sft`` or
``--rl`` to that stage only. Both replace the stage defaults (:data:`SFT_STAGE_DEFAULTS`, :data:`RL_STAGE_DEFAULTS`).
``make quickstart`` runs this on the quickstart default (synthetic videos, a tiny random Qwen2.5-VL).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Sequence

from longrl.config.schema import RootConfig
from longrl.sft.main import run as run_sft
from longrl.trainer.curves import plot_stage_accuracy
from longrl.trainer.main import answer_help_or_cfg, config_from_argv
from longrl.trainer.main import run as run_rl
from longrl.trainer.quickstart import quickstart_test_split_mismatch

# Each stage's own defaults in the pipeline, under every override on the command line (the standalone entry points
# keep their configs' values). On the quickstart default, SFT learns from an imperfect annotator's traces
# (configs/sft.yaml), whose near-tie bias it takes on, and stops at 260 of its 320 steps, before the tiny model reads
# every video; GRPO on the true answers has that headroom to take: 120 steps of 4 prompts x 8 responses at a learning
# rate that moves a tiny model (configs/config.yaml keeps EasyR1's 1e-6 for real ones).
SFT_STAGE_DEFAULTS = ("trainer.max_steps=260",)
RL_STAGE_DEFAULTS = ("trainer.max_steps=120", "trainer.total_epochs=2", "worker.actor.optim.lr=1e-4",
                     "worker.rollout.n=8")
STAGE_MARKERS = ("--sft", "--rl")


def split_stage_arguments(argv: Sequence[str]) -> dict[str, list[str]]:
    """``argv`` -> ``{"shared": [...], "sft": [...], "rl": [...]}`` by the ``--sft`` / ``--rl`` markers."""
    stages: dict[str, list[str]] = {"shared": [], "sft": [], "rl": []}
    current = "shared"
    for arg in argv:
        if arg in STAGE_MARKERS:
            current = arg[2:]
        else:
            stages[current].append(arg)
    return stages


def evaluate_stage(cfg: RootConfig, model_dir: str | Path, stage: str, constant_frames: bool = False) -> dict[str, Any]:
    """Greedy accuracy of ``model_dir`` on ``data.test_files`` with the run's frame sampling and format prompt
    (``constant_frames``: the control, every frame replaced by its video's median frame)."""
    from longrl.eval import evaluate, format_report

    rollout, data = cfg.worker.rollout, cfg.data
    result = evaluate(model_dir, data.test_files, video_dir=data.video_dir, num_video_frames=rollout.num_video_frames,
                      fps=rollout.fps, max_video_frames=rollout.max_video_frames, max_pixels=data.max_pixels,
                      min_pixels=data.min_pixels, thinking_prompt=data.format_prompt, batch_size=16,
                      max_new_tokens=data.max_response_length, on_bad_row=data.on_bad_row,
                      output_dir=Path("outputs") / "eval" / cfg.trainer.experiment_name / stage,
                      constant_frames=constant_frames)
    print(f"test accuracy {stage}: {format_report(result.metrics)}")
    print(f"  generations: {result.output_dir / 'generations.jsonl'}")
    return result.metrics


def run_pipeline(argv: Sequence[str]) -> dict[str, dict[str, Any]] | None:
    """Run the stages; returns each evaluation's metrics by stage (``base``, ``sft``, ``rl``, and ``control``), None
    on a config error."""
    stages = split_stage_arguments(argv)
    sft_cfg = config_from_argv([*SFT_STAGE_DEFAULTS, *stages["shared"], *stages["sft"]], default_config_name="sft")
    if sft_cfg is None:
        return None
    problem = ("the pipeline evaluates on data.test_files; set it" if not sft_cfg.data.test_files
               else quickstart_test_split_mismatch(sft_cfg))
    if problem is not None:
        print(f"config error: {problem}", file=sys.stderr)
        return None
    results = {"base": evaluate_stage(sft_cfg, sft_cfg.worker.actor.model.model_path, "base")}
    _, sft_model = run_sft(sft_cfg)
    results["sft"] = evaluate_stage(sft_cfg, sft_model, "sft")
    rl_cfg = config_from_argv([*RL_STAGE_DEFAULTS, *stages["shared"], f"worker.actor.model.model_path={sft_model}",
                               *stages["rl"]])
    if rl_cfg is None:
        return None
    _, rl_model = run_rl(rl_cfg)
    if rl_model is None:
        print("config error: the RL stage saved no checkpoint to evaluate; set trainer.save_freq", file=sys.stderr)
        return None
    results["rl"] = evaluate_stage(rl_cfg, rl_model, "rl")
    print("test accuracy by stage: " + ", ".join(f"{stage} {metrics['accuracy']:.3f}"
                                                 for stage, metrics in results.items()))
    control = evaluate_stage(rl_cfg, rl_model, "rl_constant_frames", constant_frames=True)
    print("control: the RL model with every frame replaced by its video's median frame scores "
          f"{control['accuracy']:.3f}"
          + ("" if control["chance"] is None else f" (chance {control['chance']:.3f})"))
    log_dir = Path("outputs") / "logs" / rl_cfg.trainer.project_name / rl_cfg.trainer.experiment_name
    chart = plot_stage_accuracy({stage: metrics["accuracy"] for stage, metrics in results.items()}, log_dir)
    print(f"curve: {chart}")
    return {**results, "control": control}


def answer_help_or_cfg_by_stage(argv: Sequence[str]) -> int | None:
    """``--help``: the pipeline's usage and the keys (both stages take the same ones); ``--cfg job``: each stage's
    composed configuration (the RL stage's before the SFT model path is filled in). None when asked neither."""
    informational = [arg for arg in argv if arg in ("--help", "-h", "--cfg", "--resolve")]
    if not informational:
        return None
    usage = __doc__.split("\n\n")[0]
    if "--help" in informational or "-h" in informational:
        return answer_help_or_cfg(["--help"], "config", usage=usage)
    flags = ["--cfg", "job"] + (["--resolve"] if "--resolve" in informational else [])
    stages = split_stage_arguments([arg for arg in argv if arg not in ("--cfg", "job", "--resolve")])
    for name, config_name, extra in (("sft", "sft", SFT_STAGE_DEFAULTS), ("rl", "config", RL_STAGE_DEFAULTS)):
        print(f"# {name} stage")
        status = answer_help_or_cfg([*extra, *stages["shared"], *stages[name], *flags], config_name)
        if status:
            return status
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    answered = answer_help_or_cfg_by_stage(argv)
    if answered is not None:
        return answered
    return 0 if run_pipeline(argv) is not None else 2


if __name__ == "__main__":
    sys.exit(main())
