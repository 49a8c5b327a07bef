"""Step 4, refine: the refiner LLM rewrites each item's reasoning as a step-by-step trace of someone watching the
video (no mention of captions) that ends in the answer.

With ``refine.require_answer`` a trace counts only when the choice it concludes with
(:func:`~lvreason.parsing.extract_choice`) is the item's answer, which catches rewrites that drift to another
option. Items are never dropped here: ``refined_reasoning`` is ``None`` where refining failed, with the reason in
``refine_status``, and such items can still go to RL (which needs no trace). ``<answer>`` tags are taken out of a
trace, since a row's answer has its own field.

Prompt variables: ``video``, ``clips``, ``type``, ``question``, ``options``, ``letters``, ``answer`` (the letter),
``answer_text`` and ``reasoning``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Optional

from lvreason.backends import ModelPool, Request
from lvreason.config import PipelineConfig, prompt_path
from lvreason.parsing import LETTERS, extract_choice, extract_field, remove_answer_tags
from lvreason.records import read_jsonl, stable_seed, write_jsonl
from lvreason.templates import Prompt
from lvreason.timeline import load_timelines
from lvreason.workdir import WorkDir


def refined_trace(reply: Optional[list[str]], item: dict[str, Any], require_answer: bool) -> tuple[Optional[str], str]:
    """(the trace to keep or None, a status: ``ok``, ``no_reply``, ``empty`` or ``wrong_answer``)."""
    if reply is None:
        return None, "no_reply"
    trace = extract_field(reply[0], "reasoning")
    if require_answer and extract_choice(trace, item["options"]) != item["answer"]:
        return None, "wrong_answer"
    trace = remove_answer_tags(trace)
    return (trace, "ok") if trace else (None, "empty")


def run(cfg: PipelineConfig, work: WorkDir, models: ModelPool) -> dict[str, Any]:
    items = read_jsonl(work.items)
    timelines = load_timelines(work.captions)
    prompt = Prompt(prompt_path(cfg, cfg.refine.prompt))
    requests = [Request(prompt.render(video=item["video"], clips=timelines[item["video"]], type=item["type"],
                                      question=item["question"], options=item["options"], letters=LETTERS,
                                      answer=item["answer"], answer_text=item["answer_text"],
                                      reasoning=item["reasoning"])) for item in items]
    replies = models.get("refiner").complete(requests, max_tokens=cfg.refine.max_tokens,
                                             temperature=cfg.refine.temperature,
                                             seeds=[stable_seed(cfg.seed, item["item_id"], "refine") for item in items])
    rows = []
    for item, reply in zip(items, replies):
        trace, status = refined_trace(reply, item, cfg.refine.require_answer)
        rows.append({**item, "refined_reasoning": trace, "refine_status": status})
    write_jsonl(work.refined, rows)
    return {"items": len(rows), "status": dict(Counter(row["refine_status"] for row in rows))}
