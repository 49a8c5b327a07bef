"""Model and dataset names as users write them: a local path, or a Hugging Face hub ID resolved through the local cache.

EasyR1's and Long-RL's scripts default to hub IDs (``Qwen/Qwen2.5-VL-3B-Instruct``, ``hiyouga/math12k@train``). An ID is looked up in the cache
(``HF_HOME`` / ``HF_HUB_CACHE``) first, without the network, so an offline cluster with a filled cache works; only
when the cache lacks it is a download tried. The driver resolves the ID once, so every worker loads the same files.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["family_named_in", "resolve_dataset_specs", "resolve_hub_path"]

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
_DATA_FILE_SUFFIXES = (".json", ".jsonl", ".parquet")


def family_named_in(name: str, families_by_word: dict[str, str]) -> str | None:
    """The family whose word occurs in ``name`` (a hub ID or path as a script writes it, lower-cased, ``.`` and ``-``
    read as ``_``), the longest word winning (``qwen2_5_vl`` over ``qwen2``); None when no word occurs."""
    words = re.sub(r"[.\-]", "_", name.lower())
    matches = [(len(word), family) for word, family in families_by_word.items() if word in words]
    return max(matches)[1] if matches else None


def resolve_hub_path(name: str, key: str, repo_type: str = "model") -> str:
    """A local directory holding ``name``: ``name`` itself when it exists or cannot be a hub ID (its loader reports a
    missing path), else the cached (or, when the network allows, downloaded) snapshot of the hub repository ``name``
    of ``repo_type``. Raises :class:`FileNotFoundError` naming ``key`` and where it looked."""
    if Path(name).expanduser().exists() or not _REPO_ID.match(name):
        return name
    from huggingface_hub import constants, snapshot_download

    try:
        return snapshot_download(name, repo_type=repo_type, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached (huggingface_hub's error types vary across versions): try the hub
        pass
    try:
        return snapshot_download(name, repo_type=repo_type)
    except Exception as error:  # noqa: BLE001 - offline, unknown repo, no access: all end in the same message
        type_flag = "" if repo_type == "model" else f" --repo-type {repo_type}"
        raise FileNotFoundError(
            f"{key}={name!r}: not a local path, not in the Hugging Face cache ({constants.HF_HUB_CACHE}), and "
            f"the download failed ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            f"Download it where the network allows (`huggingface-cli download{type_flag} {name}`) with the same "
            f"HF_HOME, or pass a local path"
        ) from error


def resolve_dataset_specs(specs: str, key: str) -> str:
    """``specs`` (comma-separated ``path[@split]``) with each hub dataset ID replaced by its cached snapshot directory,
    the split kept; local paths pass through unchanged."""
    resolved = []
    for spec in (part.strip() for part in specs.split(",") if part.strip()):
        name, at, split = spec.partition("@")
        if Path(name).suffix not in _DATA_FILE_SUFFIXES:  # a missing data file is its reader's error, not a hub ID
            name = resolve_hub_path(name, key, repo_type="dataset")
        resolved.append(name + at + split)
    return ",".join(resolved)
