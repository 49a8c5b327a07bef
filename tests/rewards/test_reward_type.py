"""Which way a reward function is called, as EasyR1 decides it: worker.reward.reward_type when set, else the file's
REWARD_TYPE, else batch; a function called the other way fails on its first call saying which type fits."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from longrl.rewards import RewardFunctionError, RewardTypeError, load_reward_function

SAMPLES = [{"response": "<answer>4</answer>", "ground_truth": "4"}, {"response": "five", "ground_truth": "5"}]

SEQUENTIAL = '''
def compute_score(reward_input):
    right = float(reward_input["ground_truth"] in reward_input["response"])
    return {"overall": right, "accuracy": right}
'''
BATCH = '''
def compute_score(reward_inputs):
    return [{"overall": float(item["ground_truth"] in item["response"])} for item in reward_inputs]
'''
EITHER = '''
REWARD_TYPE = "batch"
CALLS = []

def compute_score(given):
    CALLS.append(type(given).__name__)
    return [{"overall": 1.0} for _ in given] if isinstance(given, list) else {"overall": 1.0}
'''


def _file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(text)
    return f"{path}:compute_score"


@pytest.mark.parametrize("declared, body", [("sequential", SEQUENTIAL), ("batch", BATCH)])
def test_the_files_reward_type_decides_when_the_key_is_unset(tmp_path, declared, body):
    reward = load_reward_function(_file(tmp_path, declared, f'REWARD_TYPE = "{declared}"\n{body}'))
    assert reward.reward_type == declared
    assert [score["overall"] for score in reward(SAMPLES)] == [1.0, 0.0]


def test_without_a_declaration_a_function_is_batch_as_in_easyr1(tmp_path):
    reward = load_reward_function(_file(tmp_path, "plain", BATCH))
    assert reward.reward_type == "batch"
    assert [score["overall"] for score in reward(SAMPLES)] == [1.0, 0.0]


def test_the_config_key_wins_over_the_files_declaration(tmp_path):
    reward = load_reward_function(_file(tmp_path, "either", EITHER), "sequential")
    assert reward.reward_type == "sequential" and reward(SAMPLES) == [{"overall": 1.0}] * 2
    module = reward._fn.__globals__
    assert module["CALLS"] == ["dict", "dict"]


@pytest.mark.parametrize("body, configured, fits", [(SEQUENTIAL, None, "sequential"), (BATCH, "sequential", "batch")])
def test_a_type_mismatch_fails_the_first_call_with_the_fix(tmp_path, body, configured, fits):
    reward = load_reward_function(_file(tmp_path, "mismatch", body), configured)
    with pytest.raises(RewardTypeError) as error:
        reward(SAMPLES)
    message = str(error.value)
    assert f"it is a {fits} function. Set REWARD_TYPE = \"{fits}\" in its file, or worker.reward.reward_type={fits}" \
           in message
    source = "worker.reward.reward_type" if configured else "the default when neither"
    assert f"was called as a {reward.reward_type} function ({source}" in message
    # Not a RewardFunctionError: on_error=skip_step must not skip every step of a run that can never score.
    assert not isinstance(error.value, RewardFunctionError)


def test_only_the_first_call_is_checked_and_a_failing_function_keeps_its_own_error(tmp_path):
    flaky = _file(tmp_path, "flaky", 'REWARD_TYPE = "sequential"\nN = []\n\ndef compute_score(x):\n'
                                     '    N.append(1)\n    if len(N) > 2:\n        raise ValueError("grader down")\n'
                                     '    return {"overall": 1.0}\n')
    reward = load_reward_function(flaky)
    assert reward(SAMPLES) == [{"overall": 1.0}] * 2
    with pytest.raises(RewardFunctionError, match="raised ValueError: grader down"):
        reward(SAMPLES)
    broken = load_reward_function(_file(tmp_path, "broken", "def compute_score(x):\n    raise KeyError('k')\n"))
    with pytest.raises(RewardFunctionError, match="raised KeyError"):
        broken(SAMPLES)


def test_a_pickled_function_resolves_its_type_the_same_way_in_another_process(tmp_path):
    reward = pickle.loads(pickle.dumps(load_reward_function(_file(tmp_path, "seq", f'REWARD_TYPE = "sequential"\n{SEQUENTIAL}'))))
    assert reward.reward_type == "sequential" and reward.type_source.startswith("REWARD_TYPE of reward function file")


def test_an_unknown_declared_type_is_refused_naming_where_it_came_from(tmp_path):
    with pytest.raises(RewardFunctionError, match=r"unknown reward_type 'parallel' \(REWARD_TYPE of reward function"):
        load_reward_function(_file(tmp_path, "odd", f'REWARD_TYPE = "parallel"\n{SEQUENTIAL}'))
