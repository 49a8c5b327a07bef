"""One adapter per model family behind a registry, and builders of tiny local model directories."""

from longrl.models.input_keys import InputKeys
from longrl.models.registry import (
    ModelAdapter,
    adapter_for_model_dir,
    get_adapter,
    register_adapter,
    registered_families,
)

__all__ = ["InputKeys", "ModelAdapter", "adapter_for_model_dir", "get_adapter", "register_adapter",
           "registered_families"]
