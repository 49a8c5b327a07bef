"""One adapter per model family behind a registry, and builders of tiny local model directories.

The registry's names load with it on first use (``from longrl.models import get_adapter`` as ever): it imports torch
and transformers, which ``import longrl`` must not for the hub-kernel default it reads from :mod:`.hub_kernels`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from longrl.models.input_keys import InputKeys

if TYPE_CHECKING:
    from longrl.models.registry import (
        ModelAdapter,
        adapter_for_model_dir,
        get_adapter,
        register_adapter,
        registered_families,
    )

__all__ = ["InputKeys", "ModelAdapter", "adapter_for_model_dir", "get_adapter", "register_adapter",
           "registered_families"]


def __getattr__(name: str) -> Any:
    """The registry's names, imported with it on first use."""
    if name in __all__:
        from longrl.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
