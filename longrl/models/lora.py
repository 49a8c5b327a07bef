"""LoRA adapters on a policy (a transformers model of the RL stage, or a Flow-GRPO transformer), through peft.

The adapters start as the identity (their B matrices are zero), so the model with its adapters disabled *is* the
reference: the KL term costs no second copy of the weights. Only the adapter weights train. peft injects the
adapters into the model in place (no ``PeftModel`` wrapper), so the model keeps its class and its state-dict names
gain only ``.base_layer`` and ``.lora_{A,B}.default``; :func:`merged_tensors` turns such a stream back into the plain
model's names with ``W + alpha / rank * B @ A``, for the rollout engine and the merged Hugging Face directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch

__all__ = ["ADAPTER_SUBDIR", "adapter_scale", "add_lora", "adapters_disabled", "lora_target_modules",
           "merged_tensors", "write_adapter"]

# Where a checkpoint keeps its adapters alone, in peft's layout (EasyR1's name for it).
ADAPTER_SUBDIR = "lora_adapter"

_BASE_WEIGHT, _BASE = ".base_layer.weight", ".base_layer."
_LORA_A, _LORA_B = ".lora_A.default.weight", ".lora_B.default.weight"


def lora_target_modules(target_modules: str | Sequence[str]) -> str | list[str]:
    """EasyR1's ``target_modules`` string as peft takes it: ``"all-linear"`` as is, else the comma-separated names."""
    if isinstance(target_modules, str):
        if target_modules.strip() == "all-linear":
            return "all-linear"
        target_modules = target_modules.split(",")
    return [name.strip() for name in target_modules if name.strip()]


def add_lora(model: torch.nn.Module, rank: int, alpha: float, target_modules: str | Sequence[str],
             exclude_modules: str | None = None, key: str = "worker.actor.lora") -> None:
    """Add one LoRA adapter of ``rank`` (scale ``alpha / rank``) to the linear ``target_modules`` of ``model`` that
    ``exclude_modules`` (a regex over full module names) leaves; afterwards only the adapter weights require
    gradients. Raises naming ``key`` when no module is left, or when a target is not a linear layer (the merge into
    plain weights is defined for linear layers only)."""
    from peft import LoraConfig, inject_adapter_in_model  # imported here: a full fine-tune does not need peft
    from peft.tuners.lora import Linear, LoraLayer

    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=lora_target_modules(target_modules),
                        exclude_modules=exclude_modules or None)
    try:
        inject_adapter_in_model(config, model)
    except ValueError as exc:
        raise ValueError(f"{key}.target_modules={target_modules!r} (exclude_modules={exclude_modules!r}) leaves no "
                         f"module of {type(model).__name__} to adapt: {exc}") from exc
    other = [name for name, module in model.named_modules() if isinstance(module, LoraLayer)
             and not isinstance(module, Linear)]
    if other:
        raise ValueError(f"{key}.target_modules={target_modules!r} names layers that are not linear, e.g. "
                         f"{other[:3]}; name linear layers only (or exclude those with {key}.exclude_modules)")


@contextmanager
def adapters_disabled(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` as its base (the reference) inside the block; afterwards the adapters are back on and every
    parameter requires gradients exactly as before (peft's own toggle would unfreeze frozen adapters)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [module for module in model.modules() if isinstance(module, BaseTunerLayer)]
    trainable = {param: param.requires_grad for param in model.parameters()}
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)
        for param, flag in trainable.items():
            param.requires_grad_(flag)


def merged_tensors(tensors: Iterable[tuple[str, torch.Tensor]], scale: float) -> Iterator[tuple[str, torch.Tensor]]:
    """A LoRA-wrapped model's ``(name, tensor)`` stream as the plain model's: each adapted weight folded
    (``W + scale * B @ A``, computed in float32 and cast back), base layers under their own names. Any order is
    accepted; a base weight waits only until its two adapter matrices have passed, so a stream of unsharded tensors
    holds at most one extra weight at a time when, as in a state dict, a layer's three tensors come together."""
    pending: dict[str, dict[str, torch.Tensor]] = {}
    for name, tensor in tensors:
        part = next((suffix for suffix in (_BASE_WEIGHT, _LORA_A, _LORA_B) if name.endswith(suffix)), None)
        if part is None:
            yield name.replace(_BASE, "."), tensor
            continue
        prefix = name[: -len(part)]
        parts = pending.setdefault(prefix, {})
        parts[part] = tensor
        if len(parts) == 3:
            del pending[prefix]
            weight, delta = parts[_BASE_WEIGHT], parts[_LORA_B].float() @ parts[_LORA_A].float()
            yield f"{prefix}.weight", (weight.float() + scale * delta).to(weight.dtype)
    if pending:
        raise KeyError(f"LoRA layers without their base weight or both adapter matrices: {sorted(pending)[:3]}")


def write_adapter(directory: str | Path, adapters: dict[str, torch.Tensor], rank: int, alpha: float,
                  target_modules: str | Sequence[str], exclude_modules: str | None, base_model: str) -> None:
    """``directory`` as peft saves an adapter (``adapter_config.json``, ``adapter_model.safetensors``) from the
    model's unsharded adapter tensors under their state-dict names, so peft or vLLM can load it over ``base_model``."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    directory = Path(directory)
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=lora_target_modules(target_modules),
                        exclude_modules=exclude_modules or None, base_model_name_or_path=base_model,
                        task_type="CAUSAL_LM")
    config.save_pretrained(str(directory))
    named = {"base_model.model." + name.replace(".lora_A.default.", ".lora_A.").replace(".lora_B.default.", ".lora_B."):
             tensor.detach().cpu().contiguous() for name, tensor in adapters.items()}
    save_file(named, str(directory / "adapter_model.safetensors"))


def adapter_scale(directory: str | Path) -> float:
    """``alpha / rank`` of the adapter saved in ``directory`` (what :func:`merged_tensors` folds with)."""
    config_file = Path(directory) / "adapter_config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{config_file} not found: the checkpoint holds LoRA weights but not their settings")
    config = json.loads(config_file.read_text())
    return float(config["lora_alpha"]) / int(config["r"])
