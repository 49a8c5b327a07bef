"""Model names as users write them: a local directory, or a Hugging Face hub ID resolved through the local cache.

EasyR1's and Long-RL's scripts default to hub IDs (``Qwen/Qwen2.5-VL-3B-Instruct``). An ID is looked up in the cache
(``HF_HOME`` / ``HF_HUB_CACHE``) first, without the network, so an offline cluster with a filled cache works; only
when the cache lacks it is a download tried. The driver resolves the ID once, so every worker loads the same files.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["resolve_model_path"]

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def resolve_model_path(name: str, key: str = "worker.actor.model.model_path") -> str:
    """A local directory holding the model ``name``: ``name`` itself when it exists or cannot be a hub ID (its loader
    reports a missing path), else the cached (or, when the network allows, downloaded) snapshot of the hub ID
    ``name``. Raises :class:`FileNotFoundError` saying where it looked."""
    if Path(name).exists() or not _REPO_ID.match(name):
        return name
    from huggingface_hub import constants, snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (huggingface_hub's error types vary across versions): try the hub
        pass
    try:
        return snapshot_download(name)
    except Exception as error:  # noqa: BLE001 - offline, unknown repo, no access: all end in the same message
        raise FileNotFoundError(
            f"{key}={name!r}: not a local directory, not in the Hugging Face cache ({constants.HF_HUB_CACHE}), and "
            f"the download failed ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            f"Download it where the network allows (`huggingface-cli download {name}`) with the same HF_HOME, or "
            f"pass a local directory"
        ) from error
