"""Where each step reads and writes under ``work_dir``: one place, so the steps and the README agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WorkDir:
    root: Path

    @property
    def clips(self) -> Path:
        return self.root / "clips"

    @property
    def segments(self) -> Path:  # segment -> one row per clip
        return self.root / "segments.jsonl"

    @property
    def captions(self) -> Path:  # caption -> one row per clip, with its caption
        return self.root / "captions.jsonl"

    @property
    def items(self) -> Path:  # generate -> one multiple-choice item per (video, reasoning type)
        return self.root / "items.jsonl"

    @property
    def generate_rejects(self) -> Path:  # generate -> the items dropped, with the reason and the reply
        return self.root / "generate_rejects.jsonl"

    @property
    def refined(self) -> Path:  # refine -> items with ``refined_reasoning`` (None where refining failed)
        return self.root / "refined.jsonl"

    @property
    def kept(self) -> Path:  # filter -> the items every enabled filter kept
        return self.root / "kept.jsonl"

    @property
    def filter_report(self) -> Path:  # filter -> every item's decisions and reasons
        return self.root / "filter_report.jsonl"

    @property
    def sft(self) -> Path:  # split -> rows for CoT-SFT
        return self.root / "dataset" / "sft.jsonl"

    @property
    def rl(self) -> Path:  # split -> rows for RL
        return self.root / "dataset" / "rl.jsonl"

    def stats(self, step: str) -> Path:  # every step -> its counts (items in/out, drops by reason)
        return self.root / "stats" / f"{step}.json"
