"""Command lines: ``python longvideo-reason/<step>.py`` runs one step, ``python longvideo-reason/pipeline.py`` all.

Both take ``--config FILE`` and dotted ``key=value`` overrides (``seed=3``, ``models.generator.model=qwen``,
``force=[caption]``); a step script's ``--force`` re-runs that step even if its outputs exist.
"""

from __future__ import annotations

import argparse
import json
import logging
from typing import Optional

import longrl  # noqa: F401  (before anything imports torchvision: the CPU shim)

from lvreason.backends import BackendConfigError, ModelPool
from lvreason.config import ConfigError, load_config
from lvreason.pipeline import StepFailed, StepResult, run_pipeline, run_step


def _parse(description: str, argv: Optional[list[str]], with_force: bool) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="a YAML config (see longvideo-reason/config.example.yaml)")
    if with_force:
        parser.add_argument("--force", action="store_true", help="re-run the step even if its outputs exist")
    parser.add_argument("overrides", nargs="*", help="dotted key=value overrides of the config")
    return parser.parse_args(argv)


def _report(name: str, result: StepResult) -> None:
    print(f"{name}: " + (json.dumps(result.stats) if result.ran else "skipped (outputs exist)"), flush=True)


def main(step: Optional[str] = None, argv: Optional[list[str]] = None) -> dict[str, StepResult]:
    """Run ``step`` (or, with None, the whole pipeline) from the command line ``argv``."""
    args = _parse(f"LongVideo-Reason pipeline: {step or 'all steps'}", argv, with_force=step is not None)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
        if step is None:
            results = run_pipeline(cfg)
        else:
            results = {step: run_step(step, cfg, ModelPool(cfg.models), force=args.force)}
    except (ConfigError, BackendConfigError, FileNotFoundError, StepFailed) as error:  # the message says what to fix
        raise SystemExit(f"error: {error}") from None
    for name, result in results.items():
        _report(name, result)
    return results
