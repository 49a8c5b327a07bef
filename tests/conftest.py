"""Shared fixtures: offline mode for the whole suite, and one tiny model directory per family per session."""

from __future__ import annotations

import os

# Everything here is built locally; any attempt to reach the hub must fail loudly instead of downloading.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

import pytest  # noqa: E402

from longrl.models import get_adapter  # noqa: E402


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """``tiny_model_dir(family)``: that family's tiny model (seed 0), built once per test session."""
    built: dict[str, Path] = {}

    def get(family: str) -> Path:
        if family not in built:
            built[family] = get_adapter(family).build_tiny(tmp_path_factory.mktemp(f"tiny_{family}"), seed=0)
        return built[family]

    return get
