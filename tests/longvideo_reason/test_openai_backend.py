"""The openai backend end to end: against scripts/serve_judge.py serving the tiny Qwen2 model (a real server and a
real model), and against a scripted endpoint for retries and failures that a healthy server never shows.

The random tiny model's greedy reply is steered with the standard ``logit_bias`` request field (sent through
``extra_body``), so an exact reply can be asserted while still coming from the model through the server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from lvr_helpers import REPO, prompt_text
from lvreason.backends import BackendConfigError, ModelPool, Request
from lvreason.config import ModelConfig, ModelsConfig
from lvreason.openai_backend import OpenAIBackend

API_KEY = "sk-lvr-test-7f3a-DO-NOT-LOG"
KEY_ENV = "LVR_TEST_API_KEY"
B_TOKEN = 33  # the local tokenizer's id of "B"


@pytest.fixture(scope="module")
def judge_server(tiny_model_dir) -> Iterator[str]:
    """scripts/serve_judge.py on a free port with the tiny text model and an API key; yields its base URL."""
    process = subprocess.Popen(
        [sys.executable, str(REPO / "scripts/serve_judge.py"), "--model", str(tiny_model_dir("qwen2")), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "JUDGE_SERVER_API_KEY": API_KEY})  # not on the command line, where ps shows it
    log = []
    for line in process.stdout:
        log.append(line)
        if line.startswith("listening on "):
            break
    else:
        raise RuntimeError(f"serve_judge.py did not start: {''.join(log)}")
    yield line.split()[-1]
    process.terminate()
    process.wait(timeout=30)


def _backend(url: str, **fields) -> OpenAIBackend:
    return OpenAIBackend(ModelConfig(backend="openai", base_url=url, model="judge", api_key_env=KEY_ENV,
                                     max_retries=2, backoff_s=0.01, **fields), "solver")


@pytest.mark.slow
def test_replies_come_from_the_served_model(judge_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, API_KEY)
    steered = _backend(judge_server, extra_body={"logit_bias": {str(B_TOKEN): 100.0}})
    assert steered.complete([Request("Which option?"), Request("And now?")], max_tokens=3) == [["BBB"], ["BBB"]]
    sampled = _backend(judge_server)
    first = sampled.complete([Request("Say something.")], max_tokens=6, temperature=1.0, n=2, seeds=[7])
    again = sampled.complete([Request("Say something.")], max_tokens=6, temperature=1.0, n=2, seeds=[7])
    assert first == again and len(first[0]) == 2 and first[0][0] != first[0][1]  # seeds 7 and 8
    assert sampled.failures == 0


@pytest.mark.slow
def test_a_wrong_key_stops_the_run_without_showing_the_key(judge_server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-42")
    with pytest.raises(BackendConfigError, match="HTTP 401") as failure:
        _backend(judge_server).complete([Request("hi")], max_tokens=2)
    assert "sk-wrong-key-42" not in str(failure.value)


def test_retries_then_failures_are_none_and_counted(scripted_endpoint):
    replies = {"flaky": [503, 503, "ok after two"], "bad": [400], "gone": [503] * 3}
    calls: dict[str, int] = {}

    def script(body):
        name = prompt_text(body)
        calls[name] = calls.get(name, 0) + 1
        return replies[name][min(calls[name], len(replies[name])) - 1]

    backend = _backend(scripted_endpoint(script).url)
    assert backend.complete([Request("flaky"), Request("bad"), Request("gone")], max_tokens=4) == [
        ["ok after two"], None, None]
    assert calls == {"flaky": 3, "bad": 1, "gone": 3} and backend.failures == 2


def test_a_missing_model_route_or_url_is_a_configuration_error(scripted_endpoint, monkeypatch):
    backend = _backend(scripted_endpoint(lambda body: 404).url)
    with pytest.raises(BackendConfigError, match=r"HTTP 404.*models\.solver"):
        backend.complete([Request("hi")], max_tokens=2)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(BackendConfigError, match=r"models\.generator\.base_url"):
        OpenAIBackend(ModelConfig(backend="openai", model="m"), "generator")


def test_roles_with_one_config_share_one_backend():
    llm = ModelConfig(backend="openai", base_url="http://127.0.0.1:9/v1", model="llm")
    pool = ModelPool(ModelsConfig(generator=llm, refiner=ModelConfig(**vars(llm)),
                                  solver=ModelConfig(**{**vars(llm), "model": "other"})))
    assert pool.get("generator") is pool.get("refiner") and pool.get("solver") is not pool.get("generator")
    with pytest.raises(BackendConfigError, match=r"models\.captioner\.model is not set"):
        pool.get("captioner")
