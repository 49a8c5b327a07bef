"""Any OpenAI-compatible chat-completions endpoint as a :class:`~lvreason.backends.Backend`.

* ``n`` replies are ``n`` requests (seeded ``seed``, ``seed + 1``, ...), because many servers ignore the ``n``
  field; requests run ``max_concurrency`` at a time (calls are network-bound).
* A request that times out, cannot connect, or gets HTTP 408/409/429/5xx is retried ``max_retries`` times with
  exponential backoff; after that, or on another 4xx (say, a prompt over the context length), that request's
  replies are ``None``: logged, counted in :attr:`failures`, and the step drops the item. HTTP 401/403/404 mean
  the role's key, URL or model name is wrong for every request, so they raise :class:`BackendConfigError` at once.
* A request with a video sends its sampled frames as ``image_url`` parts before the text.
* The API key is read from ``$<api_key_env>`` per request and sent only in the ``Authorization`` header.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional

from longrl.data.video import VideoDecodeError
from longrl.redact import redact

from lvreason.backends import BackendConfigError, Request
from lvreason.config import ModelConfig
from lvreason.frames import frame_data_urls, image_parts

logger = logging.getLogger(__name__)
_RETRYABLE_STATUS = {408, 409, 429}
_CONFIG_STATUS = {401, 403, 404}


class _Retryable(Exception):
    pass


class _Failed(Exception):
    pass


class OpenAIBackend:
    def __init__(self, cfg: ModelConfig, role: str):
        self.cfg, self.role = cfg, role
        base_url = cfg.base_url or os.environ.get("OPENAI_BASE_URL")
        if not base_url:
            raise BackendConfigError(f"models.{role}.base_url is not set (nor $OPENAI_BASE_URL)")
        self.url = f"{base_url.rstrip('/')}/chat/completions"
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
            return self._with_retries(body)
        except _Failed as error:
            self._fail(error)
            return None

    def _with_retries(self, body: dict) -> str:
        last = ""
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                time.sleep(self.cfg.backoff_s * 2 ** (attempt - 1))
            try:
                return self._post(body)
            except _Retryable as error:
                last = str(error)
        raise _Failed(f"{self._redact(self.url)} failed {self.cfg.max_retries + 1} time(s); last: {last}")

    def _post(self, body: dict) -> str:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.cfg.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.cfg.timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = f"HTTP {error.code} {self._redact(str(error.reason))}: {self._redact(str(error.read()))[:300]}"
            if error.code >= 500 or error.code in _RETRYABLE_STATUS:
                raise _Retryable(detail) from None
            if error.code in _CONFIG_STATUS:
                raise BackendConfigError(f"models.{self.role}: {self._redact(self.url)} answered {detail} (check "
                                         f"models.{self.role}.base_url / .model and ${self.cfg.api_key_env})") from None
            raise _Failed(detail) from None
        except (TimeoutError, socket.timeout) as error:
            raise _Retryable(f"no answer within {self.cfg.timeout_s} s ({error})") from None
        except urllib.error.URLError as error:
            raise _Retryable(self._redact(f"cannot reach {self.url}: {error.reason}")) from None
        except json.JSONDecodeError as error:
            raise _Retryable(f"the answer is not JSON ({error.msg})") from None
        try:
            return payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise _Retryable(f"an answer without choices[0].message.content: {self._redact(str(payload))[:200]}") \
                from None

    def _redact(self, text: str) -> str:
        """``text`` without the API key in use or anything shaped like a credential (a server may echo them)."""
        return redact(text, [os.environ.get(self.cfg.api_key_env)])
