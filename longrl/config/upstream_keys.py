"""The rule for keys of another trainer's scripts: renamed, not needed, not implemented, or accepted but not applied.

A stage describes its upstream's keys in one :class:`UpstreamKeys` table (the text stages: EasyR1 / Long-RL in
:mod:`longrl.config.upstream`; Flow-GRPO: Long-RL's diffusion configs in :mod:`longrl.flow.upstream_keys`). Each key
is handled before composition, so none is an unknown-key error and none is accepted silently:

* ``renamed`` keys are aliases of one or more longrl keys (the value translated where the vocabularies differ);
* ``not_needed`` keys are dropped with a logged note saying why nothing is lost;
* ``not_implemented`` keys are dropped while they hold a value with no effect (their upstream default), and refused
  with the reason otherwise;
* ``not_applied`` keys are in longrl's schema but not acted on: logged when set away from their default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from longrl.config.errors import ConfigError
from longrl.config.override_values import UNPARSED, override_value

__all__ = ["UpstreamKeys", "same_value"]

logger = logging.getLogger("longrl.config")


def same_value(value: Any) -> Any:
    """The translation of a renamed key whose values mean the same in both vocabularies."""
    return value


def _parse_scalar(text: str) -> Any:
    """An override's value as Hydra reads it, or the text itself where Hydra cannot read it."""
    value = override_value(f"key={text}")
    return text if value is UNPARSED else value


def _render(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _table_key(table: Mapping[str, Any], key: str) -> str | None:
    """The entry of ``table`` for ``key``: the key itself, or a mapping key above it (a dict value written key by key,
    ``val_override_config.n=1``, falls under ``val_override_config``)."""
    parts = key.split(".")
    return next((".".join(parts[:end]) for end in range(len(parts), 0, -1) if ".".join(parts[:end]) in table), None)


@dataclass(frozen=True)
class UpstreamKeys:
    """One upstream's keys and what longrl does with each (see the module docstring).

    ``renamed``: upstream key -> (longrl key or keys, value translation). ``not_needed``: key -> why nothing is lost.
    ``not_implemented``: key -> (values with no effect, why others are refused). ``not_applied``: longrl key -> (its
    default, what is not applied). ``implies``: renamed key -> (longrl key, value) also set unless given.
    """

    renamed: Mapping[str, tuple[str | tuple[str, ...], Callable[[Any], Any]]]
    not_needed: Mapping[str, str]
    not_implemented: Mapping[str, tuple[tuple[Any, ...], str]]
    not_applied: Mapping[str, tuple[Any, str]] = field(default_factory=dict)
    implies: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def translate(self, overrides: Sequence[str]) -> list[str]:
        """``overrides`` with upstream keys translated, dropped (logged) or refused (one :class:`ConfigError` naming
        every refused key and why)."""
        given_keys = {override.split("=", 1)[0].lstrip("+") for override in overrides}
        translated: list[str] = []
        refused: list[str] = []
        for override in overrides:
            key, _, text = override.partition("=")
            bare = key.lstrip("+")
            if bare in self.renamed:
                targets, translate = self.renamed[bare]
                targets = (targets,) if isinstance(targets, str) else targets
                translated += [f"{target}={_render(translate(_parse_scalar(text)))}" for target in targets]
                implied_key, implied_value = self.implies.get(bare, (None, None))
                if implied_key is not None and implied_key not in given_keys:
                    translated.append(f"{implied_key}={implied_value}")
                logger.warning("config: %s is longrl's %s", bare, ", ".join(targets))
            elif (needless := _table_key(self.not_needed, bare)) is not None:
                logger.warning("config: %s=%s is not needed: %s", bare, text, self.not_needed[needless])
            elif bare in self.not_implemented:
                harmless, reason = self.not_implemented[bare]
                if _parse_scalar(text) not in harmless:
                    refused.append(f"{bare}={text}: {reason}")
            else:
                translated.append(override)
        if refused:
            raise ConfigError("not supported by longrl:\n" + "\n".join(f"  {line}" for line in refused))
        return translated

    def report_unapplied(self, cfg: Any) -> list[str]:
        """Log (and return) each ``not_applied`` key of ``cfg`` set away from its default."""
        notes = []
        for key, (default, what) in self.not_applied.items():
            node = cfg
            for part in key.split("."):
                node = getattr(node, part)
            if node != default:
                notes.append(f"{key}={_render(node)} is accepted but not applied: {what}")
        for note in notes:
            logger.warning("config: %s", note)
        return notes
