"""Tiny diffusers-layout pipelines (real SD3 / Wan transformers, CLIP / T5 / UMT5 encoders, locally trained
tokenizers), built once per test session, and a GenEval-style prompt file."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from longrl.flow.tiny import build_tiny_pipeline

# GenEval-style rows: colour attributes and a colour + position relation.
PROMPT_ROWS = [
    {"tag": "color_attr", "prompt": "a photo of a red car", "include": [{"class": "car", "count": 1, "color": "red"}]},
    {"tag": "color_attr", "prompt": "a photo of a blue bench",
     "include": [{"class": "bench", "count": 1, "color": "blue"}]},
    {"tag": "position", "prompt": "a photo of a red apple left of a blue cup",
     "include": [{"class": "apple", "count": 1, "color": "red"},
                 {"class": "cup", "count": 1, "color": "blue", "position": ["right of", 0]}]},
    {"tag": "color_attr", "prompt": "a photo of a green dog",
     "include": [{"class": "dog", "count": 1, "color": "green"}]},
]


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``tiny_pipeline(family, vae=False)``: that family's tiny pipeline directory (seed 0), built once."""
    built: dict[tuple[str, bool], Path] = {}

    def get(family: str, vae: bool = False) -> Path:
        if (family, vae) not in built:
            out = tmp_path_factory.mktemp(f"tiny_{family}_{'vae' if vae else 'pixels'}")
            built[family, vae] = build_tiny_pipeline(out, family, seed=0, vae=vae)
        return built[family, vae]

    return get


@pytest.fixture(scope="session")
def prompt_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "geneval.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in PROMPT_ROWS))
    return path
