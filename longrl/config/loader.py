"""Compose the run configuration from ``configs/``, an optional EasyR1-style ``config=FILE`` and CLI overrides.

Hydra's compose API is used instead of ``@hydra.main`` so that composition errors can be rewritten before the user
sees them: Hydra says a key "is not in struct", this module says which keys are valid there and which one was meant.
Precedence, lowest first: the dataclass defaults, ``configs/<name>.yaml`` with its group defaults (``algorithm=dapo``
selects ``configs/algorithm/dapo.yaml``), the ``config=FILE`` YAML (how EasyR1 / Long-RL scripts pass their config),
then ``key=value`` overrides in Hydra's grammar.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import typing
from pathlib import Path
from typing import Any, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from longrl.config.describe import derived_keys, field_notes
from longrl.config.errors import ConfigError
from longrl.config.override_values import UNPARSED, override_value
from longrl.config.schema import RootConfig
from longrl.config.stage_schema import StageSchema
from longrl.config.upstream import TEXT_UPSTREAM_KEYS
from longrl.config.validate import validate_config

SCHEMA_NAME = "longrl_schema"
DEFAULT_SCHEMA = StageSchema(SCHEMA_NAME, RootConfig, validate_config, TEXT_UPSTREAM_KEYS.translate,
                             TEXT_UPSTREAM_KEYS.report_unapplied)
_REPO_CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"


def default_config_dir() -> Path:
    """``$LONGRL_CONFIG_DIR`` if set, else the repository's ``configs/`` (the package is installed editable)."""
    return Path(os.environ.get("LONGRL_CONFIG_DIR", _REPO_CONFIG_DIR))


def register_schema(name: str = SCHEMA_NAME, schema: type = RootConfig) -> None:
    """Make the dataclass tree ``schema`` the base of the configs whose defaults list ``name`` (the text stages'
    ``configs/config.yaml`` lists ``longrl_schema``)."""
    ConfigStore.instance().store(name=name, node=schema)


def _quote(value: Any) -> str:
    """Render a YAML scalar as a Hydra override value that parses back to the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _flatten(prefix: str, node: Any, source: str) -> list[str]:
    """A mapping under ``prefix`` as one ``key=value`` override per leaf, so Hydra checks each key like a CLI key."""
    if isinstance(node, dict) and node:
        return [override for key, child in node.items()
                for override in _flatten(f"{prefix}.{key}" if prefix else str(key), child, source)]
    if isinstance(node, list):
        if any(isinstance(item, (dict, list)) for item in node):
            raise ConfigError(f"{source}: key {prefix!r} holds a list of lists/mappings, which is not supported")
        return [f"{prefix}=[{','.join(_quote(item) for item in node)}]"]
    if isinstance(node, dict):
        return [f"{prefix}={{}}"]
    return [f"{prefix}={_quote(node)}"]


def _file_overrides(path: Path) -> list[str]:
    """Flatten a YAML config file into ``key=value`` overrides so Hydra checks its keys like CLI keys."""
    if not path.is_file():
        raise ConfigError(f"config={path}: no such file")
    return _flatten("", OmegaConf.to_container(OmegaConf.load(path), resolve=False), f"config={path}")


def _as_hydra_overrides(override: str) -> list[str]:
    """One command-line override in the forms EasyR1 / Long-RL scripts write, as Hydra's grammar takes it.

    A mapping value, JSON (``'{"n":16,"temperature":0.6}'``) or Hydra's (``{n:16}``), becomes one override per key
    (merged into the field, as EasyR1 merges it); a value Hydra cannot lex at all (a path with non-ASCII characters)
    is quoted and taken as a string.
    """
    key, equals, value = override.partition("=")
    if not equals or key.startswith("~"):
        return [override]
    try:
        structured = json.loads(value) if value.lstrip().startswith("{") else UNPARSED
    except json.JSONDecodeError:
        structured = UNPARSED
    if structured is UNPARSED:
        structured = override_value(override)
    if isinstance(structured, dict):
        return _flatten(key, structured, f"{key}=")
    if structured is UNPARSED:
        return [f"{key}={_quote(value)}"]
    return [override]


def _schema_node(dotted: str, schema: type) -> tuple[str, type]:
    """The deepest dataclass on the path ``dotted`` and that dataclass's path (for listing its valid keys)."""
    node: type = schema
    parent_path: list[str] = []
    for part in dotted.split(".")[:-1]:
        child = typing.get_type_hints(node).get(part)
        if not (isinstance(child, type) and dataclasses.is_dataclass(child)):
            break
        node = child
        parent_path.append(part)
    return ".".join(parent_path), node


def _into_open_dict(override: str, schema: type) -> str:
    """``override`` with Hydra's add-or-set prefix (``++``) when its key lies inside a free-form ``dict`` field (e.g.
    ``worker.reward.reward_function_kwargs.format_weight=0.1``): such a dict has no fixed keys, so a new one is not a
    typo, and EasyR1's command lines and config files set them without ``+``."""
    key = override.split("=", 1)[0]
    if key.startswith(("+", "~")):
        return override
    node: type = schema
    for part in key.split(".")[:-1]:
        child = typing.get_type_hints(node).get(part)
        if typing.get_origin(child) is dict:
            return f"++{override}"
        if not (isinstance(child, type) and dataclasses.is_dataclass(child)):
            break
        node = child
    return override


def _unknown_key_error(full_key: str, source: str, schema: type) -> ConfigError:
    parent, node = _schema_node(full_key, schema)
    valid = [f.name for f in dataclasses.fields(node)]
    leaf = full_key.split(".")[-1]
    where = f"'{parent}'" if parent else "the top level"
    message = f"unknown config key '{full_key}' ({source}). Valid keys under {where}: {', '.join(valid)}."
    close = difflib.get_close_matches(leaf, valid, n=1)
    if close:
        message += f" Did you mean '{(parent + '.') if parent else ''}{close[0]}'?"
    return ConfigError(message)


def _unknown_part(dotted: str, schema: type) -> str | None:
    """The leading part of ``dotted`` that names no field of ``schema`` (``a.typo`` of ``a.typo.b``); None when the
    whole key is known (any key inside a free-form dict field counts)."""
    node: Any = schema
    parts = dotted.split(".")
    for depth, part in enumerate(parts):
        hints = typing.get_type_hints(node) if isinstance(node, type) and dataclasses.is_dataclass(node) else {}
        node = hints.get(part)
        if node is None:
            return ".".join(parts[: depth + 1])
        if typing.get_origin(node) is dict:
            return None
    return None


def _unknown_keys_error(overrides: Sequence[str], file_overrides: Sequence[str], config_file: Path | None,
                        schema: type, groups: set[str]) -> ConfigError | None:
    """Every override key the schema lacks, in one error (Hydra stops at the first); None when all are known.
    ``+key`` adds on purpose and ``~key`` deletes, so neither is checked; nor is a config group choice."""
    from_file = {override.split("=", 1)[0] for override in file_overrides}
    messages = []
    for override in overrides:
        key = override.split("=", 1)[0]
        unknown = None if key.startswith(("+", "~")) or key in groups else _unknown_part(key, schema)
        if unknown is None:
            continue
        source = f"from {config_file}" if key in from_file else "from the command line or configs/"
        messages.append(str(_unknown_key_error(unknown, source, schema)))
    if not messages:
        return None
    if len(messages) == 1:
        return ConfigError(messages[0])
    return ConfigError(f"{len(messages)} unknown config keys:\n" + "\n".join(f"  {message}" for message in messages))


def _find_key_error(exc: BaseException) -> OmegaConfBaseException | None:
    """The omegaconf unknown-key error somewhere in ``exc``'s chain (Hydra wraps it)."""
    while exc is not None:
        if isinstance(exc, (ConfigKeyError, ConfigAttributeError)):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def split_config_file_argument(argv: Sequence[str]) -> tuple[Path | None, list[str]]:
    """Separate EasyR1's ``config=FILE`` from the Hydra overrides."""
    config_file = None
    overrides = []
    for arg in argv:
        if arg.startswith("config="):
            config_file = Path(arg.split("=", 1)[1])
        else:
            overrides.append(arg)
    return config_file, overrides


def compose_config(
    overrides: Sequence[str] = (),
    config_file: str | Path | None = None,
    config_dir: str | Path | None = None,
    config_name: str = "config",
    schema: StageSchema = DEFAULT_SCHEMA,
) -> DictConfig:
    """The composed tree before type conversion and validation (what ``--cfg job`` prints); unknown keys, all of
    them, raise :class:`ConfigError`.

    ``schema`` is the text stages' by default; the Flow-GRPO stage passes its own
    (:data:`longrl.flow.validate.FLOW_SCHEMA`)."""
    schema_type = schema.tree
    register_schema(schema.name, schema_type)
    file_overrides = _file_overrides(Path(config_file)) if config_file else []
    config_dir = Path(config_dir) if config_dir else default_config_dir()
    given = file_overrides + [hydra_form for override in overrides for hydra_form in _as_hydra_overrides(override)]
    given = schema.translate_upstream(given)
    groups = {path.name for path in config_dir.iterdir() if path.is_dir()}
    unknown = _unknown_keys_error(given, file_overrides, config_file, schema_type, groups)
    if unknown is not None:
        raise unknown
    all_overrides = [_into_open_dict(override, schema_type) for override in given]
    try:
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base=None):
            return compose(config_name=config_name, overrides=all_overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        key_error = _find_key_error(exc)
        if key_error is not None and key_error.full_key:
            in_file = any(o.split("=", 1)[0].lstrip("+") == key_error.full_key for o in file_overrides)
            source = f"from {config_file}" if in_file else "from the command line or configs/"
            raise _unknown_key_error(key_error.full_key, source, schema_type) from exc
        raise ConfigError(f"could not compose the configuration: {exc}") from exc


def _derived_values_given(composed: DictConfig, cfg: Any, schema: type) -> ConfigError | None:
    """An error naming each derived key given a value other than the one derived for it; None when there is none.

    A value equal to the derived one passes, so a run's saved ``config.yaml`` loads back as ``config=FILE``."""
    notes = field_notes(schema)
    messages = []
    for key in derived_keys(schema):
        given = OmegaConf.select(composed, key)
        value = functools.reduce(getattr, key.split("."), cfg)
        if given is not None and given != value:
            source = notes[key].partition(": ")[0]
            messages.append(f"  {key}={given!r}: it is {source} ({value!r} here); set that instead")
    if not messages:
        return None
    return ConfigError("derived keys are computed from other keys, not set:\n" + "\n".join(messages))


def load_config(
    overrides: Sequence[str] = (),
    config_file: str | Path | None = None,
    config_dir: str | Path | None = None,
    config_name: str = "config",
    schema: StageSchema = DEFAULT_SCHEMA,
) -> Any:
    """Compose (:func:`compose_config`), type-check and validate the configuration; any mistake raises
    :class:`ConfigError`."""
    composed = compose_config(overrides, config_file, config_dir, config_name, schema)
    try:
        cfg = OmegaConf.to_object(composed)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid configuration value: {exc}") from exc
    given = _derived_values_given(composed, cfg, schema.tree)
    if given is not None:
        raise given
    schema.validate(cfg)
    schema.report_unapplied(cfg)
    return cfg
