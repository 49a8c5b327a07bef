"""The value of a command-line override as Hydra's grammar reads it, shared by the loader and the upstream-key table."""

from __future__ import annotations

from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

__all__ = ["UNPARSED", "override_value"]

UNPARSED: Any = object()
"""What :func:`override_value` returns for a value Hydra's grammar cannot read (a path with non-ASCII characters)."""

_PARSER = OverridesParser.create()


def override_value(override: str) -> Any:
    """The value of ``key=value`` as Hydra reads it (``true`` -> True, ``0`` -> 0, ``null`` -> None, quotes dropped,
    ``{n:16}`` -> a dict), or :data:`UNPARSED`."""
    try:
        return _PARSER.parse_override(override).value()
    except HydraException:
        return UNPARSED
