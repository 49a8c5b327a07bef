"""``python -m longrl.flow.main [config=FILE] [key=value ...]`` (also the ``longrl-flow`` console script).

Flow-GRPO on an image or video generator (a diffusers pipeline directory: SD3 or Wan), with the text stages' argument
habits: an optional ``config=FILE`` and Hydra overrides over ``configs/flow.yaml`` (``--config-name NAME`` picks
another file of ``configs/``). It trains, validates before and after (the mean reward of ODE samples of
``data.val_files``), checkpoints, and prints where the checkpoint, metrics, curves and validation media went, and the
command that turns the checkpoint into a diffusers pipeline directory (:mod:`longrl.flow.merge`).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from longrl.flow.config import FlowRootConfig
from longrl.flow.validate import FLOW_SCHEMA
from longrl.trainer.curves import report_curves
from longrl.trainer.main import cli


def run(cfg: FlowRootConfig) -> dict[str, dict[str, float]]:
    """Train; print the validation reward before and after and where everything went; return the validation
    metrics (``before`` / ``after``, empty without a validation split)."""
    from longrl.flow.trainer import FlowTrainer

    trainer = FlowTrainer(cfg)
    try:
        summary = trainer.fit()
    finally:
        trainer.shutdown()
    for when, values in summary.items():
        print(f"validation {when} training: reward {values['val/reward']:.4f}")
    latest = trainer.checkpoints.latest_step()
    if latest is not None:
        actor_dir = trainer.checkpoints.step_dir(latest) / "actor"
        print(f"checkpoint: {actor_dir.parent}")
        print(f"pipeline with the trained transformer: python -m longrl.flow.merge --local_dir {actor_dir}")
    print(f"metrics: {trainer.log_dir / 'metrics.jsonl'}")
    report_curves(trainer.log_dir)
    print(f"validation media: {trainer.log_dir / 'media'}")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    return cli(argv, run, "flow", FLOW_SCHEMA, usage=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
