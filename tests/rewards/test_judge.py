"""The open-ended judge against a real OpenAI-compatible server on loopback (scripts/serve_judge.py serving the tiny
Qwen2 model), through a proxy that injects time-outs and 5xx answers.

A random tiny model cannot judge; where a test needs a well-formed verdict it steers the model's greedy decoding
with the standard ``logit_bias`` request field (sent through ``judge.extra_body``), so the reply really comes from
the model and the server. Left unsteered, its reply has no score: the malformed-output path.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from longrl.config.schema import JudgeConfig
from longrl.rewards import RewardFunctionError, load_reward_function
from longrl.rewards.chat_client import ChatConfigError
from longrl.rewards.judge import JudgeItem, JudgeUnavailable, OpenAIJudge
from longrl.rewards.open_ended import OpenEndedReward

from judge_servers import REPO, FaultyProxy, JudgeServerProcess

pytestmark = pytest.mark.slow
API_KEY = "sk-test-4f9c2e7a1b-DO-NOT-LOG"
ONE, ZERO = 16, 15  # the local tokenizer's ids of "1" and "0"
ITEM = JudgeItem("Which shape appears first?", "circle", "the circle")


@pytest.fixture(scope="module")
def proxy(tiny_model_dir):
    server = JudgeServerProcess(tiny_model_dir("qwen2"), API_KEY)
    proxy = FaultyProxy(server.url)
    yield proxy
    proxy.stop()
    server.stop()
    assert not any(API_KEY in line for line in server.log), "the server logged the API key"


@pytest.fixture
def judge_cfg(proxy, monkeypatch) -> JudgeConfig:
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    proxy.reset()
    return JudgeConfig(model="judge", base_url=proxy.url, prompt_template=str(REPO / "examples/judge/open_ended.jinja"),
                       score_pattern=r"([01])", max_tokens=2, timeout_s=60, max_retries=2, backoff_s=0.01,
                       extra_body={"logit_bias": {str(ONE): 100.0}})


def test_scores_from_the_model_reply_with_the_key_sent_and_cached(proxy, judge_cfg):
    judge = OpenAIJudge(judge_cfg)
    assert judge.score([ITEM]) == [1.0]
    assert OpenAIJudge(replace(judge_cfg, extra_body={"logit_bias": {str(ZERO): 100.0}})).score([ITEM]) == [0.0]
    assert proxy.headers[0]["Authorization"] == f"Bearer {API_KEY}"
    # The same (question, reference, response) again, twice in one batch: no new request.
    assert judge.score([ITEM, ITEM]) == [1.0, 1.0]
    assert proxy.forwarded == 2
    counts = judge.drain_counts()
    assert counts["judge/requests"] == 1 and counts["judge/cache_hits"] == 2 and counts["timing_s/judge_requests"] > 0
    assert judge.drain_counts() == {}


def test_malformed_reply_scores_zero_and_is_counted(judge_cfg, caplog):
    judge = OpenAIJudge(replace(judge_cfg, extra_body={}, score_pattern=JudgeConfig.score_pattern, max_tokens=4))
    with caplog.at_level(logging.WARNING, logger="longrl.rewards.judge"):
        assert judge.score([ITEM]) == [0.0]
    assert judge.drain_counts()["judge/malformed"] == 1
    assert "has no score" in caplog.text


def test_5xx_then_success_is_retried(proxy, judge_cfg):
    proxy.reset({1: "503", 2: "503"})
    judge = OpenAIJudge(judge_cfg)
    assert judge.score([ITEM]) == [1.0]
    assert proxy.seen == 3 and judge.drain_counts()["judge/retries"] == 2


def test_time_out_is_retried(proxy, judge_cfg):
    proxy.reset({1: "sleep:3"})
    judge = OpenAIJudge(replace(judge_cfg, timeout_s=1.0))
    assert judge.score([ITEM]) == [1.0]
    assert judge.drain_counts()["judge/retries"] == 1


def test_outage_scores_zero_or_fails_as_configured(proxy, judge_cfg, caplog):
    proxy.reset({i: "503" for i in range(1, 10)})
    judge = OpenAIJudge(judge_cfg)
    with caplog.at_level(logging.WARNING, logger="longrl.rewards.judge"):
        assert judge.score([ITEM]) == [0.0]
    assert judge.drain_counts()["judge/failed"] == 1
    proxy.reset({i: "503" for i in range(1, 10)})
    with pytest.raises(JudgeUnavailable, match=r"sample 0 .*HTTP 503"):
        OpenAIJudge(replace(judge_cfg, on_outage="fail")).score([ITEM])
    assert API_KEY not in caplog.text


def test_wrong_key_fails_at_once_without_showing_it(proxy, judge_cfg, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong-key-123")
    with pytest.raises(ChatConfigError, match="HTTP 401") as failure:  # whatever on_outage says: never scored 0
        OpenAIJudge(judge_cfg).score([ITEM])
    assert "sk-wrong-key-123" not in str(failure.value) and proxy.seen == 1  # not retried


def test_open_ended_rows_go_to_the_judge_and_choice_rows_to_the_rule(judge_cfg):
    reward = OpenEndedReward(load_reward_function("longrl.rewards.r1v:compute_score", "sequential", {}),
                             OpenAIJudge(judge_cfg))
    good = "<think>it moves</think><answer>circle</answer>"
    inputs = [
        {"response": good, "response_length": 9, "ground_truth": "circle", "problem": "q", "options": None},
        {"response": "<think>x</think><answer>B</answer>", "response_length": 5, "ground_truth": "A",
         "problem": "q", "options": ["circle", "square"]},
        {"response": "circle", "response_length": 1, "ground_truth": "circle", "problem": "q", "options": []},
    ]
    scores = reward(inputs)
    assert scores[0] == {"overall": pytest.approx(1.0), "format": 1.0, "accuracy": 1.0}  # judge (steered to 1)
    assert scores[1]["accuracy"] == 0.0 and scores[1]["overall"] == pytest.approx(0.1)  # rule: wrong letter
    assert scores[2]["accuracy"] == 1.0 and scores[2]["overall"] == pytest.approx(0.9)  # judge, no format
    assert reward.drain_metrics()["judge/requests"] == 2


def test_outage_with_fail_policy_is_a_reward_error(proxy, judge_cfg):
    proxy.reset({i: "503" for i in range(1, 10)})
    reward = OpenEndedReward(load_reward_function("longrl.rewards.r1v:compute_score", "sequential", {}),
                             OpenAIJudge(replace(judge_cfg, on_outage="fail", max_retries=0)))
    with pytest.raises(RewardFunctionError, match="open-ended judge"):
        reward([{"response": "x", "response_length": 1, "ground_truth": "y", "problem": "q", "options": None}])
