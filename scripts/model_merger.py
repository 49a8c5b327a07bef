"""Merge an actor checkpoint into a Hugging Face model directory.

    python scripts/model_merger.py --local_dir checkpoints/<project>/<experiment>/global_step_N/actor \\
        [--target_dir DIR] [--dtype bfloat16] [--overwrite] [--hf_upload_path USER/REPO]

The merged model goes to ``<local_dir>/huggingface`` (beside its config and tokenizer, where EasyR1's merger puts
it) unless ``--target_dir`` is given; LoRA adapters are folded into the weights. Uploading is off unless
``--hf_upload_path`` is given; it needs network access and a Hugging Face token (``huggingface-cli login``).
The work is done by :mod:`longrl.trainer.merge`.
"""

from __future__ import annotations

import argparse
import sys

import torch

from longrl.trainer.merge import merge_actor_checkpoint, upload_to_hub

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--local_dir", required=True, help="the global_step_N/actor directory of a checkpoint")
    parser.add_argument("--target_dir", default=None,
                        help="where to write the model (default: <local_dir>/huggingface)")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default=None,
                        help="cast the weights (default: keep the checkpoint's dtype)")
    parser.add_argument("--overwrite", action="store_true", help="replace a model already in the target directory")
    parser.add_argument("--hf_upload_path", default=None,
                        help="also upload to this Hub repo (needs network access and a token)")
    parser.add_argument("--public", action="store_true", help="create the Hub repo public (default: private)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    dtype = DTYPES[args.dtype] if args.dtype else None
    target = merge_actor_checkpoint(args.local_dir, args.target_dir, dtype=dtype, overwrite=args.overwrite)
    print(f"merged model written to {target}")
    if args.hf_upload_path:
        print(f"uploading {target} to the Hugging Face Hub as {args.hf_upload_path} (needs network access)")
        print(f"uploaded: {upload_to_hub(target, args.hf_upload_path, private=not args.public)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
