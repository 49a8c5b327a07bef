"""Every way a judge request can fail, against a real loopback HTTP server (judge_servers.FaultServer): what is
retried (and how long it waits), what goes through ``on_outage`` / ``on_error``, and what stops the run at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from longrl.config.schema import JudgeConfig
from longrl.rewards import RewardFunctionError, load_reward_function
from longrl.rewards.chat_client import ChatClient, ChatConfigError, ChatRequestFailed
from longrl.rewards.judge import JudgeItem, JudgeUnavailable, OpenAIJudge
from longrl.rewards.open_ended import OpenEndedReward

from judge_servers import REPO, FaultServer

ITEM = JudgeItem("Which shape appears first?", "circle", "the circle")
KEY = "sk-faults-0b1d-DO-NOT-LOG"


@pytest.fixture
def serve() -> Iterator:
    started: list[FaultServer] = []

    def start(*plan: str) -> FaultServer:
        started.append(FaultServer(list(plan)))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def judge(server: FaultServer, **fields) -> OpenAIJudge:
    cfg = JudgeConfig(model="judge", base_url=server.url, api_key_env="FAULTS_TEST_KEY",
                      prompt_template=str(REPO / "examples/judge/open_ended.jinja"), timeout_s=0.5, max_retries=2,
                      backoff_s=0.01)
    return OpenAIJudge(replace(cfg, **fields))


@pytest.mark.parametrize("fault", ["hang", "reset", "status:503", "status:429", "notjson", "nofield"])
def test_each_transient_fault_is_retried_then_scored(serve, fault):
    server = serve(fault, "ok:Score: 1")
    scorer = judge(server)
    assert scorer.score([ITEM]) == [1.0]
    counts = scorer.drain_counts()
    assert len(server.times) == 2 and counts["judge/retries"] == 1 and counts["judge/requests"] == 1


@pytest.mark.parametrize("fault", ["hang", "reset", "status:500", "notjson", "nofield"])
def test_a_lasting_fault_goes_through_on_outage(serve, fault):
    server = serve(fault)
    assert judge(server, max_retries=1).score([ITEM]) == [0.0]  # on_outage=zero: scored 0, counted
    with pytest.raises(JudgeUnavailable, match=r"judging sample 0 .*worker\.reward\.judge: .* failed 2 time"):
        judge(server, max_retries=1, on_outage="fail").score([ITEM])
    assert len(server.times) == 4


def test_outage_under_fail_is_a_reward_error_that_skip_step_can_skip(serve):
    reward = OpenEndedReward(load_reward_function("longrl.rewards.r1v:compute_score", "sequential", {}),
                             judge(serve("notjson"), max_retries=0, on_outage="fail"))
    with pytest.raises(RewardFunctionError, match="not JSON"):
        reward([{"response": "x", "response_length": 1, "ground_truth": "y", "problem": "q", "options": None}])


def test_retry_after_is_honoured_within_its_cap(serve):
    server = serve("status:429:1", "status:503:3600", "ok:Score: 0.5")
    assert judge(server, retry_after_max_s=0.3).score([ITEM]) == [0.5]
    first_wait, second_wait = server.times[1] - server.times[0], server.times[2] - server.times[1]
    assert 0.3 <= first_wait < 0.9  # Retry-After: 1, capped at 0.3 s (not the 0.01 s backoff)
    assert 0.3 <= second_wait < 0.9  # an hour asked, the cap waited
    date_server = serve("status:503:Wed, 21 Oct 2015 07:28:00 GMT", "ok:Score: 1")  # a date in the past: no wait
    start = time.monotonic()
    assert judge(date_server).score([ITEM]) == [1.0] and time.monotonic() - start < 0.5


@pytest.mark.parametrize("status", [401, 403, 404])
def test_auth_and_route_errors_stop_at_once_whatever_on_outage(serve, monkeypatch, status):
    monkeypatch.setenv("FAULTS_TEST_KEY", KEY)
    server = serve(f"status:{status}")
    reward = OpenEndedReward(load_reward_function("longrl.rewards.r1v:compute_score", "sequential", {}),
                             judge(server, on_outage="zero"))
    with pytest.raises(ChatConfigError, match=rf"HTTP {status}.*\$FAULTS_TEST_KEY.*not retried") as failure:
        reward([{"response": "x", "response_length": 1, "ground_truth": "y", "problem": "q", "options": None}])
    assert not isinstance(failure.value, RewardFunctionError)  # on_error=skip_step cannot skip it
    assert len(server.times) == 1 and KEY not in str(failure.value)


def test_other_4xx_fails_the_request_without_retries(serve):
    server = serve("status:400")
    client = ChatClient(server.url, "models.solver", max_retries=3, backoff_s=0.01)
    with pytest.raises(ChatRequestFailed, match=r"^models\.solver: http://127\.0\.0\.1:\d+/v1/chat/completions "
                                               r"answered HTTP 400"):
        client.complete({"model": "m", "messages": []})
    assert len(server.times) == 1
