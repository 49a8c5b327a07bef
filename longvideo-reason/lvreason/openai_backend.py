"""Any OpenAI-compatible chat-completions endpoint as a :class:`~lvreason.backends.Backend`.

* ``n`` replies are ``n`` requests (seeded ``seed``, ``seed + 1``, ...), because many servers ignore the ``n``
  field; requests run ``max_concurrency`` at a time (calls are network-bound).
* Requests go through longrl's :class:`~longrl.rewards.chat_client.ChatClient`, the judge's client: time-outs,
  dropped connections, 5xx/429 and bodies without a reply are retried ``max_retries`` times (``Retry-After``
  honoured); after that, or on another 4xx (say, a prompt over the context length), that request's replies are
  ``None``: logged, counted in :attr:`failures`, and the step drops the item. HTTP 401/403/404 mean the role's key,
  URL or model name is wrong for every request, so they raise :class:`BackendConfigError` at once.
* A request with a video sends its sampled frames as ``image_url`` parts before the text.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from longrl.data.video import VideoDecodeError
from longrl.rewards.chat_client import ChatClient, ChatConfigError, ChatRequestFailed

from lvreason.backends import BackendConfigError, Request
from lvreason.config import ModelConfig
from lvreason.frames import frame_data_urls, image_parts

logger = logging.getLogger(__name__)


class OpenAIBackend:
    def __init__(self, cfg: ModelConfig, role: str):
        self.cfg, self.role = cfg, role
        base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise BackendConfigError(f"models.{role}.base_url is not set (nor $OPENAI_BASE_URL)")
        self.client = ChatClient(base_url, f"models.{role}", cfg.api_key_env, cfg.timeout_s, cfg.max_retries,
                                 cfg.backoff_s)
        self.url = self.client.url
        self.failures = 0
        self._lock = threading.Lock()

    def complete(self, requests: Sequence[Request], *, max_tokens: int, temperature: float = 0.0, n: int = 1,
                 seeds: Optional[Sequence[int]] = None) -> list[Optional[list[str]]]:
        seeds = list(seeds) if seeds is not None else [None] * len(requests)
        with ThreadPoolExecutor(max_workers=self.cfg.max_concurrency) as pool:
            contents = list(pool.map(self._content, requests))  # a video's frames are encoded once for n replies
            jobs = [(content, seed, sample) for content, seed in zip(contents, seeds) for sample in range(n)]
            replies = list(pool.map(lambda job: self._one(*job, max_tokens, temperature), jobs))
        grouped = [replies[index * n:(index + 1) * n] for index in range(len(requests))]
        return [None if any(reply is None for reply in group) else group for group in grouped]

    def _fail(self, error: Exception) -> None:
        with self._lock:
            self.failures += 1
        logger.warning("models.%s: no reply for a request (%s)", self.role, error)

    def _content(self, request: Request) -> Any:
        """The message content (text, or frames then text); None when the video cannot be decoded."""
        if request.video is None:
            return request.text
        try:
            urls = frame_data_urls(request.video, self.cfg.num_frames, self.cfg.max_pixels, self.cfg.image_format)
        except VideoDecodeError as error:
            self._fail(error)
            return None
        return [*image_parts(urls), {"type": "text", "text": request.text}]

    def _one(self, content: Any, seed: Optional[int], sample: int, max_tokens: int,
             temperature: float) -> Optional[str]:
        if content is None:
            return None
        body = {"model": self.cfg.model, "messages": [{"role": "user", "content": content}],
                "max_tokens": max_tokens, "temperature": temperature, **self.cfg.extra_body}
        if seed is not None:
            body["seed"] = seed + sample
        try:
            return self.client.complete(body).content
        except ChatRequestFailed as error:
            self._fail(error)
            return None
        except ChatConfigError as error:
            raise BackendConfigError(str(error)) from None
