"""What ``--help`` and ``--cfg job`` print on every entry point: the keys one can set, and the composed tree.

The help lists each key on one line with its default (as the entry point's config file composes it, interpolations
unresolved) and the comment written above the field in the schema, so the schema's comments are the documentation.
A derived field (``init=False``, filled from other keys when the tree is built) is listed as derived, without a default.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap
import typing
from typing import Any

from omegaconf import DictConfig, OmegaConf

__all__ = ["config_help", "derived_keys", "field_notes"]


def _comments_above_fields(cls: type) -> dict[str, str]:
    """``field -> the comment lines right above it`` in ``cls``'s source, joined."""
    lines, _ = inspect.getsourcelines(cls)
    notes = {}
    for node in ast.parse(textwrap.dedent("".join(lines))).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#"):
                above.insert(0, lines[row].strip().lstrip("#").strip())
                row -= 1
            if above:
                notes[node.target.id] = " ".join(above)
    return notes


def _sections(schema: type, prefix: str) -> list[tuple[type, str]]:
    """``schema`` and every dataclass below it, each with its dotted prefix."""
    hints = typing.get_type_hints(schema)
    found = [(schema, prefix)]
    for field in dataclasses.fields(schema):
        child = hints.get(field.name)
        if isinstance(child, type) and dataclasses.is_dataclass(child):
            found += _sections(child, f"{prefix}{field.name}.")
    return found


def field_notes(schema: type, prefix: str = "") -> dict[str, str]:
    """``dotted key -> note`` for every documented field of the dataclass tree ``schema``."""
    return {f"{path}{name}": note for section, path in _sections(schema, prefix)
            for name, note in _comments_above_fields(section).items()}


def derived_keys(schema: type) -> list[str]:
    """The dotted keys of ``schema``'s derived fields (``init=False``): filled when the tree is built, never set."""
    return [f"{path}{field.name}" for section, path in _sections(schema, "")
            for field in dataclasses.fields(section) if not field.init]


def _leaves(node: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(node, dict) and node:
        return [leaf for key, child in node.items() for leaf in _leaves(child, f"{prefix}{key}.")]
    return [(prefix.rstrip("."), node)]


def config_help(usage: str, defaults: DictConfig, schema: type) -> str:
    """``usage``, then every key of ``defaults`` by top-level section: ``key=default  # note``."""
    notes, derived = field_notes(schema), set(derived_keys(schema))
    tree = OmegaConf.to_container(defaults, resolve=False)
    out = [usage, "", "Keys (key=default; set any as key=value, dicts as key='{\"a\":1}' or key.a=1):"]
    for section, node in tree.items():
        out.append("")
        out.append(f"{section}:")
        for key, value in _leaves(node, f"{section}."):
            shown = OmegaConf.to_yaml({"v": value}, resolve=False).strip()[3:].replace("\n", " ")
            note = notes.get(key)
            setting = f"{key} (derived)" if key in derived else f"{key}={shown}"
            out.append(f"  {setting}" + (f"  # {note}" if note else ""))
    return "\n".join(out)
