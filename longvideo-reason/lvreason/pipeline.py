"""The six steps in order, each skipped when its outputs exist, and the driver that runs them.

A step's outputs are written atomically and last, so "all outputs exist" means "the step finished". Forcing a step
re-runs it and every later step the run includes, since their inputs change with it. Each step that runs writes its
counts (drops by reason, items in and out) to ``stats/<step>.json`` and returns them.

A step that wrote no rows (no videos found, every item dropped) or whose model requests all went unanswered (a
server down) has not finished: :class:`StepFailed` is raised and its product is removed, so a re-run against a
working server redoes it instead of skipping an empty result.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from lvreason import caption, filters, generate, refine, segment, split
from lvreason.backends import ModelPool
from lvreason.config import STEP_NAMES, PipelineConfig
from lvreason.records import read_jsonl, write_text_atomic
from lvreason.workdir import WorkDir

logger = logging.getLogger(__name__)


class StepFailed(RuntimeError):
    """A step produced nothing usable; its output was removed, so a re-run redoes it."""


@dataclass(frozen=True)
class Step:
    run: Callable[[PipelineConfig, WorkDir, ModelPool], dict[str, Any]]
    inputs: Callable[[WorkDir], list[Path]]
    outputs: Callable[[WorkDir], list[Path]]
    product: Callable[[WorkDir], list[Path]]  # the outputs that must hold at least one row between them


STEPS: dict[str, Step] = {
    "segment": Step(segment.run, lambda w: [], lambda w: [w.segments], lambda w: [w.segments]),
    "caption": Step(caption.run, lambda w: [w.segments], lambda w: [w.captions], lambda w: [w.captions]),
    "generate": Step(generate.run, lambda w: [w.captions], lambda w: [w.items], lambda w: [w.items]),
    "refine": Step(refine.run, lambda w: [w.items, w.captions], lambda w: [w.refined], lambda w: [w.refined]),
    "filter": Step(filters.run, lambda w: [w.refined, w.captions], lambda w: [w.filter_report, w.kept],
                   lambda w: [w.kept]),
    "split": Step(split.run, lambda w: [w.kept], lambda w: [w.sft, w.rl], lambda w: [w.sft, w.rl]),
}


@dataclass(frozen=True)
class StepResult:
    ran: bool
    stats: Optional[dict[str, Any]]  # None for a skipped step


def run_step(name: str, cfg: PipelineConfig, models: ModelPool, force: bool = False) -> StepResult:
    """Run step ``name`` unless its outputs exist (or ``force``); a missing input names the step that makes it."""
    step, work = STEPS[name], WorkDir(Path(cfg.work_dir).expanduser())
    if not force and all(path.exists() for path in step.outputs(work)):
        logger.info("%s: skipped, its outputs exist (force it with force=[%s])", name, name)
        return StepResult(False, None)
    for path in step.inputs(work):
        if not path.exists():
            maker = next(other for other, spec in STEPS.items() if path in spec.outputs(work))
            raise FileNotFoundError(f"step {name} reads {path}, which step {maker} writes: run {maker} first")
    start, (asked_before, unanswered_before) = time.perf_counter(), models.tally()
    stats = step.run(cfg, work, models)
    stats["seconds"] = round(time.perf_counter() - start, 2)
    write_text_atomic(work.stats(name), json.dumps(stats, indent=2) + "\n")
    asked, unanswered = models.tally()
    problem = _unfinished(step, work, asked - asked_before, unanswered - unanswered_before)
    if problem is not None:
        for path in step.product(work):  # other outputs (filter_report.jsonl) stay, to show why
            path.unlink(missing_ok=True)
        raise StepFailed(f"step {name} failed: {problem}; its output was removed, so a re-run redoes it "
                         f"(counts in {work.stats(name)})")
    logger.info("%s: %s", name, stats)
    return StepResult(True, stats)


def _unfinished(step: Step, work: WorkDir, asked: int, unanswered: int) -> Optional[str]:
    """Why the step that just ran did not really finish, or None."""
    if asked and unanswered == asked:
        return f"none of its {asked} model requests got a reply (see the warnings above: is the server up?)"
    if not any(read_jsonl(path) for path in step.product(work)):
        return f"it wrote no rows to {' or '.join(str(path) for path in step.product(work))}"
    return None


def run_pipeline(cfg: PipelineConfig, models: Optional[ModelPool] = None) -> dict[str, StepResult]:
    """Run ``cfg.steps`` in pipeline order; a forced step and all later ones re-run."""
    models = models or ModelPool(cfg.models)
    first_forced = min((STEP_NAMES.index(name) for name in cfg.force), default=len(STEP_NAMES))
    return {name: run_step(name, cfg, models, force=index >= first_forced)
            for index, name in enumerate(STEP_NAMES) if name in cfg.steps}
