"""An LLM judge over an OpenAI-compatible chat API, for open-ended answers that no rule can grade.

One request per (question, reference, response): the prompt is a jinja template over those three, the reply is
searched with ``score_pattern`` for a score in ``[0, 1]``. Around each request:

* **concurrency** — a bounded thread pool (``max_concurrency``), since a judge call is network-bound;
* **failed requests** — :mod:`longrl.rewards.chat_client` decides, as for LongVideo-Reason: time-outs, dropped
  connections, 5xx/429 (``Retry-After`` honoured up to ``retry_after_max_s``), bodies that are not JSON or lack the
  reply are retried ``max_retries`` times; HTTP 401/403/404 raise its ``ChatConfigError`` at once and stop the run
  (a wrong key is never scored 0, nor skipped by ``worker.reward.on_error``);
* **outage** — a request still failing after the retries (or any other 4xx): ``on_outage="zero"`` scores the
  sample 0 and counts it (``judge/failed``); ``"fail"`` raises :class:`JudgeUnavailable` naming the sample, so the
  step fails (or is skipped by ``worker.reward.on_error=skip_step``). Never silent;
* **malformed replies** — no score in the reply: 0, counted (``judge/malformed``), logged with a preview;
* **cache** — verdicts keyed by a hash of (question, reference, response), so a response repeated within a group or
  across steps costs one request (``judge/cache_hits``).

The API key is read from the environment (``api_key_env``) per request and sent only in the ``Authorization``
header; no message, log line or metric built here contains it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import jinja2

from longrl.config.schema import JudgeConfig
from longrl.rewards.chat_client import ChatClient, ChatRequestFailed

__all__ = ["JudgeItem", "JudgeUnavailable", "OpenAIJudge"]

logger = logging.getLogger(__name__)
DEFAULT_BASE_URL = "https://api.openai.com/v1"


class JudgeUnavailable(RuntimeError):
    """The judge gave no usable reply for a sample (after the retries), under ``on_outage="fail"``."""


@dataclass(frozen=True)
class JudgeItem:
    question: str
    reference: str
    response: str


class OpenAIJudge:
    """Scores :class:`JudgeItem` s in ``[0, 1]``; :meth:`drain_counts` returns (and resets) the event counters."""

    def __init__(self, cfg: JudgeConfig):
        self.cfg = cfg
        self.base_url = (cfg.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")
        self.client = ChatClient(self.base_url, "worker.reward.judge", cfg.api_key_env, cfg.timeout_s,
                                 cfg.max_retries, cfg.backoff_s, cfg.retry_after_max_s)
        template = Path(cfg.prompt_template)
        if not template.is_file():
            raise FileNotFoundError(f"worker.reward.judge.prompt_template: {template} does not exist")
        self.template = jinja2.Template(template.read_text())
        self.pattern = re.compile(cfg.score_pattern)
        self._cache: dict[str, float] = {}
        self._counts: Counter[str] = Counter()
        self._seconds = 0.0
        self._lock = threading.Lock()

    def score(self, items: Sequence[JudgeItem]) -> list[float]:
        """One score per item, requests in parallel; raises :class:`JudgeUnavailable` only under ``on_outage=fail``."""
        with ThreadPoolExecutor(max_workers=self.cfg.max_concurrency) as pool:
            return list(pool.map(self._score_one, range(len(items)), items))

    def drain_counts(self) -> dict[str, float]:
        """``judge/<event>`` counts and ``timing_s/judge_requests`` (summed request seconds) since the last call."""
        with self._lock:
            counts, self._counts = dict(self._counts), Counter()
            seconds, self._seconds = self._seconds, 0.0
        return {**{f"judge/{key}": float(value) for key, value in counts.items()},
                **({"timing_s/judge_requests": seconds} if counts.get("requests") else {})}

    def _count(self, key: str, seconds: float = 0.0, times: int = 1) -> None:
        with self._lock:
            self._counts[key] += times
            self._seconds += seconds

    def _score_one(self, index: int, item: JudgeItem) -> float:
        key = hashlib.sha256(json.dumps([item.question, item.reference, item.response]).encode()).hexdigest()
        if self.cfg.cache and key in self._cache:
            self._count("cache_hits")
            return self._cache[key]
        try:
            reply = self._request(self.template.render(question=item.question, reference=item.reference,
                                                        response=item.response))
        except ChatRequestFailed as error:
            if self.cfg.on_outage == "fail":
                raise JudgeUnavailable(f"judging sample {index} (question {item.question[:80]!r}): {error}") from error
            self._count("failed")
            logger.warning("judge unavailable for sample %d, scored 0: %s", index, error)
            return 0.0
        match = self.pattern.search(reply)
        if match is None:
            self._count("malformed")
            logger.warning("judge reply for sample %d has no score matching %r: %r", index, self.cfg.score_pattern,
                           self.client.redact(reply)[:200])
            return 0.0  # not cached: a retry of the same sample may parse
        score = min(1.0, max(0.0, float(match.group(1))))
        if self.cfg.cache:
            self._cache[key] = score
        return score

    def _request(self, prompt: str) -> str:
        """The reply text; raises ``ChatRequestFailed`` (outage policy) or ``ChatConfigError`` (stops the run)."""
        body = {"model": self.cfg.model, "messages": [{"role": "user", "content": prompt}],
                "temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens, **self.cfg.extra_body}
        reply = self.client.complete(body)
        if reply.retries:
            self._count("retries", times=reply.retries)
        self._count("requests", reply.seconds)
        return reply.content
