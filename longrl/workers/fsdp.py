"""Load a Hugging Face model and shard it with FSDP2 (``fully_shard``), the same way on CPU/gloo and GPU/NCCL.

Each block named in the model's ``_no_split_modules`` (decoder layers, vision blocks) becomes its own FSDP unit so
only one block's full parameters exist at a time, then the root takes what is left (embeddings, head, norms).
Mixed precision follows ``worker.*.fsdp.mp_*_dtype`` on GPU (``mp_buffer_dtype``: floating buffers such as the
rotary frequencies are cast to it, since FSDP2's policy covers parameters only); on CPU everything stays float32,
since CPU bf16 matmuls are slow and the CPU runs are the numerical references; CPU offload applies on GPU only.

Rank-0 initialisation (``worker.{actor,ref}.fsdp.enable_rank0_init``, as in EasyR1 / verl): only rank 0 reads the
checkpoint into host memory. Every rank builds the model on the meta device (the adapter's ``build_empty_model``: the
loaded model's classes and patches, no weights), adds the same LoRA adapters and shards it; the shards are then
allocated and filled from rank 0's copy (``set_model_state_dict`` with ``broadcast_from_rank0``), and every buffer,
rotary frequencies included (not in the state dict), is rank 0's, broadcast. The sharded model is bit-identical to the
one every rank loads itself, on every rank, with one copy of the weights in host memory instead of one per rank.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict
from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

from longrl.config.schema import FSDPConfig, LoraConfig, OffloadConfig
from longrl.models.lora import add_lora
from longrl.models.registry import ModelAdapter

_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
           "fp32": torch.float32, "float32": torch.float32}


def parse_dtype(name: str) -> torch.dtype:
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(_DTYPES)}") from None


def load_sharded_model(
    adapter: ModelAdapter,
    model_path: str,
    fsdp: FSDPConfig,
    offload: OffloadConfig,
    device: torch.device,
    gradient_checkpointing: bool = False,
    trust_remote_code: bool = False,
    lora: LoraConfig | None = None,
    lora_seed: int = 0,
) -> torch.nn.Module:
    """The model at ``model_path`` on ``device``, sharded over the default process group; with ``lora`` (rank > 0)
    it carries LoRA adapters, initialised from ``lora_seed`` so that every rank shards the same initial values. With
    ``fsdp.enable_rank0_init`` only rank 0 reads the weights (see the module docstring); the result is the same."""
    on_gpu = device.type == "cuda"
    load_dtype = parse_dtype(fsdp.torch_dtype) if (fsdp.torch_dtype and on_gpu) else torch.float32
    if fsdp.enable_rank0_init:
        model = _load_from_rank0(adapter, model_path, fsdp, offload, device, load_dtype, gradient_checkpointing,
                                 trust_remote_code, lora, lora_seed)
    else:
        model = adapter.load_model(model_path, dtype=load_dtype, trust_remote_code=trust_remote_code).to(device)
        if on_gpu:
            cast_floating_buffers(model, parse_dtype(fsdp.mp_buffer_dtype))
        _add_seeded_lora(model, lora, lora_seed, device)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        shard_model(model, fsdp, offload, device)
    # MR-SP stage 1 calls the towers through these methods, outside forward: FSDP must gather the root's parameters
    # (patch embedding, merger) for them as it does for forward, and run the root's lazy initialisation first.
    for method in ("get_video_features", "get_audio_features"):
        if hasattr(model, method):
            register_fsdp_forward_method(model, method)
    return model


def _add_seeded_lora(model: torch.nn.Module, lora: LoraConfig | None, seed: int, device: torch.device) -> None:
    """``lora``'s adapters on ``model`` (nothing when ``lora`` is None or its rank is 0), their random initialisation
    drawn from ``seed`` without touching the global random state."""
    if lora is None or lora.rank <= 0:
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        add_lora(model, lora.rank, lora.alpha, lora.target_modules, lora.exclude_modules,
                 key="worker.actor.model.lora")


def _load_from_rank0(adapter: ModelAdapter, model_path: str, fsdp: FSDPConfig, offload: OffloadConfig,
                     device: torch.device, load_dtype: torch.dtype, gradient_checkpointing: bool,
                     trust_remote_code: bool, lora: LoraConfig | None, lora_seed: int) -> torch.nn.Module:
    """The sharded model of :func:`load_sharded_model` with only rank 0 reading the checkpoint.

    Rank 0 loads the model on the CPU (LoRA added as every rank would add it, so the adapters' initial values travel
    with the weights); every rank builds the same model on the meta device, with the same LoRA layers, and shards it.
    The shards are then allocated (on the CPU where FSDP offloads parameters) and filled from rank 0's state dict,
    and every buffer is set to rank 0's, broadcast; on GPU the floating buffers are then cast as without rank-0 init.
    A failure on any rank before the first broadcast (a missing checkpoint, a family that cannot be built without
    weights) is raised on every rank.
    """
    rank = dist.get_rank()
    source: torch.nn.Module | None = None
    failure: BaseException | None = None
    try:
        if rank == 0:
            source = adapter.load_model(model_path, dtype=load_dtype, trust_remote_code=trust_remote_code)
            _add_seeded_lora(source, lora, lora_seed, device)
        with torch.device("meta"):
            model = adapter.build_empty_model(model_path, load_dtype, trust_remote_code=trust_remote_code)
        _add_seeded_lora(model, lora, lora_seed, device)
        if source is not None:
            _check_same_layout(source, model, model_path)
    except Exception as exc:  # raised below on every rank, so that none waits in a broadcast for a failed one
        failure = exc
    failures: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(failures, None if failure is None else f"{type(failure).__name__}: {failure}")
    if failure is not None:
        raise failure
    if any(failures):
        first = next(index for index, message in enumerate(failures) if message)
        raise RuntimeError(f"rank-0 initialisation of {model_path} failed on rank {first}: {failures[first]}")

    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    shard_model(model, fsdp, offload, device)
    model.to_empty(device=torch.device("cpu") if _offloads(fsdp, offload, device) else device)
    state = source.state_dict() if source is not None else {}
    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    _broadcast_buffers(model, source, device)
    del state, source
    if device.type == "cuda":
        cast_floating_buffers(model, parse_dtype(fsdp.mp_buffer_dtype))
    _refuse_meta_tensors(model, model_path)
    return model


def _check_same_layout(loaded: torch.nn.Module, built: torch.nn.Module, model_path: str) -> None:
    """Raise unless the model built without weights has the loaded one's state-dict entries and buffers, each with
    its shape and dtype (what the broadcasts rely on)."""
    def layout(model: torch.nn.Module) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        tensors = {**model.state_dict(), **dict(model.named_buffers())}
        return {name: (tuple(tensor.shape), tensor.dtype) for name, tensor in tensors.items()}

    want, got = layout(loaded), layout(built)
    if want != got:
        differ = sorted(name for name in set(want) | set(got) if want.get(name) != got.get(name))
        raise ValueError(f"{model_path}: the model built without weights (for rank-0 initialisation) differs from the "
                         f"loaded one in {len(differ)} tensor(s), e.g. "
                         + ", ".join(f"{name}: loaded {want.get(name)}, built {got.get(name)}" for name in differ[:3]))


def _broadcast_buffers(model: torch.nn.Module, source: torch.nn.Module | None, device: torch.device) -> None:
    """Every buffer of ``model`` (persistent or not: rotary frequencies are not in the state dict) replaced by rank 0's
    ``source`` buffer of the same name, on ``device``, broadcast from rank 0."""
    for module_name, module in model.named_modules():
        for name, buffer in list(module.named_buffers(recurse=False)):
            if buffer is None:
                continue
            if source is not None:
                value = source.get_buffer(f"{module_name}.{name}" if module_name else name).detach().to(
                    device, copy=True)
            else:
                value = torch.empty(buffer.shape, dtype=buffer.dtype, device=device)
            dist.broadcast(value, src=0)
            setattr(module, name, value)


def _offloads(fsdp: FSDPConfig, offload: OffloadConfig, device: torch.device) -> bool:
    """Whether :func:`shard_model` keeps the parameters on the CPU (FSDP's CPU offload; GPU only)."""
    return device.type == "cuda" and (offload.offload_params or fsdp.enable_cpu_offload)


def _refuse_meta_tensors(model: torch.nn.Module, model_path: str) -> None:
    """Raise if a tensor of ``model`` (parameter, buffer, or a plain tensor attribute of a module) is still on the meta
    device after rank-0 initialisation: a value no broadcast reached."""
    left = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    for module_name, module in model.named_modules():
        left += [f"{module_name}.{attribute}" for attribute, value in vars(module).items()
                 if isinstance(value, torch.Tensor) and value.is_meta]
    if left:
        raise RuntimeError(f"{model_path}: after rank-0 initialisation {len(left)} tensor(s) hold no value, e.g. "
                           f"{left[:3]}; set worker.actor.fsdp.enable_rank0_init=false (and worker.ref's) for this "
                           "model")


def cast_floating_buffers(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Every floating-point buffer of ``model`` in ``dtype``, in place (integer buffers, e.g. position ids, stay)."""
    for module in model.modules():
        for name, buffer in module.named_buffers(recurse=False):
            if buffer is not None and buffer.is_floating_point():
                setattr(module, name, buffer.to(dtype))


def shard_model(model: torch.nn.Module, fsdp: FSDPConfig, offload: OffloadConfig, device: torch.device) -> None:
    """Shard ``model`` (already on ``device``) in place: one FSDP unit per block its ``_no_split_modules`` names (a
    transformers or diffusers model), then the root."""
    on_gpu = device.type == "cuda"
    kwargs: dict = {}
    if on_gpu:
        kwargs["mp_policy"] = MixedPrecisionPolicy(param_dtype=parse_dtype(fsdp.mp_param_dtype),
                                                   reduce_dtype=parse_dtype(fsdp.mp_reduce_dtype))
    if _offloads(fsdp, offload, device):  # on a CPU the params already live there
        kwargs["offload_policy"] = CPUOffloadPolicy()
    block_names = set(getattr(model, "_no_split_modules", None) or ())
    # Innermost blocks first: where named blocks nest (Qwen2.5-Omni names its towers and their layers), a block's
    # parameters must not already be claimed by an enclosing unit when its own unit is made.
    for module in reversed(list(model.modules())):
        if type(module).__name__ in block_names:
            fully_shard(module, reshard_after_forward=fsdp.enable_full_shard, **kwargs)
    fully_shard(model, reshard_after_forward=fsdp.enable_full_shard, **kwargs)
