"""The one interface every step uses to reach a model, whichever backend serves the role.

A step hands a batch of :class:`Request` s to :meth:`Backend.complete` and gets, per request, its ``n`` replies or
``None`` where the request failed after the backend's own retries. Steps never see HTTP or model code, so a role
moves between a hosted endpoint and a local directory by changing its config only. :class:`ModelPool` builds each
role's backend on first use (a step that is skipped loads nothing) and shares one local model between roles that
name the same directory and settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from typing import Any, Optional, Protocol

from lvreason.config import ModelConfig, ModelsConfig


@dataclass(frozen=True)
class Request:
    """One prompt; ``video`` is a clip or video file the model watches (VLM roles), else None."""

    text: str
    video: Optional[str] = None


class BackendConfigError(RuntimeError):
    """A role's model cannot be used at all (wrong URL, model name or key); the run stops with this message."""


class Backend(Protocol):
    failures: int  # requests that got no reply, over the backend's life

    def complete(self, requests: Sequence[Request], *, max_tokens: int, temperature: float = 0.0, n: int = 1,
                 seeds: Optional[Sequence[int]] = None) -> list[Optional[list[str]]]:
        """``n`` replies per request (``seeds[i]`` seeds request i's sampling), or None for a failed request."""


def make_backend(cfg: ModelConfig, role: str) -> Backend:
    if not cfg.model:
        raise BackendConfigError(f"models.{role}.model is not set: give the served model name (backend=openai) or "
                                 "a model directory (backend=local)")
    # imported on use: a run with no local role never loads the inference engine
    if cfg.backend == "openai":
        from lvreason.openai_backend import OpenAIBackend

        return OpenAIBackend(cfg, role)
    from lvreason.local_backend import LocalBackend

    return LocalBackend(cfg, role)


class _Tallied:
    """A backend that counts its requests and those that got no reply (for :meth:`ModelPool.tally`)."""

    def __init__(self, backend: Backend):
        self.backend = backend
        self.requests = self.unanswered = 0

    @property
    def failures(self) -> int:
        return self.backend.failures

    def complete(self, requests: Sequence[Request], **options: Any) -> list[Optional[list[str]]]:
        replies = self.backend.complete(requests, **options)
        self.requests += len(requests)
        self.unanswered += sum(reply is None for reply in replies)
        return replies


class ModelPool:
    """Each role's backend, built when a step first asks for it; identical configs share one backend."""

    def __init__(self, models: ModelsConfig):
        self.models = models
        self._built: dict[str, _Tallied] = {}

    def get(self, role: str) -> Backend:
        cfg: ModelConfig = getattr(self.models, role)
        key = repr(astuple(cfg))
        if key not in self._built:
            self._built[key] = _Tallied(make_backend(cfg, role))
        return self._built[key]

    def tally(self) -> tuple[int, int]:
        """(requests, requests without a reply) over every role so far: a step compares them before and after."""
        return (sum(backend.requests for backend in self._built.values()),
                sum(backend.unanswered for backend in self._built.values()))
