"""JSON-lines files written atomically, and seeds derived from record ids.

A step's output appears only when the step has finished (written to a temporary name, then renamed), so an existing
output always means a finished step: that is what makes "skip a step whose output exists" safe after a crash.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with path.open() as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text)
    os.replace(partial, path)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write ``rows`` to ``path`` atomically; returns how many were written."""
    lines = [json.dumps(row, ensure_ascii=False) for row in rows]
    write_text_atomic(path, "".join(f"{line}\n" for line in lines))
    return len(lines)


def stable_seed(*parts: Any) -> int:
    """A 31-bit seed from ``parts`` (the run seed, a record id, a purpose), the same in every process and run.

    Seeding per record rather than drawing from one RNG stream keeps a record's options and sampled replies the
    same whatever else is in the batch, so re-running a step on a subset reproduces those records exactly.
    """
    digest = hashlib.sha256(json.dumps([str(part) for part in parts]).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF
