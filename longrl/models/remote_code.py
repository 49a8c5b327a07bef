"""A model directory's own Python ("remote code"): found, refused unless trusted, and announced when it runs.

Hugging Face directories can ship ``*.py`` files that ``config.json`` (or the tokenizer / processor config) names in
``auto_map``; loading with ``trust_remote_code`` imports and runs them. longrl passes the user's
``worker.actor.model.trust_remote_code`` to every loader, refuses a directory that can only be loaded through its
own code when that key is false, and logs the files that run when it is true.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

TRUST_KEY = "worker.actor.model.trust_remote_code"
_CONFIG_FILES = ("config.json", "tokenizer_config.json", "preprocessor_config.json", "processor_config.json")

logger = logging.getLogger(__name__)


class RemoteCodeRefused(ValueError):
    """The model directory needs its own Python code to load, and trust_remote_code is false."""


def remote_code_files(model_dir: str | Path) -> list[Path]:
    """The ``*.py`` files in ``model_dir`` that an ``auto_map`` of its config files names, sorted."""
    model_dir = Path(model_dir)
    files: set[Path] = set()
    for name in _CONFIG_FILES:
        path = model_dir / name
        if not path.is_file():
            continue
        auto_map = json.loads(path.read_text()).get("auto_map") or {}
        for target in auto_map.values():
            for reference in target if isinstance(target, list) else [target]:
                if isinstance(reference, str) and "--" not in reference:  # "repo--module.Class" lives elsewhere
                    module = model_dir / f"{reference.rsplit('.', 1)[0].replace('.', '/')}.py"
                    if module.is_file():
                        files.add(module)
    return sorted(files)


def announce_remote_code(model_dir: str | Path, trust_remote_code: bool) -> list[Path]:
    """Log the files of ``model_dir`` that loading with ``trust_remote_code`` will run; return them (none if not
    trusted: transformers then uses its own classes, or refuses)."""
    files = remote_code_files(model_dir) if trust_remote_code else []
    if files:
        logger.warning("%s=true: running the Python code of %s (%s)", TRUST_KEY, model_dir,
                       ", ".join(file.name for file in files))
    return files


def require_trust(model_dir: str | Path, trust_remote_code: bool, files: list[Path]) -> None:
    """Refuse, naming the key, to load ``model_dir`` through its own code ``files`` unless trusted."""
    if not trust_remote_code:
        raise RemoteCodeRefused(
            f"{model_dir} is loaded through its own Python code ({', '.join(str(file) for file in files)}), which "
            f"would run on this machine; read it, then set {TRUST_KEY}=true (trust_remote_code=True in VideoModel, "
            "--trust-remote-code on the scripts) to allow it"
        )
    announce_remote_code(model_dir, trust_remote_code)
