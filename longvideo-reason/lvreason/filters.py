"""Step 5, filter: keep the items that need the whole video and still teach GRPO something.

Three checks, each switched by ``filter.<name>.enabled``, run in this order (cheapest first); an item dropped by one
is not sent to the later ones:

* ``answerable`` -- the solver LLM, given every caption of the video, must choose the answer: otherwise the captions
  (and so the item) probably do not support it.
* ``single_clip`` -- the solver, given one clip's caption at a time, must fail: the fraction of clips that answer it
  must be ``<= max_accuracy``. An item one clip can answer is not a long-video question.
* ``rollout`` -- the rollout VLM answers ``n`` times at ``temperature`` on the video itself; keep ``low < accuracy <
  high``. Items always answered right or always wrong give every GRPO rollout the same reward, so no signal.

A reply with no parseable choice counts as a wrong answer; a request that got no reply at all drops the item (it is
no evidence either way; re-run the step with ``force`` to retry). Every item's decisions and reasons go to
``filter_report.jsonl``; the kept items to ``kept.jsonl``.

Prompt variables (solve and rollout prompts): ``question``, ``options``, ``letters``; solve prompts also ``clips``
(every captioned clip for ``answerable``, one for ``single_clip``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from lvreason.backends import ModelPool, Request
from lvreason.config import AnswerableConfig, PipelineConfig, prompt_path
from lvreason.parsing import LETTERS, extract_choice
from lvreason.records import read_jsonl, stable_seed, write_jsonl
from lvreason.templates import Prompt
from lvreason.timeline import load_timelines
from lvreason.workdir import WorkDir

FILTERS = ("answerable", "single_clip", "rollout")


@dataclass
class Decision:
    kept: bool
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


def _choices(replies: list[str], options: list[str]) -> list[Optional[str]]:
    return [extract_choice(reply, options) for reply in replies]


def decide_answerable(replies: Optional[list[str]], item: dict[str, Any]) -> Decision:
    if replies is None:
        return Decision(False, "no reply")
    [choice] = _choices(replies, item["options"])
    if choice == item["answer"]:
        return Decision(True, f"chose {choice}, the answer", {"choice": choice})
    wrong = "no parseable choice" if choice is None else f"chose {choice}"
    return Decision(False, f"{wrong}, the answer is {item['answer']}", {"choice": choice})


def _accuracy(choices: list[Optional[str]], answer: str) -> tuple[int, float]:
    correct = sum(choice == answer for choice in choices)
    return correct, correct / len(choices)


def decide_single_clip(replies: list[Optional[list[str]]], item: dict[str, Any], max_accuracy: float) -> Decision:
    """``replies[k]``: the solver's reply given clip ``k``'s caption alone."""
    if any(reply is None for reply in replies):
        return Decision(False, "no reply")
    choices = [choice for reply in replies for choice in _choices(reply, item["options"])]
    correct, accuracy = _accuracy(choices, item["answer"])
    detail = {"choices": choices, "accuracy": accuracy}
    verdict = "<=" if accuracy <= max_accuracy else ">"
    return Decision(accuracy <= max_accuracy, f"{correct}/{len(choices)} single clips answer it ({verdict} "
                    f"max_accuracy {max_accuracy})", detail)


def decide_rollout(replies: Optional[list[str]], item: dict[str, Any], low: float, high: float) -> Decision:
    if replies is None:
        return Decision(False, "no reply")
    choices = _choices(replies, item["options"])
    correct, accuracy = _accuracy(choices, item["answer"])
    inside = low < accuracy < high
    return Decision(inside, f"{correct}/{len(choices)} rollouts correct ({'inside' if inside else 'outside'} "
                    f"({low}, {high}))", {"choices": choices, "accuracy": accuracy})


class _Checks:
    """Runs each check's requests for a batch of items and turns the replies into decisions."""

    def __init__(self, cfg: PipelineConfig, models: ModelPool, timelines: dict[str, list[dict[str, Any]]]):
        self.cfg, self.models, self.timelines = cfg, models, timelines

    def _solve(self, spec: AnswerableConfig, items: list[dict[str, Any]], clips_of: Callable[[dict], list[list[dict]]]
               ) -> list[list[Optional[list[str]]]]:
        """Per item, the solver's reply for each caption list ``clips_of(item)`` gives."""
        prompt = Prompt(prompt_path(self.cfg, spec.prompt))
        groups = [clips_of(item) for item in items]
        requests = [Request(prompt.render(clips=clips, question=item["question"], options=item["options"],
                                          letters=LETTERS))
                    for item, group in zip(items, groups) for clips in group]
        seeds = [stable_seed(self.cfg.seed, item["item_id"], "solve", index)
                 for item, group in zip(items, groups) for index in range(len(group))]
        replies = iter(self.models.get("solver").complete(requests, max_tokens=spec.max_tokens,
                                                        temperature=spec.temperature, seeds=seeds))
        return [[next(replies) for _ in group] for group in groups]

    def answerable(self, items: list[dict[str, Any]]) -> list[Decision]:
        spec = self.cfg.filter.answerable
        replies = self._solve(spec, items, lambda item: [self.timelines[item["video"]]])
        return [decide_answerable(reply, item) for item, [reply] in zip(items, replies)]

    def single_clip(self, items: list[dict[str, Any]]) -> list[Decision]:
        spec = self.cfg.filter.single_clip
        replies = self._solve(spec, items, lambda item: [[clip] for clip in self.timelines[item["video"]]])
        return [decide_single_clip(reply, item, spec.max_accuracy) for item, reply in zip(items, replies)]

    def rollout(self, items: list[dict[str, Any]]) -> list[Decision]:
        spec = self.cfg.filter.rollout
        prompt = Prompt(prompt_path(self.cfg, spec.prompt))
        videos = Path(self.cfg.videos_dir).expanduser()
        requests = [Request(prompt.render(question=item["question"], options=item["options"], letters=LETTERS),
                            video=str(videos / item["video"])) for item in items]
        replies = self.models.get("rollout").complete(
            requests, max_tokens=spec.max_tokens, temperature=spec.temperature, n=spec.n,
            seeds=[stable_seed(self.cfg.seed, item["item_id"], "rollout") for item in items])
        return [decide_rollout(reply, item, spec.low, spec.high) for item, reply in zip(items, replies)]


def run(cfg: PipelineConfig, work: WorkDir, models: ModelPool) -> dict[str, Any]:
    items = read_jsonl(work.refined)
    checks = _Checks(cfg, models, load_timelines(work.captions))
    report = {item["item_id"]: {"item_id": item["item_id"], "kept": True, "dropped_by": None, "checks": {}}
              for item in items}
    alive = items
    for name in FILTERS:
        if not getattr(cfg.filter, name).enabled:
            for entry in report.values():
                entry["checks"][name] = {"status": "disabled"}
            continue
        decisions = getattr(checks, name)(alive) if alive else []
        survivors = []
        for item, decision in zip(alive, decisions):
            entry = report[item["item_id"]]
            entry["checks"][name] = {"kept": decision.kept, "reason": decision.reason, **decision.detail}
            if decision.kept:
                survivors.append(item)
            else:
                entry.update(kept=False, dropped_by=name)
        for entry in report.values():
            if name not in entry["checks"]:
                entry["checks"][name] = {"status": f"not run: dropped by {entry['dropped_by']}"}
        alive = survivors
    write_jsonl(work.filter_report, report.values())
    write_jsonl(work.kept, alive)
    return {"items": len(items), "kept": len(alive),
            "dropped_by": dict(Counter(entry["dropped_by"] for entry in report.values() if not entry["kept"]))}
