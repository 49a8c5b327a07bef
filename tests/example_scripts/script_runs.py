"""An example script run as a user runs it: ``bash examples/NAME.sh [args]`` with the model, data and GPU count in the
environment. A run returns its metrics rows. A script whose training path another script's run already covers is
checked by its command instead: the script runs with a stand-in interpreter that records the arguments it is handed,
and those compose (as ``--cfg job`` would) in this process, which costs milliseconds instead of a training step."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from longrl.config.loader import compose_config, split_config_file_argument

REPO = Path(__file__).resolve().parents[2]
RECORD_ARGUMENTS = "#!/bin/sh\nprintf '%s\\0' \"$@\"\n"


def script_env(model_dir: Path, train_files: Path, val_files: Path | None = None, gpus: int = 1) -> dict[str, str]:
    """The environment a script reads: the tiny model, local rows, ``gpus`` ranks on one node, this interpreter."""
    return {**os.environ, "PYTHON": sys.executable, "MODEL_PATH": str(model_dir), "TRAIN_FILES": str(train_files),
            "VAL_FILES": str(val_files or train_files), "N_GPUS_PER_NODE": str(gpus)}


def run_to_exit(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    """``args`` run in ``cwd`` until it exits, its output (text) captured in files. Through pipes the run would also
    wait for every process holding them: the trainer's orphan reaper (:mod:`longrl.controller.orphan_reaper`) inherits
    its stderr and outlives it by its grace period, seconds per training run."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        done = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=err, text=True, timeout=600)
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(args, done.returncode, out.read(), err.read())


def _bash(script: str, args: list[str], env: dict[str, str], cwd: Path) -> str:
    done = run_to_exit(["bash", str(REPO / "examples" / f"{script}.sh"), *args], env, cwd)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def run_script(script: str, args: list[str], env: dict[str, str], cwd: Path) -> list[dict[str, Any]]:
    """Train with ``examples/<script>.sh`` in ``cwd``; the rows of its metrics file (the run is named after it)."""
    _bash(script, args, env, cwd)
    metrics = cwd / "outputs/logs/longrl" / script / "metrics.jsonl"
    return [json.loads(line) for line in metrics.read_text().splitlines()]


def command(script: str, args: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """The arguments ``examples/<script>.sh`` hands its interpreter (``-m longrl.trainer.main ...``)."""
    recorder = cwd / "record_arguments"
    recorder.write_text(RECORD_ARGUMENTS)
    recorder.chmod(0o755)
    return _bash(script, args, {**env, "PYTHON": str(recorder)}, cwd).split("\0")[:-1]


def composed(argv: list[str]) -> dict[str, Any]:
    """The configuration ``python -m longrl.trainer.main *argv`` composes, as a nested dict."""
    config_file, overrides = split_config_file_argument(argv)
    return OmegaConf.to_container(compose_config(overrides, config_file=config_file))


def without(tree: dict[str, Any], *keys: str) -> dict[str, Any]:
    """``tree`` less the dotted ``keys`` (a copy), to compare two scripts' configurations on everything else."""
    tree = json.loads(json.dumps(tree))
    for key in keys:
        *parents, leaf = key.split(".")
        node = tree
        for parent in parents:
            node = node[parent]
        del node[leaf]
    return tree
