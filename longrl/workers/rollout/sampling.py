"""How a rollout engine samples: one engine-independent parameter set, built from the rollout config."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

from longrl.config.schema import RolloutConfig

__all__ = ["SamplingParams", "sample_seed"]

# Fields a validation override may change; token ids describe the model, not the sampling, so they stay.
_OVERRIDABLE = ("n", "temperature", "top_p", "top_k", "max_new_tokens", "seed")


@dataclass(frozen=True)
class SamplingParams:
    """Sampling of ``n`` responses per prompt.

    ``temperature == 0`` means greedy decoding (top-p/top-k are then ignored). ``top_k == -1`` turns
    top-k off. ``seed`` makes one call reproducible: the same prompts, weights and seed give the same
    samples; vary it between steps (e.g. ``seed + step``) for fresh samples. ``None`` draws from the
    process's current random state. Generation stops at any of ``eos_token_ids``; finished rows are
    padded with ``pad_token_id``.

    ``first_sample``: the index, among its prompt's samples, of this call's first sample. Each sample is seeded by
    its index, so a call for samples ``k .. k+n-1`` draws what those samples of a call for all of them would: the
    ranks of a sequence-parallel group split a prompt's samples this way.
    """

    n: int
    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    seed: Optional[int] = None
    first_sample: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "eos_token_ids", tuple(int(i) for i in self.eos_token_ids))
        checks = [
            (self.n >= 1, f"n must be >= 1, got {self.n}"),
            (self.first_sample >= 0, f"first_sample must be >= 0, got {self.first_sample}"),
            (self.temperature >= 0, f"temperature must be >= 0 (0 = greedy), got {self.temperature}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (self.top_k == -1 or self.top_k >= 1, f"top_k must be -1 (off) or >= 1, got {self.top_k}"),
            (self.max_new_tokens >= 1, f"max_new_tokens must be >= 1, got {self.max_new_tokens}"),
            (len(self.eos_token_ids) > 0, "eos_token_ids must name at least one stop token"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"SamplingParams: {message}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @classmethod
    def from_config(
        cls,
        rollout: RolloutConfig,
        *,
        max_new_tokens: int,
        eos_token_ids: Sequence[int],
        pad_token_id: int,
        validation: bool = False,
    ) -> SamplingParams:
        """Training sampling from ``worker.rollout``; with ``validation=True`` its ``val_override_config``
        (e.g. ``{"temperature": 0.0, "n": 1}``) is applied on top. ``max_new_tokens`` comes from
        ``data.max_response_length`` and may be overridden for validation too."""
        params = cls(
            n=rollout.n,
            temperature=rollout.temperature,
            top_p=rollout.top_p,
            top_k=rollout.top_k,
            max_new_tokens=max_new_tokens,
            eos_token_ids=tuple(eos_token_ids),
            pad_token_id=pad_token_id,
            seed=rollout.seed,
        )
        return params.with_overrides(rollout.val_override_config) if validation else params

    def with_overrides(self, overrides: Mapping[str, Any]) -> SamplingParams:
        """A copy with ``overrides`` applied; a key that is not a sampling field raises naming it."""
        unknown = sorted(set(overrides) - set(_OVERRIDABLE))
        if unknown:
            raise KeyError(
                f"worker.rollout.val_override_config has unknown key(s) {unknown}; allowed: {list(_OVERRIDABLE)}"
            )
        return dataclasses.replace(self, **dict(overrides))


def sample_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The seed of sample ``sample_index`` of prompt row ``prompt_index`` in a call seeded with ``seed``."""
    return seed * 1_000_003 + prompt_index * 10_007 + sample_index
