"""Step 3, generate: multiple-choice items of each reasoning type from a video's ordered clip captions.

One item per (video, reasoning type). Its fields are asked for one request at a time (question; correct answer;
each distractor, seeing the ones already written; the reasoning that leads from the captions to the answer), so every
reply is a single short text that :func:`~lvreason.parsing.extract_field` can take out of whatever wrapping the model
adds. The multiple-choice options are then built here, not by the model: the correct answer and the distractors,
shuffled by an RNG seeded with (run seed, item id), so the answer letter is known by construction and the same
every run. An item whose request fails, whose reply is empty, or whose distractor repeats another option is dropped
and counted by reason, and written to ``generate_rejects.jsonl`` with the reply.

Prompt variables: ``video``, ``clips`` (each with ``index``, ``start_s``, ``end_s``, ``caption``), ``type``,
``type_description``, ``num_distractors``, and as they become known ``question``, ``answer`` and ``distractors``
(the ones written so far).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Optional

from lvreason.backends import Backend, ModelPool, Request
from lvreason.config import FieldConfig, PipelineConfig, ReasoningType, prompt_path
from lvreason.parsing import LETTERS, extract_field, normalise
from lvreason.records import stable_seed, write_jsonl
from lvreason.templates import Prompt
from lvreason.timeline import load_timelines
from lvreason.workdir import WorkDir


@dataclass
class _Draft:
    """An item while its fields are being written."""

    item_id: str
    video: str
    type: ReasoningType
    clips: list[dict[str, Any]]
    fields: dict[str, Any] = field(default_factory=dict)

    def variables(self, num_distractors: int) -> dict[str, Any]:
        return {"video": self.video, "clips": self.clips, "type": self.type.name,
                "type_description": self.type.description, "num_distractors": num_distractors, **self.fields}


def build_options(answer: str, distractors: list[str], seed: int, item_id: str) -> tuple[list[str], str]:
    """The options in a seeded shuffle, and the letter of ``answer`` among them."""
    options = [answer, *distractors]
    random.Random(stable_seed(seed, "options", item_id)).shuffle(options)
    return options, LETTERS[options.index(answer)]


class _Writer:
    """Asks for one field of many drafts at once; keeps the drafts whose reply yields the field."""

    def __init__(self, cfg: PipelineConfig, backend: Backend):
        self.cfg, self.backend = cfg, backend
        self.num_distractors = cfg.generate.num_options - 1
        self.rejects: list[dict[str, Any]] = []

    def ask(self, drafts: list[_Draft], name: str, spec: FieldConfig, purpose: str,
            single_line: bool) -> list[tuple[_Draft, str]]:
        prompt = Prompt(prompt_path(self.cfg, spec.prompt))
        requests = [Request(prompt.render(**draft.variables(self.num_distractors))) for draft in drafts]
        seeds = [stable_seed(self.cfg.seed, draft.item_id, purpose) for draft in drafts]
        replies = self.backend.complete(requests, max_tokens=spec.max_tokens, temperature=self.cfg.generate.temperature,
                                        seeds=seeds)
        written = []
        for draft, reply in zip(drafts, replies):
            text = extract_field(reply[0], name) if reply is not None else ""
            if single_line:
                text = text.split("\n")[0]
            if text:
                written.append((draft, text))
            else:
                self.reject(draft, "no_reply" if reply is None else f"empty_{name}", purpose, reply)
        return written

    def reject(self, draft: _Draft, reason: str, purpose: str, reply: Optional[list[str]]) -> None:
        self.rejects.append({"item_id": draft.item_id, "reason": reason, "request": purpose,
                             "reply": None if reply is None else reply[0]})


def _write_items(writer: _Writer, drafts: list[_Draft]) -> list[_Draft]:
    """Fill every field of ``drafts`` in turn; the drafts that got all of them."""
    spec = writer.cfg.generate
    for draft, text in writer.ask(drafts, "question", spec.question, "question", single_line=False):
        draft.fields["question"] = text
    drafts = [draft for draft in drafts if "question" in draft.fields]
    for draft, text in writer.ask(drafts, "answer", spec.answer, "answer", single_line=True):
        draft.fields.update(answer=text, distractors=[])
    drafts = [draft for draft in drafts if "answer" in draft.fields]
    for number in range(writer.num_distractors):
        written = writer.ask(drafts, "distractor", spec.distractor, f"distractor_{number}", single_line=True)
        drafts = []
        for draft, text in written:
            taken = {normalise(option) for option in (draft.fields["answer"], *draft.fields["distractors"])}
            if normalise(text) in taken:
                writer.reject(draft, "repeated_option", f"distractor_{number}", [text])
                continue
            draft.fields["distractors"] = [*draft.fields["distractors"], text]
            drafts.append(draft)
    for draft, text in writer.ask(drafts, "reasoning", spec.reasoning, "reasoning", single_line=False):
        draft.fields["reasoning"] = text
    return [draft for draft in drafts if "reasoning" in draft.fields]


def run(cfg: PipelineConfig, work: WorkDir, models: ModelPool) -> dict[str, Any]:
    timelines = load_timelines(work.captions)
    drafts = [_Draft(f"{video}::{kind.name}", video, kind, clips)
              for video, clips in timelines.items() for kind in cfg.generate.types]
    writer = _Writer(cfg, models.get("generator"))
    items = []
    for draft in _write_items(writer, drafts):
        options, letter = build_options(draft.fields["answer"], draft.fields["distractors"], cfg.seed, draft.item_id)
        items.append({"item_id": draft.item_id, "video": draft.video, "type": draft.type.name,
                      "question": draft.fields["question"], "options": options, "answer": letter,
                      "answer_text": draft.fields["answer"], "reasoning": draft.fields["reasoning"]})
    write_jsonl(work.generate_rejects, writer.rejects)
    write_jsonl(work.items, items)
    return {"videos": len(timelines), "attempted": len(drafts), "items": len(items),
            "dropped": dict(Counter(reject["reason"] for reject in writer.rejects))}
