"""The reward loader: finding the function, calling both reward types, and every error it reports."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest

from longrl.rewards import RewardFunctionError, RewardTypeError, load_reward_function


def write(path: Path, source: str) -> Path:
    path.write_text(textwrap.dedent(source))
    return path


def sample(response: str, ground_truth: str = "B") -> dict:
    return {"response": response, "response_length": len(response), "ground_truth": ground_truth}


# Overall = scale * (response equals ground truth) + bonus; every part is a named metric.
SEQUENTIAL_SOURCE = """
    from math import sqrt  # imported, so not listed among the file's own callables

    def compute_score(reward_input, scale=1.0, bonus=0.0):
        hit = float(reward_input["response"] == reward_input["ground_truth"])
        return {"overall": scale * hit + bonus, "hit": hit, "length": reward_input["response_length"]}

    def helper_score(reward_input):
        return {"overall": 0.5}

    class Grader:
        pass

    THRESHOLD = 3
"""

BATCH_SOURCE = """
    def compute_score(reward_inputs, scale=1.0):
        return [{"overall": scale * len(item["response"]), "n": len(reward_inputs)} for item in reward_inputs]
"""


@pytest.fixture
def sequential_file(tmp_path: Path) -> Path:
    return write(tmp_path / "my_reward.py", SEQUENTIAL_SOURCE)


@pytest.fixture
def batch_file(tmp_path: Path) -> Path:
    return write(tmp_path / "my_batch_reward.py", BATCH_SOURCE)


def test_sequential_file_by_absolute_path_scores_each_sample(sequential_file: Path) -> None:
    reward = load_reward_function(f"{sequential_file}:compute_score", "sequential")
    scores = reward([sample("B"), sample("C"), sample("xyz", "xyz")])
    assert scores == [
        {"overall": 1.0, "hit": 1.0, "length": 1.0},
        {"overall": 0.0, "hit": 0.0, "length": 1.0},
        {"overall": 1.0, "hit": 1.0, "length": 3.0},
    ]
    assert all(type(v) is float for score in scores for v in score.values())


def test_file_path_is_resolved_against_the_current_directory(
    sequential_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    reward = load_reward_function("./my_reward.py:helper_score", "sequential")
    assert reward.spec == f"{sequential_file}:helper_score"  # stored absolute, so a worker elsewhere finds it
    assert reward([sample("anything")]) == [{"overall": 0.5}]


def test_function_name_defaults_to_compute_score(sequential_file: Path) -> None:
    reward = load_reward_function(str(sequential_file), "sequential")
    assert reward.spec.endswith("my_reward.py:compute_score")
    assert reward([sample("B")])[0]["overall"] == 1.0


def test_module_spec_loads_from_an_importable_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "site" / "myrewards"
    package.mkdir(parents=True)
    write(package / "__init__.py", "")
    write(package / "scoring.py", BATCH_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    reward = load_reward_function("myrewards.scoring:compute_score", "batch", {"scale": 2.0})
    assert reward([sample("abc"), sample("de")]) == [{"overall": 6.0, "n": 2.0}, {"overall": 4.0, "n": 2.0}]


def test_builtin_default_loads_by_module_spec() -> None:
    reward = load_reward_function("longrl.rewards.r1v:compute_score", "sequential")
    good = "<think>count the cars</think><answer>B</answer>"
    assert reward([sample(good, "B"), sample("B", "B")]) == [
        {"overall": 1.0, "format": 1.0, "accuracy": 1.0},
        {"overall": 0.0, "format": 0.0, "accuracy": 0.0},
    ]


def test_batch_function_gets_the_whole_list_in_one_call(batch_file: Path) -> None:
    reward = load_reward_function(f"{batch_file}:compute_score", "batch")
    assert reward([sample("a"), sample("bb"), sample("ccc")]) == [
        {"overall": 1.0, "n": 3.0},
        {"overall": 2.0, "n": 3.0},
        {"overall": 3.0, "n": 3.0},
    ]


def test_extra_kwargs_reach_sequential_and_batch_functions(sequential_file: Path, batch_file: Path) -> None:
    sequential = load_reward_function(f"{sequential_file}:compute_score", "sequential", {"scale": 3.0, "bonus": 0.25})
    assert sequential([sample("B"), sample("C")]) == [
        {"overall": 3.25, "hit": 1.0, "length": 1.0},
        {"overall": 0.25, "hit": 0.0, "length": 1.0},
    ]
    batch = load_reward_function(f"{batch_file}:compute_score", "batch", {"scale": 0.5})
    assert batch([sample("abcd")]) == [{"overall": 2.0, "n": 1.0}]


def test_empty_input_list_gives_no_scores(batch_file: Path) -> None:
    assert load_reward_function(str(batch_file), "batch")([]) == []


def test_loaded_function_pickles_by_spec(batch_file: Path) -> None:
    reward = load_reward_function(f"{batch_file}:compute_score", "batch", {"scale": 2.0})
    clone = pickle.loads(pickle.dumps(reward))
    assert (clone.spec, clone.reward_type, clone.kwargs) == (reward.spec, "batch", {"scale": 2.0})
    assert clone([sample("abc")]) == [{"overall": 6.0, "n": 1.0}]


def test_file_named_like_a_stdlib_module_does_not_shadow_it(tmp_path: Path) -> None:
    path = write(tmp_path / "math.py", "def compute_score(reward_input):\n    return {'overall': 2.0}\n")
    reward = load_reward_function(f"{path}:compute_score", "sequential")
    import math

    assert reward([sample("x")]) == [{"overall": 2.0}] and math.sqrt(4.0) == 2.0


# ----- load-time errors -----


def test_missing_file_names_the_path_and_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RewardFunctionError) as info:
        load_reward_function("rewards/nope.py:compute_score", "sequential")
    message = str(info.value)
    assert f"{tmp_path / 'rewards' / 'nope.py'}" in message and "not found" in message
    assert str(tmp_path) in message


def test_missing_function_lists_the_callables_the_file_defines(sequential_file: Path) -> None:
    with pytest.raises(RewardFunctionError) as info:
        load_reward_function(f"{sequential_file}:score", "sequential")
    message = str(info.value)
    assert str(sequential_file) in message and "'score'" in message
    assert "callables it defines: Grader, compute_score, helper_score" in message
    assert "sqrt" not in message and "THRESHOLD" not in message


def test_missing_function_in_a_module_names_the_module() -> None:
    with pytest.raises(RewardFunctionError, match=r"module 'longrl.rewards.r1v' has no function 'score'"):
        load_reward_function("longrl.rewards.r1v:score", "sequential")


def test_unknown_reward_type_lists_the_valid_ones(sequential_file: Path) -> None:
    with pytest.raises(RewardFunctionError) as info:
        load_reward_function(str(sequential_file), "parallel")
    assert "unknown reward_type 'parallel'" in str(info.value)
    assert "'batch', 'sequential'" in str(info.value)


def test_missing_module_is_reported_with_its_name() -> None:
    with pytest.raises(RewardFunctionError, match="could not import reward function module 'no_such_pkg.rewards'"):
        load_reward_function("no_such_pkg.rewards:compute_score", "sequential")


def test_file_that_fails_to_import_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path / "broken.py", "raise ImportError('needs a grader package')\n")
    with pytest.raises(RewardFunctionError) as info:
        load_reward_function(f"{path}:compute_score", "sequential")
    assert f"importing reward function file '{path}' failed: ImportError: needs a grader package" in str(info.value)
    assert isinstance(info.value.__cause__, ImportError)


def test_non_callable_target_is_rejected(sequential_file: Path) -> None:
    with pytest.raises(RewardFunctionError, match=r"my_reward.py:THRESHOLD is a int, not a function"):
        load_reward_function(f"{sequential_file}:THRESHOLD", "sequential")


def test_kwargs_the_function_does_not_take_are_rejected_at_load(sequential_file: Path) -> None:
    with pytest.raises(RewardFunctionError) as info:
        load_reward_function(f"{sequential_file}:compute_score", "sequential", {"weight": 0.2})
    message = str(info.value)
    assert "my_reward.py:compute_score" in message and "['weight']" in message


# ----- call-time errors -----

RAISING_SOURCE = """
    def compute_score(reward_input, **kwargs):
        if reward_input["ground_truth"] == "42":
            raise KeyError("problem_type")
        return {"overall": 1.0}

    def batch_score(reward_inputs):
        raise ZeroDivisionError("empty group")
"""


def test_sequential_function_that_raises_names_function_index_and_sample(tmp_path: Path) -> None:
    path = write(tmp_path / "raising.py", RAISING_SOURCE)
    reward = load_reward_function(f"{path}:compute_score", "sequential")
    with pytest.raises(RewardFunctionError) as info:
        reward([sample("fine"), sample("<think>x</think><answer>41</answer>", "42")])
    message = str(info.value)
    assert f"{path}:compute_score raised KeyError: 'problem_type'" in message
    assert "on sample 1" in message
    assert "ground_truth='42'" in message and "response='<think>x</think><answer>41</answer>'" in message
    assert isinstance(info.value.__cause__, KeyError)


def test_long_response_is_truncated_keeping_its_start_and_end(tmp_path: Path) -> None:
    path = write(tmp_path / "raising.py", RAISING_SOURCE)
    reward = load_reward_function(f"{path}:compute_score", "sequential")
    response = "<think>" + "frame " * 2000 + "</think><answer>7</answer>"
    with pytest.raises(RewardFunctionError) as info:
        reward([sample(response, "42")])
    message = str(info.value)
    assert len(message) < 1000
    assert "'<think>frame frame" in message and "</think><answer>7</answer>'" in message
    assert f"[{len(repr(response)) - 200 - 100} characters omitted]" in message


def test_batch_function_that_raises_says_the_sample_is_unknown_and_gives_the_batch_size(tmp_path: Path) -> None:
    path = write(tmp_path / "raising.py", RAISING_SOURCE)
    reward = load_reward_function(f"{path}:batch_score", "batch")
    with pytest.raises(RewardFunctionError) as info:
        reward([sample("a"), sample("b"), sample("c")])
    message = str(info.value)
    assert f"batch reward function {path}:batch_score raised ZeroDivisionError: empty group" in message
    assert "a batch of 3 samples" in message and "cannot be identified" in message
    assert isinstance(info.value.__cause__, ZeroDivisionError)


@pytest.mark.parametrize(
    ("returned", "expected"),
    [
        ("{'overall': 1.0}", "must return a list of 2 score dicts, one per input; it returned dict: {'overall': 1.0}"),
        ("({'overall': 1.0}, {'overall': 1.0})", "must return a list of 2 score dicts, one per input; it returned tuple"),
        ("[{'overall': 1.0}]", "returned 1 scores for 2 inputs"),
        ("[{'overall': 1.0}, 0.5]", "invalid score for sample 1: expected a dict with an 'overall' key, got float"),
        ("[{'overall': 1.0}, {'accuracy': 1.0}]", "invalid score for sample 1: the dict has no 'overall' key"),
        ("[{'overall': float('nan')}, {'overall': 1.0}]", "sample 0: 'overall' is nan, not a finite number"),
        ("[{'overall': 1.0}, {'overall': 1.0, 'format': float('inf')}]", "sample 1: 'format' is inf, not a finite"),
        ("[{'overall': '1.0'}, {'overall': 1.0}]", "sample 0: 'overall' is str '1.0', not a number"),
        ("[{'overall': 1.0}, {'overall': True}]", "sample 1: 'overall' is bool True, not a number"),
        ("[{'overall': 1.0}, {'overall': None}]", "sample 1: 'overall' is NoneType None, not a number"),
    ],
)
def test_malformed_batch_return_names_function_index_and_value(tmp_path: Path, returned: str, expected: str) -> None:
    # The function fails when called with one sample too, so no other reward type fits it.
    path = write(tmp_path / "bad.py", f"def compute_score(reward_inputs):\n    assert isinstance(reward_inputs, list)\n"
                                      f"    return {returned}\n")
    reward = load_reward_function(f"{path}:compute_score", "batch")
    with pytest.raises(RewardFunctionError) as info:
        reward([sample("a"), sample("b")])
    assert f"{path}:compute_score" in str(info.value)
    assert expected in str(info.value)


def test_malformed_sequential_return_shows_what_was_returned(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.py", "def compute_score(reward_input):\n    return {'accuracy': 1.0}\n")
    reward = load_reward_function(f"{path}:compute_score", "sequential")
    with pytest.raises(RewardFunctionError) as info:
        reward([sample("a")])
    assert str(info.value) == (
        f"reward function {path}:compute_score returned an invalid score for sample 0: the dict has no 'overall' "
        f"key; it returned {{'accuracy': 1.0}}"
    )


def test_list_from_a_sequential_call_hints_at_the_batch_type(tmp_path: Path) -> None:
    path = write(tmp_path / "listing.py", "def compute_score(reward_inputs):\n    return [{'overall': 1.0}]\n")
    reward = load_reward_function(f"{path}:compute_score", "sequential")
    with pytest.raises(RewardTypeError) as info:
        reward([sample("a")])
    assert "sample 0" in str(info.value) and "set reward_type='batch'" in str(info.value)
    assert "it is a batch function" in str(info.value)
