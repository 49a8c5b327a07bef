"""The kinds of reward (``worker.reward.kind``) come from one registry: each entry builds the trainer's reward
around the configured function."""

from __future__ import annotations

from pathlib import Path
from pkgutil import resolve_name

from longrl.config.choices import REWARD_KINDS
from longrl.config.schema import JudgeConfig, RewardConfig
from longrl.rewards import load_reward_function
from longrl.rewards.kinds import build_reward_kind
from longrl.rewards.open_ended import OpenEndedReward

REPO = Path(__file__).resolve().parents[2]
RULE = "longrl.rewards.r1v:compute_score"


def test_every_registered_kind_builds_a_reward_around_the_function():
    assert all(callable(resolve_name(target)) for target in REWARD_KINDS.values())
    function = load_reward_function(RULE, "sequential", {})
    assert build_reward_kind(function, RewardConfig(kind="function")) is function
    judge = JudgeConfig(model="judge", base_url="http://judge.invalid/v1",
                        prompt_template=str(REPO / "examples/judge/open_ended.jinja"))
    reward = build_reward_kind(function, RewardConfig(kind="open_ended", judge=judge))
    assert isinstance(reward, OpenEndedReward) and reward.rule is function
    assert (reward.judge.cfg.model, reward.judge.base_url) == ("judge", "http://judge.invalid/v1")
    # rows with options never reach the judge: the rule's score stands
    row = {"response": "<think>x</think><answer>B</answer>", "response_length": 5, "ground_truth": "B",
           "problem": "q", "options": ["a", "b"]}
    assert reward([row]) == function([row])
