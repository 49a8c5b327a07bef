"""One client for OpenAI-compatible ``/chat/completions`` endpoints: the judge's and LongVideo-Reason's.

Both callers need the same answer to "what does a failed request mean", so it is decided here once:

* **retried** (``max_retries`` times, exponential ``backoff_s``): no answer within ``timeout_s``, a refused or
  dropped connection, HTTP 408/409/429/5xx, a body that is not JSON or has no ``choices[0].message.content``. A
  ``Retry-After`` header (seconds or an HTTP date) replaces the backoff, capped at ``retry_after_max_s``;
* **the request's own failure** (:class:`ChatRequestFailed`, not retried): any other 4xx, say a prompt over the
  context length; and the retryable failures once the retries are spent;
* **the endpoint is unusable** (:class:`ChatConfigError`, not retried): HTTP 401/403 (the key) and 404 (the URL or
  model name) would fail every request alike, so the caller stops instead of scoring or dropping items.

The API key is read from ``$<api_key_env>`` per request and sent only in the ``Authorization`` header. Every error
message is built by :meth:`ChatClient.message`, so that is the one place to redact or reword them.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Optional

from longrl.redact import redact

__all__ = ["ChatClient", "ChatConfigError", "ChatReply", "ChatRequestFailed"]

_RETRYABLE_STATUS = {408, 409, 429}
_CONFIG_STATUS = {401, 403, 404}


class ChatConfigError(RuntimeError):
    """The endpoint rejects this key, URL or model (HTTP 401/403/404): every request would fail alike."""


class ChatRequestFailed(RuntimeError):
    """This request got no usable reply: a non-retryable 4xx, or retryable failures past ``max_retries``."""


@dataclass(frozen=True)
class ChatReply:
    content: str
    retries: int  # failed attempts before this reply
    seconds: float  # duration of the attempt that answered


class _Retry(Exception):
    def __init__(self, detail: str, wait_s: Optional[float] = None):
        super().__init__(detail)
        self.wait_s = wait_s  # from Retry-After; None: the backoff


@dataclass
class ChatClient:
    """POSTs chat bodies to ``{base_url}/chat/completions``; ``owner`` (a config key) prefixes every message."""

    base_url: str
    owner: str
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 30.0
    max_retries: int = 3
    backoff_s: float = 1.0
    retry_after_max_s: float = 60.0

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/chat/completions"

    def message(self, detail: str) -> str:
        """The text of every error this client raises, secrets masked (a server may echo the request)."""
        return self.redact(f"{self.owner}: {self.url} {detail}")

    def redact(self, text: str) -> str:
        """``text`` without the API key in use or anything shaped like a credential."""
        return redact(text, [os.environ.get(self.api_key_env)])

    def complete(self, body: dict[str, Any]) -> ChatReply:
        """The reply's ``choices[0].message.content``, after retries; raises the two errors above."""
        last = ""
        for attempt in range(self.max_retries + 1):
            start = time.perf_counter()
            try:
                return ChatReply(self._post(body), attempt, time.perf_counter() - start)
            except _Retry as error:
                last = str(error)
                if attempt < self.max_retries:
                    time.sleep(error.wait_s if error.wait_s is not None else self.backoff_s * 2 ** attempt)
        raise ChatRequestFailed(self.message(f"failed {self.max_retries + 1} time(s); last: {last}"))

    def _post(self, body: dict[str, Any]) -> str:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                payload = json.loads(response.read())
        except urllib.error.HTTPError as error:
            self._raise_for_status(error)
        except (TimeoutError, socket.timeout) as error:
            raise _Retry(f"no answer within {self.timeout_s} s ({error})") from None
        except urllib.error.URLError as error:
            raise _Retry(f"cannot connect ({error.reason})") from None
        except (ConnectionError, http.client.HTTPException) as error:  # dropped mid-answer, reset, bad status line
            raise _Retry(f"connection lost ({type(error).__name__}: {error})") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise _Retry(f"answered with a body that is not JSON ({error})") from None
        try:
            return payload["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise _Retry(f"answered without choices[0].message.content: {self.redact(str(payload))[:200]}") from None

    def _raise_for_status(self, error: urllib.error.HTTPError) -> None:
        body = self.redact(error.read().decode(errors="replace"))  # before cutting, or a cut key escapes the mask
        detail = f"answered HTTP {error.code} {error.reason}: {body[:300]!r}"
        if error.code >= 500 or error.code in _RETRYABLE_STATUS:
            raise _Retry(detail, self._retry_after(error.headers.get("Retry-After"))) from None
        if error.code in _CONFIG_STATUS:
            raise ChatConfigError(self.message(f"{detail} (check {self.owner}.base_url / model and "
                                               f"${self.api_key_env}); not retried")) from None
        raise ChatRequestFailed(self.message(detail)) from None

    def _retry_after(self, value: Optional[str]) -> Optional[float]:
        """``Retry-After`` in seconds (a number or an HTTP date), within ``[0, retry_after_max_s]``; None if absent."""
        if not value:
            return None
        try:
            seconds = float(value)
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                return None
        return min(max(seconds, 0.0), self.retry_after_max_s)
