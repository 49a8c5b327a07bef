"""``python -m longrl.sft.main [config=FILE] [key=value ...]`` (also ``longrl-sft``): CoT-SFT, then the merged model.

The arguments are the RL entry point's (``configs/sft.yaml`` by default, ``--config-name`` picks another file of
``configs/``), with the same keys: point ``data.*`` at rows with reasoning traces and ``worker.actor.model.model_path``
at the base model. The last checkpoint is merged into a Hugging Face directory, which the RL stage then takes as
``worker.actor.model.model_path``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

from longrl.config.schema import RootConfig
from longrl.trainer.main import cli, report_checkpoint


def run(cfg: RootConfig) -> tuple[dict[str, dict[str, float]], Path | None]:
    """Fine-tune, report, merge; returns the before/after validation loss and the merged model directory."""
    from longrl.sft.trainer import SFTTrainer

    trainer = SFTTrainer(cfg)
    try:
        summary = trainer.fit()
    finally:
        trainer.shutdown()
    for when, values in summary.items():
        print(f"validation loss {when} SFT: {values['val/sft_loss']:.4f}")
    return summary, report_checkpoint(trainer)


def main(argv: Sequence[str] | None = None) -> int:
    return cli(argv, run, "sft", usage=__doc__.split("\n\n")[0])


if __name__ == "__main__":
    sys.exit(main())
