"""The upstream-recipe checker on a made-up checkout written in EasyR1's conventions: a script line with
``config=examples/config.yaml``, a config.yaml that names a batch reward file, and that reward file."""

from __future__ import annotations

from pathlib import Path

import pytest

from longrl.trainer.upstream_recipes import (FILTER_OFF, MEDIA_KEYS, TINY_IF_SET, TINY_OVERRIDES, Result, check,
                                            compose, find_recipes, markdown_table, one_step_overrides, read_recipe)

CONFIG = """\
data:
  train_files: someone/math12k@train
  val_files: someone/math12k@test
  prompt_key: problem
  answer_key: answer
  max_response_length: 2048
  format_prompt: ./examples/format_prompt/math.jinja
worker:
  actor:
    model:
      freeze_vision_tower: false
  reward:
    reward_type: batch
    reward_function: ./examples/reward_function/constant.py:compute_score
trainer:
  experiment_name: demo
  n_gpus_per_node: 8
"""
REWARD = """\
REWARD_TYPE = "batch"


def compute_score(reward_inputs):
    return [{"overall": 0.5, "shape": 0.25 if reward_input["ground_truth"] else 0.0} for reward_input in reward_inputs]
"""
SCRIPT = """\
#!/bin/bash
set -x
MODEL_PATH=Qwen/Qwen2.5-0.5B-Instruct  # replace it with your local file path
frames=4

python3 -m verl.trainer.main \\
    config=examples/config.yaml \\
    worker.actor.model.model_path=${MODEL_PATH} \\
    data.max_prompt_length=$((frames*64+256)) \\
    trainer.experiment_name=${EXP_NAME:-tiny_math} \\
    trainer.nnodes=${nnodes:-1}{extra}
"""


def _checkout(root: Path, extra: str = "") -> Path:
    (root / "examples/reward_function").mkdir(parents=True)
    (root / "examples/format_prompt").mkdir()
    (root / "examples/format_prompt/math.jinja").write_text("{{ content | trim }} Answer in \\boxed{}.")
    (root / "examples/config.yaml").write_text(CONFIG)
    (root / "examples/reward_function/constant.py").write_text(REWARD)
    (root / "examples/qwen2_5_math_grpo.sh").write_text(SCRIPT.replace("{extra}", extra))
    (root / "examples/prepare_data.sh").write_text("#!/bin/bash\npython3 prepare.py $1\n")
    return root


def test_script_is_read_as_the_shell_would_expand_it(tmp_path):
    root = _checkout(tmp_path / "up", extra=" \\\n    data.video_dir=$1")
    [recipe] = find_recipes(root)  # prepare_data.sh runs no verl.trainer.main
    assert recipe.args == ["config=examples/config.yaml", "worker.actor.model.model_path=Qwen/Qwen2.5-0.5B-Instruct",
                           "data.max_prompt_length=512", "trainer.experiment_name=tiny_math", "trainer.nnodes=1",
                           "data.video_dir=/path/to/arg1"]
    assert recipe.entry == "longrl.trainer.main"
    assert read_recipe(root, root / "examples/prepare_data.sh") is None


def test_compose_reports_ok_and_a_refusal_names_the_feature(tmp_path):
    root = _checkout(tmp_path / "up", extra=" \\\n    worker.actor.warp_drive=true")
    [recipe] = find_recipes(root)
    refused = check(recipe, "up", tmp_path / "work", one_step=False, timeout=300)
    assert not refused.composed and "worker.actor.warp_drive" in refused.compose_note
    recipe.args = recipe.args[:-1]
    composed = check(recipe, "up", tmp_path / "work", one_step=False, timeout=300)
    assert composed.composed and composed.step is None
    assert composed.reward_function == "./examples/reward_function/constant.py:compute_score"
    table = markdown_table([composed, refused]).splitlines()
    assert table[2].startswith("| up | examples/qwen2_5_math_grpo.sh | qwen2 | ok | - |")
    assert table[3].startswith("| up | examples/qwen2_5_math_grpo.sh | qwen2 | refused: ")


def test_one_step_changes_only_the_model_and_data_paths_and_the_sizes(tmp_path):
    root = _checkout(tmp_path / "up")
    [recipe] = find_recipes(root)
    config, _ = compose(recipe)
    args = one_step_overrides(recipe, config, Path("/m"), Path("/d/rows.jsonl"))
    assert args[:3] == ["config=examples/config.yaml", "data.max_prompt_length=512",
                        "trainer.experiment_name=tiny_math"]
    settings = dict(arg.split("=", 1) for arg in args[3:])
    assert {key: settings.pop(key) for key in ("worker.actor.model.model_path", "data.train_files", "data.val_files",
                                               "trainer.nnodes", "trainer.max_steps")} == {
        "worker.actor.model.model_path": "/m", "data.train_files": "/d/rows.jsonl", "data.val_files": "/d/rows.jsonl",
        "trainer.nnodes": "1", "trainer.max_steps": "1"}
    assert set(settings) <= {*TINY_OVERRIDES, *TINY_IF_SET, *MEDIA_KEYS}


def test_one_step_turns_dapo_online_filtering_off_and_nothing_else(tmp_path):
    root = _checkout(tmp_path / "up", extra=" \\\n    algorithm.online_filtering=True")
    [recipe] = find_recipes(root)
    config, _ = compose(recipe)
    args = one_step_overrides(recipe, config, Path("/m"), Path("/d/rows.jsonl"))
    assert "algorithm.online_filtering=True" not in args and "algorithm.online_filtering=false" in args
    [plain] = find_recipes(_checkout(tmp_path / "plain"))
    plain_args = one_step_overrides(plain, compose(plain)[0], Path("/m"), Path("/d/rows.jsonl"))
    assert not any(arg.startswith(FILTER_OFF[0]) for arg in plain_args)


@pytest.mark.slow
def test_one_step_trains_with_the_checkouts_own_reward_file(tmp_path):
    """Only the model and data paths change: the tiny qwen2 and rows in the problem/answer layout; the step's reward
    parts are the checkout's constant reward's."""
    root = _checkout(tmp_path / "up")
    [recipe] = find_recipes(root)
    result = check(recipe, "up", tmp_path / "work", one_step=True, timeout=600)
    assert isinstance(result, Result) and result.composed, result.compose_note
    assert result.step, result.step_note
    assert result.reward_means == {"critic/score/mean": 0.5, "reward/shape": 0.25}
