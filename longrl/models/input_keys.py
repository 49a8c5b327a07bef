"""The names a family's processor gives its per-row model inputs, declared once by the family's adapter.

A row's inputs beside its token ids (pixels, grids, audio frames, ...) travel as a dict of tensors. The rooms that
batch them, drop pixels once features exist or hand them to an engine ask this table (``ModelAdapter.input_keys``)
instead of knowing any family's key names.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["InputKeys"]


@dataclass(frozen=True, eq=False)
class InputKeys:
    """Which medium (``"image"``, ``"video"``, ``"audio"``) each per-row input key belongs to.

    ``towers``: the inputs a tower encodes (pixels, log-mel frames); once a row's features are computed they are
    dropped. ``positions``: the other inputs (grids, seconds per grid, an audio's frame mask), which the language model
    needs even with precomputed features. ``padded``: keys whose last axis is a per-row length (an audio's frames),
    right-padded to the longest row before rows are joined.
    """

    towers: Mapping[str, str] = field(default_factory=dict)
    positions: Mapping[str, str] = field(default_factory=dict)
    padded: tuple[str, ...] = ()

    def medium(self, key: str) -> str:
        """The medium of ``key``; ``"other"`` for a key the family does not declare."""
        return self.towers.get(key) or self.positions.get(key, "other")

    def media(self, row: Mapping[str, object]) -> set[str]:
        """The media a row's inputs hold."""
        return {self.medium(key) for key in row}
