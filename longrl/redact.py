"""Remove secrets (API keys, ``Authorization`` headers, bearer tokens) from text bound for an error or a log.

An HTTP error body is shown to the user to explain the failure, but a server (or a proxy) may echo the request in it,
``Authorization`` header included; so every message built from a remote answer passes through :func:`redact`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "<redacted>"

_PATTERNS = (
    # an Authorization / Proxy-Authorization header, as text or as a JSON/dict entry: mask up to the line's end
    re.compile(r"(?i)((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"),
    # key-like fields: api_key=..., "x-api-key": "...", access_token: ...
    re.compile(r"(?i)((?:x-)?(?:api[_-]?key|access[_-]?token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',&}]+"),
    re.compile(r"(sk-)[A-Za-z0-9_-]{8,}"),  # OpenAI-style keys wherever they appear
    re.compile(r"(://)[^/\s:@]+:[^/\s@]+(?=@)"),  # user:password in a URL
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with each value of ``secrets`` (the keys in use) and anything shaped like a credential masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, MASK)
    for pattern in _PATTERNS:
        text = pattern.sub(lambda match: match.group(1) + MASK, text)
    return text
