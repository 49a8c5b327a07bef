"""The registry of generator families: a family is added by one file implementing :class:`.family.FlowFamily` and
one entry here."""

from __future__ import annotations

import json
from pathlib import Path

from longrl.flow.family import FlowFamily
from longrl.flow.sd3 import SD3Family
from longrl.flow.wan import WanFamily
from longrl.models.hub import family_named_in

__all__ = ["FLOW_FAMILIES", "family_for_model_name", "family_of", "get_family"]

FLOW_FAMILIES: dict[str, FlowFamily] = {family.family: family for family in (SD3Family(), WanFamily())}


def get_family(name: str) -> FlowFamily:
    """The family called ``name``; raises naming the known ones."""
    if name not in FLOW_FAMILIES:
        raise ValueError(f"unknown family {name!r}; choose from {sorted(FLOW_FAMILIES)}")
    return FLOW_FAMILIES[name]


def family_of(model_dir: str | Path) -> FlowFamily:
    """The family whose transformer class ``model_dir/transformer/config.json`` names (diffusers' ``_class_name``)."""
    config = Path(model_dir) / "transformer" / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{config} not found: worker.actor.model.model_path must be a diffusers pipeline "
                                "directory (transformer/, text_encoder/, tokenizer/, and vae/ unless pixel-space)")
    name = json.loads(config.read_text()).get("_class_name")
    for family in FLOW_FAMILIES.values():
        if family.model_class.__name__ == name:
            return family
    known = {f.model_class.__name__: f.family for f in FLOW_FAMILIES.values()}
    raise ValueError(f"{config} names transformer class {name!r}; supported: {known}")


def family_for_model_name(name: str) -> str | None:
    """The family whose hub names occur in ``name`` (a hub ID or path as another trainer's script writes it)."""
    return family_named_in(name, {hub: family.family for family in FLOW_FAMILIES.values() for hub in family.hub_names})
