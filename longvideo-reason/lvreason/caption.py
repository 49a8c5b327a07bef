"""Step 2, caption: the captioner VLM describes every clip.

The prompt (``caption.prompt``) sees ``video``, ``index``, ``start_s`` and ``end_s``; the clip itself goes to the model
(frames for an endpoint, the file for a local model). Every clip keeps its row; ``caption`` is ``None`` where the
model gave no reply or an empty one, and the later steps leave such clips out of the video's caption list.
"""

from __future__ import annotations

from typing import Any

from lvreason.backends import ModelPool, Request
from lvreason.config import PipelineConfig, prompt_path
from lvreason.parsing import extract_field
from lvreason.records import read_jsonl, stable_seed, write_jsonl
from lvreason.templates import Prompt
from lvreason.workdir import WorkDir


def run(cfg: PipelineConfig, work: WorkDir, models: ModelPool) -> dict[str, Any]:
    clips = read_jsonl(work.segments)
    prompt = Prompt(prompt_path(cfg, cfg.caption.prompt))
    requests = [Request(prompt.render(video=clip["video"], index=clip["index"], start_s=clip["start_s"],
                                      end_s=clip["end_s"]), video=str(work.root / clip["clip"])) for clip in clips]
    replies = models.get("captioner").complete(requests, max_tokens=cfg.caption.max_tokens,
                                               temperature=cfg.caption.temperature,
                                               seeds=[stable_seed(cfg.seed, clip["clip"], "caption") for clip in clips])
    rows = []
    for clip, reply in zip(clips, replies):
        caption = extract_field(reply[0], "caption") if reply is not None else ""
        rows.append({**clip, "caption": caption or None})
    write_jsonl(work.captions, rows)
    return {"clips": len(rows), "captioned": sum(row["caption"] is not None for row in rows),
            "no_reply": sum(reply is None for reply in replies)}
