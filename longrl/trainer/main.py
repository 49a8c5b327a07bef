"""``python -m longrl.trainer.main [config=FILE] [key=value ...]`` (also the ``longrl-train`` console script).

The arguments are EasyR1's: an optional ``config=FILE`` and Hydra-style overrides; ``--config-name NAME`` picks
another file of ``configs/``. On the quickstart default the synthetic dataset and the tiny model are generated first.
It then trains (GRPO / DAPO / REINFORCE per ``algorithm=``), validates before and after, checkpoints, merges the last
checkpoint into a Hugging Face directory and prints where everything is.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from omegaconf import OmegaConf

from longrl.config.describe import config_help
from longrl.config.errors import ConfigError
from longrl.config.loader import DEFAULT_SCHEMA, compose_config, load_config, split_config_file_argument
from longrl.config.schema import RootConfig
from longrl.config.stage_schema import StageSchema
from longrl.models.hub import resolve_dataset_specs, resolve_hub_path
from longrl.trainer.quickstart import prepare_quickstart_default

if TYPE_CHECKING:
    from longrl.trainer.run import TrainingRun


def _config_name(argv: list[str], default: str) -> tuple[str, list[str]]:
    if "--config-name" in argv:
        at = argv.index("--config-name")
        return argv[at + 1], argv[:at] + argv[at + 2:]
    return default, argv


def report_checkpoint(trainer: "TrainingRun") -> Path | None:
    """Print the run's last checkpoint, merge it into a Hugging Face directory and print that, then the metrics file
    and the curves drawn from it; returns the merged directory (None when nothing was saved)."""
    from longrl.trainer.curves import report_curves
    from longrl.trainer.merge import merge_actor_checkpoint

    latest = trainer.checkpoints.latest_step()
    merged = None
    if latest is not None:
        actor_dir = trainer.checkpoints.step_dir(latest) / "actor"
        print(f"checkpoint: {actor_dir.parent}")
        merged = merge_actor_checkpoint(actor_dir, overwrite=True)
        print(f"merged Hugging Face model: {merged}")
    print(f"metrics: {trainer.log_dir / 'metrics.jsonl'}")
    report_curves(trainer.log_dir)
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
                     schema: StageSchema | None = None) -> Any:
    """EasyR1-style arguments -> the validated config, with the quickstart default's artefacts generated; None (after
    printing why) on a config error. ``schema`` (see :func:`load_config`) is for a stage with its own config tree
    (Flow-GRPO), which has no quickstart default."""
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
    for line in prepare_quickstart_default(cfg):
        print(f"generated {line}")
    model = cfg.worker.actor.model
    try:
        model.model_path = resolve_hub_path(model.model_path, "worker.actor.model.model_path")
        for split in ("train_files", "val_files"):
            if getattr(cfg.data, split):
                setattr(cfg.data, split, resolve_dataset_specs(getattr(cfg.data, split), f"data.{split}"))
        if isinstance(cfg, RootConfig) and cfg.data.override_chat_template:  # workers may start elsewhere
            cfg.data.override_chat_template = str(Path(cfg.data.override_chat_template).expanduser().resolve())
    except FileNotFoundError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return None
    return cfg


def answer_help_or_cfg(argv: Sequence[str], default_config_name: str, schema: StageSchema | None = None,
                       usage: str = "") -> int | None:
    """Answer ``--help`` / ``-h`` (every key with its default and note) or Hydra's ``--cfg job`` (the composed
    configuration, ``--resolve`` to resolve interpolations); the exit status, or None when ``argv`` asks neither."""
    argv = list(argv)
    wants_help = "--help" in argv or "-h" in argv
    if not wants_help and "--cfg" not in argv:
        return None
    resolve = "--resolve" in argv
    argv = [arg for arg in argv if arg not in ("--help", "-h", "--resolve")]
    if "--cfg" in argv:
        at = argv.index("--cfg")
        what = argv[at + 1] if at + 1 < len(argv) else None
        if what not in ("job", "all"):
            print(f"config error: --cfg takes 'job' (the composed configuration), got {what!r}", file=sys.stderr)
            return 2
        argv = argv[:at] + argv[at + 2:]
    config_name, argv = _config_name(argv, default_config_name)
    config_file, overrides = split_config_file_argument(argv)
    schema = schema or DEFAULT_SCHEMA
    try:
        composed = compose_config(overrides, config_file=config_file, config_name=config_name, schema=schema)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if wants_help:
        print(config_help(usage or __doc__.split("\n\n")[0], composed, schema.tree))
    else:
        print(OmegaConf.to_yaml(composed, resolve=resolve), end="")
    return 0


def cli(argv: Sequence[str] | None, run_stage: Callable[[Any], object], default_config_name: str,
        schema: StageSchema | None = None, usage: str = "") -> int:
    """A stage's command line: ``--help`` / ``--cfg job``, else the config from ``argv``, then ``run_stage``; exit
    status 2 on a config error. ``usage`` heads the help (the entry point's docstring summary)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    answered = answer_help_or_cfg(argv, default_config_name, schema, usage)
    if answered is not None:
        return answered
    cfg = config_from_argv(argv, default_config_name, schema)
    if cfg is None:
        return 2
    try:
        run_stage(cfg)
    except ConfigError as exc:  # one only the run's files reveal, e.g. a checkpoint written by another run
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return cli(argv, run, "config")


if __name__ == "__main__":
    sys.exit(main())
