"""The upstream-recipe checker on a made-up checkout written in EasyR1's conventions: a script line with
``config=examples/config.yaml``, a config.yaml that names a batch reward file, and that reward file; and a diffusion
script in Long-RL's (``config=examples/config_diffusion.yaml``), which goes to Flow-GRPO."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from longrl.trainer.upstream_recipes import (FILTER_OFF, FLOW_ENTRY, MEDIA_KEYS, TINY_IF_SET, TINY_OVERRIDES, Recipe,
                                            Result, _data_kind, _refusal, _write_rows, check, compose, find_recipes,
                                            markdown_table, model_family, one_step_overrides, read_recipe)

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


# Long-RL's diffusion configs start from its text-model config (here a few of those keys, written for this test)
# and mark every section with ``diffusion: true``.
DIFFUSION_CONFIG = """\
data:
  train_files: ./examples/diffusion_data/prompts.jsonl
  val_files: ./examples/diffusion_data/val_prompts.jsonl
  prompt_key: text
  max_prompt_length: 2048
  diffusion: true
worker:
  actor:
    diffusion: true
    model:
      model_path: someone/stable-diffusion-3
  rollout:
    n: 5
    temperature: 1.0
    resolution: 768
    num_steps: 10
    diffusion: true
  reward:
    reward_type: batch
    reward_function: ./examples/reward_function/diffusion.py:compute_score
trainer:
  experiment_name: demo_diffusion
  n_gpus_per_node: 8
  diffusion: true
"""
DIFFUSION_SCRIPT = """\
#!/bin/bash
MODEL_PATH=stabilityai/stable-diffusion-3.5-medium
python3 -m verl.trainer.main \\
    config=examples/config_diffusion.yaml \\
    worker.actor.model.model_path=${MODEL_PATH} \\
    trainer.experiment_name=image_diffusion_grpo
"""


def test_a_diffusion_script_steps_through_flow_grpo_at_a_tiny_size(tmp_path):
    """Its entry point is Flow-GRPO's, its tiny stand-in the SD3 pipeline, its rows prompts under its own key; the
    one step replaces the model and data paths and shrinks the media and denoising steps, over the resolution the
    config file sets."""
    root = tmp_path / "up"
    (root / "examples/new_supports").mkdir(parents=True)
    (root / "examples/config_diffusion.yaml").write_text(DIFFUSION_CONFIG)
    (root / "examples/new_supports/sd3_image_grpo.sh").write_text(DIFFUSION_SCRIPT)
    [recipe] = find_recipes(root)
    assert recipe.entry == FLOW_ENTRY and model_family(recipe) == "sd3"
    assert _data_kind(recipe, "sd3") == "prompts"
    config, note = compose(recipe)
    assert config is not None, note
    assert config.worker.rollout.height == config.worker.rollout.width == 768
    rows = _write_rows("prompts", config.data, tmp_path / "rows")
    assert [list(row) for row in map(json.loads, rows.read_text().splitlines())] == [["text"]] * 4
    args = one_step_overrides(recipe, config, Path("/m"), rows)
    assert args[:2] == ["config=examples/config_diffusion.yaml", "trainer.experiment_name=image_diffusion_grpo"]
    settings = dict(arg.split("=", 1) for arg in args[2:])
    assert set(settings) <= {*TINY_OVERRIDES, "worker.actor.model.model_path", "data.train_files", "data.val_files"}
    tiny, _ = compose(Recipe(root, recipe.script, args, recipe.model_hint))
    rollout = tiny.worker.rollout
    assert (rollout.height, rollout.width, rollout.num_steps, rollout.n) == (32, 32, 2, 2)
    assert tiny.worker.actor.model.model_path == "/m" and tiny.data.train_files == str(rows)


def test_a_failed_first_use_download_is_named_with_its_url():
    stderr = """\
Downloading: "https://example.org/releases/scorer_weights.pt" to /root/.cache/torch/hub/checkpoints/scorer_weights.pt
Traceback (most recent call last):
urllib.error.URLError: <urlopen error [Errno -2] Name or service not known>

The above exception was the direct cause of the following exception:

longrl.rewards.loader.RewardFunctionError: batch reward function q.py:score raised URLError: <urlopen error offline>
  on a batch of 4 samples; a batch function scores all samples in one call
"""
    assert _refusal(stderr) == (
        "needs https://example.org/releases/scorer_weights.pt, fetched on first use, and the download failed: "
        "RewardFunctionError: batch reward function q.py:score raised URLError: <urlopen error offline>")
    assert _refusal("Traceback (most recent call last):\nValueError: bad shape\n  more detail") == (
        "ValueError: bad shape")
