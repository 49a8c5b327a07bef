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
import os
import typing
from pathlib import Path
from typing import Any, Callable, Sequence

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from longrl.config.errors import ConfigError
from longrl.config.schema import RootConfig
from longrl.config.validate import validate_config

SCHEMA_NAME = "longrl_schema"
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


def _file_overrides(path: Path) -> list[str]:
    """Flatten a YAML config file into ``key=value`` overrides so Hydra checks its keys like CLI keys."""
    if not path.is_file():
        raise ConfigError(f"config={path}: no such file")
    tree = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    overrides: list[str] = []

    def walk(prefix: str, node: Any) -> None:
        if isinstance(node, dict) and node:
            for key, child in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), child)
        elif isinstance(node, list):
            if any(isinstance(item, (dict, list)) for item in node):
                raise ConfigError(f"config={path}: key {prefix!r} holds a list of lists/mappings, which is not supported")
            overrides.append(f"{prefix}=[{','.join(_quote(item) for item in node)}]")
        elif isinstance(node, dict):
            overrides.append(f"{prefix}={{}}")
        else:
            overrides.append(f"{prefix}={_quote(node)}")

    walk("", tree)
    return overrides


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


def load_config(
    overrides: Sequence[str] = (),
    config_file: str | Path | None = None,
    config_dir: str | Path | None = None,
    config_name: str = "config",
    schema: tuple[str, type, Callable[[Any], None]] = (SCHEMA_NAME, RootConfig, validate_config),
) -> Any:
    """Compose, type-check and validate the configuration; any mistake raises :class:`ConfigError`.

    ``schema`` is (name the config's defaults list, dataclass tree, validator): the text stages' by default; the
    Flow-GRPO stage passes its own (:mod:`longrl.config.flow_schema`)."""
    schema_name, schema_type, validate = schema
    register_schema(schema_name, schema_type)
    file_overrides = _file_overrides(Path(config_file)) if config_file else []
    config_dir = Path(config_dir) if config_dir else default_config_dir()
    all_overrides = [_into_open_dict(override, schema_type) for override in file_overrides + list(overrides)]
    try:
        with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base=None):
            composed = compose(config_name=config_name, overrides=all_overrides)
    except (HydraException, OmegaConfBaseException) as exc:
        key_error = _find_key_error(exc)
        if key_error is not None and key_error.full_key:
            in_file = any(o.split("=", 1)[0].lstrip("+") == key_error.full_key for o in file_overrides)
            source = f"from {config_file}" if in_file else "from the command line or configs/"
            raise _unknown_key_error(key_error.full_key, source, schema_type) from exc
        raise ConfigError(f"could not compose the configuration: {exc}") from exc
    try:
        cfg = OmegaConf.to_object(composed)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"invalid configuration value: {exc}") from exc
    validate(cfg)
    return cfg
