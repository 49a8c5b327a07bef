"""Turn an actor checkpoint (sharded DCP weights + ``huggingface/`` metadata) into a model directory of its family.

The actor saves ``actor/model/`` as a torch.distributed.checkpoint directory of the FSDP model state dict (keys are
the loaded model's own ``state_dict`` names) and ``actor/huggingface/`` with config, generation config, tokenizer and
processor files but no weights. Merging needs no process group: DCP reads into tensors of this process. The model
family's adapter builds the model from the config without initialising it (``build_empty_model``), its state-dict
tensors are filled in place from the checkpoint (so peak memory is one copy of the weights), the tokenizer and
processor files are copied in the sub-directories they were saved in, and the adapter writes configs and safetensors
in its family's layout (``save_model``: ``save_pretrained`` for Hugging Face families; VILA's ``llm/``,
``vision_tower/``, ``mm_projector/``), so the merged directory loads again with the adapter.

The default target is ``<local_dir>/huggingface`` (i.e. ``global_step_N/actor/huggingface``), where EasyR1's merger
writes and EasyR1 recipes look: the directory that held the config and tokenizer then also holds the weights, and it
is pruned with the checkpoint by ``trainer.save_limit``. A LoRA checkpoint (``model/`` with ``.base_layer`` and
``.lora_*`` keys, ``lora_adapter/`` with the scale) is merged into plain weights (``W + alpha / rank * B @ A``), so the
directory loads without peft. The target is written to a temp directory and swapped into place, so an interrupted
merge never leaves a half-written model that looks complete, nor loses the config it was made from.
"""

from __future__ import annotations

import shutil
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import TensorStorageMetadata

from longrl.models.lora import ADAPTER_SUBDIR, adapter_scale, merged_tensors
from longrl.models.registry import adapter_for_model_dir
from longrl.plain_pt import load_dcp_metadata

MODEL_SUBDIR = "model"
HF_SUBDIR = "huggingface"
# Weight files in huggingface/ (an earlier merge, or another tool's); the merged weights replace them.
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def default_target_dir(local_dir: str | Path) -> Path:
    return Path(local_dir) / HF_SUBDIR


def checkpoint_tensors(dcp_dir: str | Path) -> dict[str, TensorStorageMetadata]:
    """The tensor keys stored in a DCP directory and their shapes and dtypes, read from its metadata only."""
    metadata = load_dcp_metadata(dcp_dir)  # refuses a crafted one before anything unpickles it unrestricted
    return {key: item for key, item in metadata.state_dict_metadata.items() if isinstance(item, TensorStorageMetadata)}


def checkpoint_tensor_dtypes(dcp_dir: str | Path) -> dict[str, torch.dtype]:
    """The tensor keys stored in a DCP directory and their dtypes, read from its metadata only."""
    return {key: item.properties.dtype for key, item in checkpoint_tensors(dcp_dir).items()}


def _check_actor_dir(local_dir: Path) -> tuple[Path, Path]:
    model_dir, hf_dir = local_dir / MODEL_SUBDIR, local_dir / HF_SUBDIR
    for path, what in ((model_dir / ".metadata", "DCP weights"), (hf_dir / "config.json", "model config")):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} not found: --local_dir must be an actor checkpoint directory "
                f"(checkpoints/<project>/<experiment>/global_step_N/actor) holding {what}"
            )
    return model_dir, hf_dir


def load_merged_model(local_dir: str | Path, dtype: torch.dtype | None = None) -> torch.nn.Module:
    """The model of ``huggingface/config.json`` with every weight from ``model/`` (strict: no missing, no extra;
    LoRA adapters folded in).

    ``dtype=None`` keeps the checkpoint's floating dtype. Keys the model lists but the checkpoint lacks are
    accepted only where they share storage with a key that is present (tied weights such as ``lm_head.weight``).
    """
    local_dir = Path(local_dir)
    model_dir, hf_dir = _check_actor_dir(local_dir)
    tensors = checkpoint_tensors(model_dir)
    # A LoRA checkpoint: the base under ``.base_layer`` names plus adapters, folded below into the plain weights.
    adapters = {key: item for key, item in tensors.items() if ".lora_" in key}
    stored = {key.replace(".base_layer.", "."): item.properties.dtype for key, item in tensors.items()
              if key not in adapters}
    float_dtypes = {d for d in stored.values() if d.is_floating_point}
    if len(float_dtypes) > 1:
        raise ValueError(f"{model_dir} mixes floating dtypes {sorted(map(str, float_dtypes))}; "
                         "the merger expects one parameter dtype")
    adapter = adapter_for_model_dir(hf_dir)
    # Every parameter and persistent buffer is overwritten below (the key check guarantees it).
    model = adapter.build_empty_model(hf_dir, next(iter(float_dtypes), torch.float32))
    state = model.state_dict()
    _check_keys(state, stored, model_dir, hf_dir)
    # Base tensors load in place into the model's own; the (small) adapters into tensors of their own.
    targets = {key: state[key.replace(".base_layer.", ".")] for key in tensors if key not in adapters}
    targets.update({key: torch.empty(item.size, dtype=item.properties.dtype) for key, item in adapters.items()})
    with warnings.catch_warnings():
        # Loading without a process group is the point here, not an accident worth a warning.
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
        dcp.load(targets, checkpoint_id=str(model_dir), no_dist=True)
    if adapters:
        for name, tensor in merged_tensors(targets.items(), adapter_scale(local_dir / ADAPTER_SUBDIR)):
            if tensor is not state[name]:
                state[name].copy_(tensor)
    generation_config = adapter.load_generation_config(hf_dir)
    if generation_config is not None:
        model.generation_config = generation_config
    return model if dtype is None else model.to(dtype)


def _check_keys(state: dict[str, torch.Tensor], stored: dict[str, torch.dtype], model_dir: Path, hf_dir: Path) -> None:
    unexpected = sorted(set(stored) - set(state))
    present_storage = {state[key].data_ptr() for key in state if key in stored}
    missing = sorted(key for key in state if key not in stored and state[key].data_ptr() not in present_storage)
    if unexpected or missing:
        raise KeyError(
            f"checkpoint {model_dir} does not match the model of {hf_dir / 'config.json'}: "
            f"{len(missing)} missing key(s) {missing[:5]}, {len(unexpected)} unexpected key(s) {unexpected[:5]}"
        )


def merge_target(target: str | Path, overwrite: bool, assets: Path | None = None) -> Path:
    """``target``, refused before any weight is read if it already holds a model and ``overwrite`` is off. The
    checkpoint's own ``assets`` directory (``huggingface/``) counts as taken only once it holds weights."""
    target = Path(target)
    if target.exists() and assets is not None and target.resolve() == assets.resolve():
        taken = any(_is_weight_file(path.name) for path in target.rglob("*") if path.is_file())
    else:
        taken = target.exists() and any(target.iterdir())
    if taken and not overwrite:
        raise FileExistsError(f"{target} already holds a model; pass --overwrite or another --target_dir")
    return target


def write_directory_atomically(target: Path, fill: Callable[[Path], None]) -> Path:
    """``fill`` writes the directory under a temporary name beside ``target``, which is then swapped into place (an
    existing one moved aside first and removed last): an interrupted merge never leaves a half-written model that
    looks complete, and ``fill`` may read from ``target`` itself."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex}")
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex}")
    try:
        fill(tmp)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target


def merge_actor_checkpoint(
    local_dir: str | Path,
    target_dir: str | Path | None = None,
    dtype: torch.dtype | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the model directory for the actor checkpoint in ``local_dir`` (in the layout of its family's adapter);
    return its path."""
    local_dir = Path(local_dir)
    target = merge_target(target_dir if target_dir is not None else default_target_dir(local_dir), overwrite,
                          assets=local_dir / HF_SUBDIR)
    model = load_merged_model(local_dir, dtype)

    def fill(tmp: Path) -> None:
        _copy_assets(local_dir / HF_SUBDIR, tmp)
        adapter_for_model_dir(local_dir / HF_SUBDIR).save_model(model, tmp)

    return write_directory_atomically(target, fill)


def _is_weight_file(name: str) -> bool:
    return name.endswith(_WEIGHT_SUFFIXES) or name in _WEIGHT_INDEXES


def _copy_assets(hf_dir: Path, out_dir: Path) -> None:
    """Tokenizer, processor and chat-template files, in the sub-directories the family keeps them in (VILA: ``llm/``,
    ``vision_tower/``); the adapter's ``save_model`` then rewrites the config files and writes the weights."""

    def weights(directory: str, names: list[str]) -> list[str]:
        return [name for name in names if _is_weight_file(name)]

    shutil.copytree(hf_dir, out_dir, ignore=weights)


def upload_to_hub(folder: str | Path, repo_id: str, private: bool = True) -> str:
    """Upload a merged model directory to the Hugging Face Hub (needs network access and a token); returns the
    repo URL. ``huggingface_hub`` is imported only here, so merging never touches the network."""
    from huggingface_hub import HfApi

    api = HfApi()
    url = api.create_repo(repo_id=repo_id, private=private, exist_ok=True)
    api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model")
    return str(url)
