"""Turn a Flow-GRPO actor checkpoint into a diffusers pipeline directory that generates with the trained weights.

    python -m longrl.flow.merge --local_dir checkpoints/<project>/<experiment>/global_step_N/actor \\
        [--target_dir DIR] [--overwrite]

The checkpoint's ``transformer_config.json`` names the pipeline directory the run started from and its LoRA settings.
The target (default ``<local_dir>/merged``) is a copy of that directory with ``transformer/`` replaced: the full
fine-tune's weights, or the base with each LoRA adapter folded in (``W + alpha / rank * B @ A``), so it loads with
diffusers' own pipeline classes and needs no peft. DCP is read without a process group into tensors of this process,
and the target is written to a temporary directory and renamed, as :mod:`longrl.trainer.merge` does for the text
stages.
"""

from __future__ import annotations

import argparse
import json
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp

from longrl.flow.families import family_of
from longrl.models.lora import add_lora, merged_tensors
from longrl.trainer.merge import checkpoint_tensor_dtypes, merge_target, write_directory_atomically

__all__ = ["load_trained_transformer", "main", "merge_flow_checkpoint"]


def load_trained_transformer(local_dir: str | Path) -> tuple[torch.nn.Module, Path]:
    """The trained transformer of the checkpoint in ``local_dir`` (LoRA folded in) and the pipeline directory the
    run started from."""
    local_dir = Path(local_dir)
    info_file, weights = local_dir / "transformer_config.json", local_dir / "model"
    for path in (info_file, weights / ".metadata"):
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: --local_dir must be the actor directory of a Flow-GRPO "
                                    "checkpoint (checkpoints/<project>/<experiment>/global_step_N/actor)")
    info = json.loads(info_file.read_text())
    model_path = Path(info["model_path"])
    flow = family_of(model_path)
    model = flow.load(model_path / "transformer")
    lora = info["lora"]
    if lora:
        add_lora(model, lora["rank"], lora["alpha"], lora["target_modules"])
    state = model.state_dict()
    stored = checkpoint_tensor_dtypes(weights)
    missing = sorted(set(stored) - set(state))
    if missing:
        raise KeyError(f"checkpoint {weights} holds {len(missing)} key(s) the transformer of {model_path} lacks, "
                       f"e.g. {missing[:3]}: was it trained from another model directory?")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
        dcp.load({key: state[key] for key in stored}, checkpoint_id=str(weights), no_dist=True)
    if not lora:
        return model, model_path
    plain = flow.load(model_path / "transformer")
    plain.load_state_dict(dict(merged_tensors(model.state_dict().items(), lora["alpha"] / lora["rank"])), strict=True)
    return plain, model_path


def merge_flow_checkpoint(local_dir: str | Path, target_dir: str | Path | None = None, overwrite: bool = False) -> Path:
    """Write the pipeline directory for the checkpoint in ``local_dir``; return its path."""
    local_dir = Path(local_dir)
    target = merge_target(target_dir if target_dir is not None else local_dir / "merged", overwrite)
    model, model_path = load_trained_transformer(local_dir)

    def fill(tmp: Path) -> None:
        shutil.copytree(model_path, tmp, ignore=lambda folder, names: ["transformer"] if Path(folder) == model_path
                        else [])
        model.save_pretrained(str(tmp / "transformer"))

    return write_directory_atomically(target, fill)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m longrl.flow.merge", description=__doc__.split("\n\n")[0])
    parser.add_argument("--local_dir", required=True, help="the global_step_N/actor directory of a checkpoint")
    parser.add_argument("--target_dir", default=None, help="where to write the pipeline (default: <local_dir>/merged)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing, non-empty target directory")
    args = parser.parse_args(argv)
    print(merge_flow_checkpoint(args.local_dir, args.target_dir, args.overwrite))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
