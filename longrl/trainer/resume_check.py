"""Refuse to resume from a checkpoint that another run (other algorithm, model or data) wrote.

Resuming is automatic from the latest step under the checkpoint root, so a new run pointed at an old run's
directory would otherwise continue the old run's weights under new settings, and its ``trainer.save_limit`` would
then prune the old run's steps. The run configuration each step saves (``config.yaml``) is compared on the keys that
make a run a different run; hyper-parameters that are commonly tuned between restarts are not compared.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from longrl.config.errors import ConfigError

CONFIG_FILE = "config.yaml"

# What makes a checkpoint another run's: the algorithm (the keys that `algorithm=grpo|dapo|reinforce` and the loss
# choose), the model, and the training data.
RUN_IDENTITY_KEYS = (
    "algorithm.adv_estimator",
    "algorithm.disable_kl",
    "algorithm.use_kl_loss",
    "algorithm.online_filtering",
    "worker.actor.loss_type",
    "worker.actor.loss_agg_mode",
    "worker.actor.model.model_path",
    "data.train_files",
)

logger = logging.getLogger(__name__)


def check_resume_matches(step_dir: Path, cfg: Any) -> None:
    """Raise :class:`ConfigError` listing the identity keys whose value in ``step_dir``'s saved configuration differs
    from ``cfg``'s, unless ``cfg.trainer.resume_mismatch == "allow"`` (then log them)."""
    saved_file = step_dir / CONFIG_FILE
    if not saved_file.is_file():
        logger.warning("checkpoint %s has no %s; cannot check that it was written by a run with the same algorithm, "
                       "model and data", step_dir, CONFIG_FILE)
        return
    saved, current = OmegaConf.load(saved_file), OmegaConf.structured(cfg)
    differences = [f"  {key}: checkpoint {old!r}, this run {new!r}" for key in RUN_IDENTITY_KEYS
                   if not _same(old := OmegaConf.select(saved, key), new := OmegaConf.select(current, key))]
    if not differences:
        return
    listing = "\n".join(differences)
    if cfg.trainer.resume_mismatch == "allow":
        logger.warning("resuming from %s although it was written with other settings "
                       "(trainer.resume_mismatch=allow):\n%s", step_dir, listing)
        return
    raise ConfigError(
        f"refusing to resume from {step_dir}: it was written by a run with other settings\n{listing}\n"
        "Give this run its own trainer.save_checkpoint_path (or trainer.experiment_name), or set "
        "trainer.resume_mismatch=allow to continue from these weights anyway."
    )


def _same(old: Any, new: Any) -> bool:
    """Equal values, or two spellings (relative, absolute, symlinked) of one existing local path."""
    if old == new:
        return True
    if isinstance(old, str) and isinstance(new, str) and os.path.exists(old) and os.path.exists(new):
        return os.path.samefile(old, new)
    return False
