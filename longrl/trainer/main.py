"""``python -m longrl.trainer.main [config=FILE] [key=value ...]`` (also the ``longrl-train`` console script).

The arguments are EasyR1's: an optional ``config=FILE`` and Hydra-style overrides; ``--config-name NAME`` picks
another file of ``configs/``. On the embedded default the synthetic dataset and the tiny model are generated first.
It then trains (GRPO / DAPO / REINFORCE per ``algorithm=``), validates before and after, checkpoints, merges the last
checkpoint into a Hugging Face directory and prints where everything is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from longrl.config.errors import ConfigError
from longrl.config.loader import load_config, split_config_file_argument
from longrl.config.schema import RootConfig
from longrl.trainer.embedded import prepare_embedded_default

if TYPE_CHECKING:
    from longrl.trainer.run import TrainingRun


def _config_name(argv: list[str], default: str) -> tuple[str, list[str]]:
    if "--config-name" in argv:
        at = argv.index("--config-name")
        return argv[at + 1], argv[:at] + argv[at + 2:]
    return default, argv


def report_checkpoint(trainer: "TrainingRun") -> Path | None:
    """Print the run's last checkpoint, merge it into a Hugging Face directory and print that; returns the merged
    directory (None when nothing was saved)."""
    from longrl.trainer.merge import merge_actor_checkpoint

    latest = trainer.checkpoints.latest_step()
    merged = None
    if latest is not None:
        actor_dir = trainer.checkpoints.step_dir(latest) / "actor"
        print(f"checkpoint: {actor_dir.parent}")
        merged = merge_actor_checkpoint(actor_dir, overwrite=True)
        print(f"merged Hugging Face model: {merged}")
    print(f"metrics: {trainer.log_dir / 'metrics.jsonl'}")
    return merged


def run(cfg: RootConfig) -> tuple[dict[str, dict[str, float]], Path | None]:
    """Train, then report where everything went; returns the before/after validation metrics and the merged model
    directory of the last checkpoint (None when none was saved)."""
    from longrl.trainer.rl_trainer import RLTrainer

    trainer = RLTrainer(cfg)
    try:
        summary = trainer.fit()
    finally:
        trainer.shutdown()
    for when in ("before", "after"):
        if when in summary:
            values = summary[when]
            tasks = ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in values.items()
                              if k.startswith("val/accuracy/"))
            print(f"validation {when} training: reward {values['val/reward']:.3f}, accuracy "
                  f"{values['val/accuracy']:.3f} ({tasks})")
    return summary, report_checkpoint(trainer)


def config_from_argv(argv: Sequence[str] | None, default_config_name: str = "config",
                     schema: tuple | None = None) -> Any:
    """EasyR1-style arguments -> the validated config, with the embedded default's artefacts generated; None (after
    printing why) on a config error. ``schema`` (see :func:`load_config`) is for a stage with its own config tree
    (Flow-GRPO), which has no embedded default."""
    argv = list(sys.argv[1:] if argv is None else argv)
    config_name, argv = _config_name(argv, default_config_name)
    config_file, overrides = split_config_file_argument(argv)
    try:
        if schema is not None:
            return load_config(overrides, config_file=config_file, config_name=config_name, schema=schema)
        cfg = load_config(overrides, config_file=config_file, config_name=config_name)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None
    for line in prepare_embedded_default(cfg):
        print(f"generated {line}")
    return cfg


def cli(argv: Sequence[str] | None, run_stage: Callable[[Any], object], default_config_name: str,
        schema: tuple | None = None) -> int:
    """A stage's command line: the config from ``argv``, then ``run_stage``; exit status 2 on a config error."""
    cfg = config_from_argv(argv, default_config_name, schema)
    if cfg is None:
        return 2
    run_stage(cfg)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli(argv, run, "config")


if __name__ == "__main__":
    sys.exit(main())
