"""Fixtures for the LongVideo-Reason pipeline tests (helpers in ``lvr_helpers.py``); puts the pipeline's package,
``longvideo-reason/lvreason``, on the import path as its scripts do (appended, so the folder's step scripts can
never shadow an installed module of the same name)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lvr_helpers import REPO, Reply, ScriptedEndpoint, write_index_video

sys.path.append(str(REPO / "longvideo-reason"))


@pytest.fixture(scope="session")
def long_videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A videos directory: ``cooking.mp4`` (12 s) and ``sports/match.mp4`` (10 s), both 2 fps index videos."""
    root = tmp_path_factory.mktemp("videos")
    write_index_video(root / "cooking.mp4", 24, 2.0)
    write_index_video(root / "sports" / "match.mp4", 20, 2.0)
    return root


@pytest.fixture
def scripted_endpoint() -> Iterator[Callable[[Callable[[dict[str, Any]], Reply]], ScriptedEndpoint]]:
    """``scripted_endpoint(script)``: a running :class:`ScriptedEndpoint`, stopped after the test."""
    started: list[ScriptedEndpoint] = []

    def start(script: Callable[[dict[str, Any]], Reply]) -> ScriptedEndpoint:
        started.append(ScriptedEndpoint(script))
        return started[-1]

    yield start
    for endpoint in started:
        endpoint.stop()


