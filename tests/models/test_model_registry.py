"""The adapter registry: lookups by family and by model directory, and its errors."""

from __future__ import annotations

import json

import pytest

from longrl.models import ModelAdapter, adapter_for_model_dir, get_adapter, register_adapter, registered_families
from longrl.models.qwen2_vl import Qwen2VLAdapter
from longrl.models.registry import BUILTIN_ADAPTERS, BuiltinAdapter

BUILTIN = {"qwen2": ("qwen2",), "qwen3": ("qwen3",), "qwen2_5_vl": ("qwen2_5_vl",), "qwen2_vl": ("qwen2_vl",),
           "qwen3_vl": ("qwen3_vl",)}


def test_builtin_families_are_registered_with_their_model_types():
    assert set(BUILTIN) <= set(registered_families())
    for family, model_types in BUILTIN.items():
        adapter = get_adapter(family)
        assert isinstance(adapter, ModelAdapter)
        assert (adapter.family, adapter.model_types) == (family, model_types)
    assert get_adapter("qwen2").supports_video is False and get_adapter("qwen3").supports_video is False
    assert all(get_adapter(family).supports_video for family in ("qwen2_5_vl", "qwen2_vl", "qwen3_vl"))


def test_unknown_family_lists_the_registered_ones():
    with pytest.raises(ValueError) as err:
        get_adapter("llava")
    message = str(err.value)
    assert "'llava'" in message
    for family in BUILTIN:
        assert family in message


def _write_config(model_dir, config):
    model_dir.mkdir()
    (model_dir / "config.json").write_text(json.dumps(config))
    return model_dir


@pytest.mark.parametrize("family", sorted(BUILTIN))
def test_model_dir_lookup_uses_the_config_model_type(tmp_path, family):
    model_dir = _write_config(tmp_path / "ckpt", {"model_type": BUILTIN[family][0]})
    assert adapter_for_model_dir(model_dir) is get_adapter(family)


def test_model_dir_with_unsupported_type_names_dir_type_and_supported_types(tmp_path):
    model_dir = _write_config(tmp_path / "llama_ckpt", {"model_type": "llama"})
    with pytest.raises(ValueError) as err:
        adapter_for_model_dir(model_dir)
    message = str(err.value)
    assert str(model_dir) in message and "'llama'" in message
    for model_types in BUILTIN.values():
        assert model_types[0] in message


def test_model_dir_without_config_or_model_type(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        adapter_for_model_dir(tmp_path)
    model_dir = _write_config(tmp_path / "typeless", {"hidden_size": 8})
    with pytest.raises(ValueError, match="no 'model_type' key"):
        adapter_for_model_dir(model_dir)


def test_conflicting_registrations_are_refused():
    class SameFamily(Qwen2VLAdapter):
        model_types = ("some_new_type",)

    with pytest.raises(ValueError, match="family 'qwen2_vl' is already registered"):
        register_adapter(SameFamily)

    class SameModelType(Qwen2VLAdapter):
        family = "another_family"

    with pytest.raises(ValueError, match=r"\['qwen2_vl'\].*already served by family 'qwen2_vl'"):
        register_adapter(SameModelType)
    assert "another_family" not in registered_families()
    assert type(get_adapter("qwen2_vl")) is Qwen2VLAdapter


def test_registering_the_same_class_again_is_a_no_op():
    before = get_adapter("qwen2_vl")
    assert register_adapter(Qwen2VLAdapter) is Qwen2VLAdapter
    assert get_adapter("qwen2_vl") is before


def test_a_lookup_imports_only_its_own_family(monkeypatch, tmp_path):
    """One adapter that cannot be imported breaks its family only; the others (by name or model dir) still load."""
    monkeypatch.setitem(BUILTIN_ADAPTERS, "broken", BuiltinAdapter("longrl.models.no_such_module:Nothing", ("nope",)))
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        get_adapter("broken")
    assert "broken" in registered_families()
    assert get_adapter("qwen2").family == "qwen2"
    model_dir = _write_config(tmp_path / "ckpt", {"model_type": "qwen2_vl"})
    assert adapter_for_model_dir(model_dir) is get_adapter("qwen2_vl")


def test_builtin_table_agrees_with_the_adapter_classes():
    for family, entry in BUILTIN_ADAPTERS.items():
        adapter = get_adapter(family)
        assert f"{type(adapter).__module__}:{type(adapter).__qualname__}" == entry.target
        assert tuple(adapter.model_types) == entry.model_types
