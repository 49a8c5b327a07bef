"""Every family's ``build_empty_model`` is its ``load_model`` without the weights: what the merger fills and what
ranks > 0 build under ``worker.*.fsdp.enable_rank0_init`` (tests/workers/test_rank0_init.py)."""

from __future__ import annotations

import pytest
import torch

from longrl.models import get_adapter, registered_families

PATCHES = ("forward", "get_rope_index")  # what the families' patch_model sets on a model instance


def _layout(model: torch.nn.Module) -> dict:
    tensors = {**model.state_dict(), **dict(model.named_buffers())}
    return {name: (tuple(tensor.shape), tensor.dtype) for name, tensor in tensors.items()}


@pytest.mark.parametrize("family", registered_families())
def test_build_empty_model_on_meta_is_the_loaded_model_without_weights(tiny_model_dir, family):
    """The meta build has the loaded model's tensors (names, shapes, dtypes), configs and patches, and no storage."""
    adapter = get_adapter(family)
    model_dir = tiny_model_dir(family)
    loaded = adapter.load_model(model_dir)
    with torch.device("meta"):
        empty = adapter.build_empty_model(model_dir, torch.float32)
    assert _layout(loaded) == _layout(empty)
    assert all(tensor.is_meta for tensor in (*empty.parameters(), *empty.buffers()))
    assert loaded.config.to_dict() == empty.config.to_dict()
    assert loaded.generation_config.to_dict() == empty.generation_config.to_dict()
    for built, twin in ((loaded, empty), (getattr(loaded, "model", None), getattr(empty, "model", None))):
        if built is not None:  # the family's patches are on both models, or on neither
            assert sorted(set(vars(built)) & set(PATCHES)) == sorted(set(vars(twin)) & set(PATCHES))
