"""``python -m longrl.trainer.main [config=FILE] [key=value ...]`` (also the ``longrl-train`` console script).

The arguments are EasyR1's: an optional ``config=FILE`` and Hydra-style overrides; ``--config-name NAME`` picks
another file of ``configs/``. On the embedded default the synthetic dataset and the tiny model are generated first.
The entry point now prepares the data and prints one rendered, tokenised training sample; the RL loop grows here.
"""

from __future__ import annotations

import re
import sys
from typing import Sequence

from longrl.config.errors import ConfigError
from longrl.config.loader import load_config, split_config_file_argument
from longrl.config.schema import RootConfig
from longrl.data.dataset import TOKEN_KEYS, VideoQADataset
from longrl.models.registry import adapter_for_model_dir
from longrl.trainer.embedded import prepare_embedded_default

_REPEATED_SPECIAL = re.compile(r"(<\|[a-z_]+\|>)\1+")


def _config_name(argv: list[str]) -> tuple[str, list[str]]:
    if "--config-name" in argv:
        at = argv.index("--config-name")
        return argv[at + 1], argv[:at] + argv[at + 2:]
    return "config", argv


def collapse_repeated_special_tokens(text: str) -> str:
    """Show a run of one special token (thousands of video pads) as ``<|video_pad|>x1024``."""
    return _REPEATED_SPECIAL.sub(lambda m: f"{m.group(1)}x{len(m.group(0)) // len(m.group(1))}", text)


def describe_first_sample(cfg: RootConfig) -> str:
    """Build the training dataset and render its first sample as the text a person checks by eye."""
    adapter = adapter_for_model_dir(cfg.worker.actor.model.model_path)
    processor = adapter.load_processor(cfg.worker.actor.model.model_path)
    dataset = VideoQADataset(cfg.data.train_files, cfg.data, cfg.worker.rollout, adapter, processor)
    sample = dataset[0]
    inputs = sample["inputs"]
    tokenizer = getattr(processor, "tokenizer", processor)
    lines = [
        f"training rows: {len(dataset)} from {cfg.data.train_files} (skipped: {len(dataset.skipped)})",
        f"sample {sample['uid']} (task {sample['task']}), answer {sample['answer']}",
        f"video: {sample['video_path']}",
        f"input_ids: {tuple(inputs['input_ids'].shape)}",
    ]
    lines += [f"{key}: {tuple(value.shape)}" for key, value in inputs.items() if key not in TOKEN_KEYS]
    if sample["frame_shape"] is not None:
        lines.append(f"video frames (T, H, W, C): {sample['frame_shape']}")
        lines.append(f"frame timestamps (s): {[round(float(t), 2) for t in sample['timestamps']]}")
    lines.append("rendered prompt (video tokens collapsed):")
    lines.append(collapse_repeated_special_tokens(tokenizer.decode(inputs["input_ids"])))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    config_name, argv = _config_name(argv)
    config_file, overrides = split_config_file_argument(argv)
    try:
        cfg = load_config(overrides, config_file=config_file, config_name=config_name)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    for line in prepare_embedded_default(cfg):
        print(f"generated {line}")
    print(describe_first_sample(cfg))
    return 0


if __name__ == "__main__":
    sys.exit(main())
