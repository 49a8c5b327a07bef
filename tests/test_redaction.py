"""Secrets never reach an error or a log line, even from a server that echoes the request back (key included)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from longrl.config.schema import JudgeConfig
from longrl.redact import MASK, redact
from longrl.rewards.chat_client import ChatConfigError
from longrl.rewards.judge import JudgeItem, OpenAIJudge

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO / "longvideo-reason"))  # lvreason, as the pipeline's scripts import it

from lvreason.backends import BackendConfigError, Request  # noqa: E402
from lvreason.config import ModelConfig  # noqa: E402
from lvreason.openai_backend import OpenAIBackend  # noqa: E402

sys.path.append(str(REPO / "tests/rewards"))
from judge_servers import FaultServer  # noqa: E402

KEY = "zq81-Plain-Looking-Key"  # shaped like no known key format: only the value itself gives it away
KEY_ENV = "REDACTION_TEST_API_KEY"


@pytest.fixture(scope="module")
def echo() -> Iterator[FaultServer]:
    server = FaultServer(["echo:401"])
    yield server
    server.stop()


@pytest.fixture
def key(monkeypatch, echo) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    echo.plan = ["echo:401"]
    return KEY


def test_redact_masks_keys_headers_tokens_and_url_passwords():
    assert redact(f"token {KEY} again {KEY}", [KEY, None]) == f"token {MASK} again {MASK}"
    assert redact("Authorization: Bearer abc.def\r\nHost: h") == f"Authorization: {MASK}\r\nHost: h"
    assert redact('{"Authorization": "Basic dXNlcjpw", "X-Api-Key": "k1"}') == \
        f'{{"Authorization": "{MASK}", "X-Api-Key": "{MASK}"}}'
    assert redact("sent bearer tok_123 and api_key=abc&x=1") == f"sent bearer {MASK} and api_key={MASK}&x=1"
    assert redact("key sk-proj-abcdefghij12") == f"key sk-{MASK}"
    assert redact("reach https://user:hunter2@judge.example/v1") == f"reach https://{MASK}@judge.example/v1"
    assert redact("HTTP 401 Unauthorized: model 'judge' not found") == "HTTP 401 Unauthorized: model 'judge' not found"


def _judge(url: str, **fields) -> OpenAIJudge:
    return OpenAIJudge(JudgeConfig(model="judge", base_url=url, api_key_env=KEY_ENV,
                                   prompt_template=str(REPO / "examples/judge/open_ended.jinja"), max_retries=0,
                                   backoff_s=0.0, timeout_s=10, **fields))


def test_judge_401_echoing_the_request_does_not_show_the_key(echo, key, caplog):
    with caplog.at_level(logging.DEBUG), pytest.raises(ChatConfigError, match="HTTP 401") as failure:
        _judge(echo.url, on_outage="fail").score([JudgeItem("q", "a", "r")])
    message = str(failure.value)
    assert "Authorization" in message and MASK in message  # the echo is shown, the key in it is not
    assert key not in message and key not in caplog.text


def test_judge_reply_echoing_the_request_is_logged_without_the_key(echo, key, caplog):
    echo.plan = ["echo:200"]  # a 200 without choices: retried, then an outage scored 0 and logged with the reply
    with caplog.at_level(logging.WARNING):
        assert _judge(echo.url, on_outage="zero").score([JudgeItem("q", "a", "r")]) == [0.0]
    assert "judge unavailable" in caplog.text and MASK in caplog.text and key not in caplog.text


def _backend(url: str) -> OpenAIBackend:
    return OpenAIBackend(ModelConfig(backend="openai", base_url=url, model="m", api_key_env=KEY_ENV, max_retries=0,
                                     backoff_s=0.0), "solver")


def test_pipeline_backend_401_echo_and_logged_failure_hide_the_key(echo, key, caplog):
    with pytest.raises(BackendConfigError, match="HTTP 401") as failure:
        _backend(echo.url).complete([Request("hi")], max_tokens=2)
    assert MASK in str(failure.value) and key not in str(failure.value)
    echo.plan = ["echo:400"]  # a per-request failure: logged, the item dropped
    with caplog.at_level(logging.WARNING):
        assert _backend(echo.url).complete([Request("hi")], max_tokens=2) == [None]
    assert "HTTP 400" in caplog.text and MASK in caplog.text and key not in caplog.text
