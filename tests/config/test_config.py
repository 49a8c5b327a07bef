"""The composed configuration: defaults, algorithm groups, EasyR1-style config files, and start-up errors."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from longrl.config.errors import ConfigError
from longrl.config.loader import load_config
from longrl.config.schema import RootConfig
from longrl.config.validate import validate_config


def test_defaults_compose_with_quickstart_paths_resolved():
    cfg = load_config()
    assert isinstance(cfg, RootConfig)
    assert cfg.data.train_files == "outputs/quickstart/data/train.jsonl"
    assert cfg.worker.actor.model.model_path == "outputs/quickstart/tiny-qwen2_5_vl"
    assert cfg.algorithm.adv_estimator == "grpo"
    assert cfg.algorithm.use_kl_loss is True
    assert cfg.worker.rollout.n == 4


def test_algorithm_group_selects_dapo_across_sections():
    cfg = load_config(["algorithm=dapo"])
    assert cfg.algorithm.online_filtering is True
    assert cfg.algorithm.disable_kl is True and cfg.algorithm.use_kl_loss is False
    assert cfg.worker.actor.clip_ratio_high == 0.28
    assert cfg.worker.actor.clip_ratio_low == 0.2


def test_clip_ratio_low_may_be_zero_as_easyr1s_cispo_script_sets_it():
    """EasyR1's CISPO recipe clips the ratio to [1, 5] (low 0, high 4); 1 and beyond stay refused."""
    cfg = load_config(["worker.actor.loss_type=cispo", "worker.actor.clip_ratio_low=0",
                       "worker.actor.clip_ratio_high=4"])
    assert (cfg.worker.actor.clip_ratio_low, cfg.worker.actor.clip_ratio_high) == (0.0, 4.0)
    with pytest.raises(ConfigError, match=r"clip_ratio_low=1.0: allowed in \[0, 1\)"):
        load_config(["worker.actor.clip_ratio_low=1.0"])


def test_algorithm_group_reinforce_and_cli_override_wins():
    cfg = load_config(["algorithm=reinforce", "algorithm.kl_coef=0.5", "trainer.logger=[console]"])
    assert cfg.algorithm.adv_estimator == "reinforce_plus_plus"
    assert cfg.algorithm.kl_penalty == "kl"
    assert cfg.algorithm.kl_coef == 0.5
    assert cfg.trainer.logger == ["console"]


def test_misspelt_cli_key_names_valid_keys_and_the_likely_one():
    with pytest.raises(ConfigError) as info:
        load_config(["data.rollout_batchsize=4"])
    message = str(info.value)
    assert "data.rollout_batchsize" in message
    assert "Valid keys under 'data':" in message
    assert "max_prompt_length" in message and "video_dir" in message
    assert "Did you mean 'data.rollout_batch_size'?" in message


def test_misspelt_nested_key_lists_that_section():
    with pytest.raises(ConfigError) as info:
        load_config(["worker.actor.optim.lrr=1e-5"])
    message = str(info.value)
    assert "Valid keys under 'worker.actor.optim':" in message
    assert "weight_decay" in message and "lr_warmup_ratio" in message
    assert "Did you mean 'worker.actor.optim.lr'?" in message


def test_misspelt_top_level_section():
    with pytest.raises(ConfigError) as info:
        load_config(["trainr.max_steps=3"])
    assert "Valid keys under the top level: data, algorithm, worker, trainer, sft, quickstart" in str(info.value)


def test_easyr1_config_file_applies_below_cli(tmp_path: Path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text(
        "data:\n  rollout_batch_size: 16\n  format_prompt: ./examples/format_prompt/r1v.jinja\n"
        "worker:\n  actor:\n    global_batch_size: 8\n    model:\n      model_path: /models/Qwen2.5-VL-7B\n"
        "  reward:\n    reward_type: batch\n    reward_function: ./examples/reward_function/math.py:compute_score\n"
        "  rollout:\n    val_override_config: {temperature: 0.6, n: 1}\n"
        "trainer:\n  logger: [console, file]\n  experiment_name: it's quoted\n"
    )
    cfg = load_config(["data.rollout_batch_size=32"], config_file=config_file)
    assert cfg.data.rollout_batch_size == 32
    assert cfg.worker.actor.global_batch_size == 8
    assert cfg.worker.actor.model.model_path == "/models/Qwen2.5-VL-7B"
    assert cfg.worker.reward.reward_function == "./examples/reward_function/math.py:compute_score"
    assert cfg.worker.rollout.val_override_config == {"temperature": 0.6, "n": 1}
    assert cfg.trainer.experiment_name == "it's quoted"


def test_keys_of_a_free_form_dict_are_set_without_a_plus_as_in_easyr1(tmp_path: Path):
    config_file = tmp_path / "config.yaml"
    config_file.write_text("worker:\n  reward:\n    reward_function_kwargs: {format_weight: 0.2, mode: strict}\n")
    cfg = load_config(["worker.reward.reward_function_kwargs.format_weight=0.1",
                       "+worker.reward.reward_function_kwargs.extra=1"], config_file=config_file)
    assert cfg.worker.reward.reward_function_kwargs == {"format_weight": 0.1, "mode": "strict", "extra": 1}
    # the dict's own name is still checked
    with pytest.raises(ConfigError, match="Did you mean 'worker.reward.reward_function_kwargs'"):
        load_config(["worker.reward.reward_function_kwarg.format_weight=0.1"])


def test_misspelt_key_in_config_file_names_the_file(tmp_path: Path):
    config_file = tmp_path / "bad.yaml"
    config_file.write_text("worker:\n  rollout:\n    temprature: 0.7\n")
    with pytest.raises(ConfigError) as info:
        load_config(config_file=config_file)
    message = str(info.value)
    assert "worker.rollout.temprature" in message and str(config_file) in message
    assert "Did you mean 'worker.rollout.temperature'?" in message


def test_wrong_value_type_is_a_config_error():
    with pytest.raises(ConfigError, match="rollout_batch_size"):
        load_config(["data.rollout_batch_size=many"])


@pytest.mark.parametrize(
    "overrides, expected",
    [
        (["worker.actor.global_batch_size=3"],
         "data.rollout_batch_size (4) must be a multiple of worker.actor.global_batch_size (3)"),
        (["worker.actor.micro_batch_size_per_device_for_update=3"],
         "gives 16 per data-parallel rank, which must be divisible by "
         "worker.actor.micro_batch_size_per_device_for_update (3)"),
        (["trainer.n_gpus_per_node=4", "worker.actor.ulysses_size=3"],
         "trainer.nnodes x trainer.n_gpus_per_node = 4 must be divisible by worker.actor.ulysses_size (3)"),
        (["worker.rollout.fps=2.0"], "set exactly one of worker.rollout.num_video_frames"),
        (["algorithm.adv_estimator=ppo"], "algorithm.adv_estimator='ppo' is not one of"),
        (["algorithm.kl_penalty=k9"], "algorithm.kl_penalty='k9' is not one of"),
        (["worker.actor.loss_agg_mode=sum"], "worker.actor.loss_agg_mode='sum' is not one of"),
        (["worker.rollout.name=sglang"], "worker.rollout.name='sglang' is not one of ['hf', 'vllm']"),
        (["algorithm.filter_low=0.9", "algorithm.filter_high=0.5"], "algorithm.filter_low (0.9) must be below"),
        (["data.on_bad_row=ignore"], "data.on_bad_row='ignore' is not one of ['error', 'skip']"),
        (["worker.reward.judge.on_outage=retry"], "worker.reward.judge.on_outage='retry' is not one of ['fail', 'zero']"),
        (["worker.reward.judge.timeout_s=0"], "worker.reward.judge.timeout_s=0.0: allowed > 0"),
        (["worker.reward.num_workers=-1"], "worker.reward.num_workers=-1: allowed >= 0"),
        (["worker.rollout.prompt_input=pixels"],
         "worker.rollout.prompt_input='pixels' is not one of ['embeds', 'multi_modal']"),
        (["trainer.n_gpus_per_node=4", "worker.rollout.tensor_parallel_size=2"],
         "worker.rollout.tensor_parallel_size (2) must divide worker.actor.ulysses_size (1)"),
        (["algorithm=dapo", "+worker.reward.reward_function_kwargs.overlong_buffer_length=256",
          "+worker.reward.reward_function_kwargs.overlong_penalty_factor=1.0"],
         "the overlong penalty is on twice: the reward function applies its own (worker.reward.reward_function_kwargs"
         ".overlong_buffer_length=256, as Long-RL's dapo.py does) and algorithm.overlong_buffer_len=16 adds longrl's"),
        (["worker.actor.model.lora.rank=-8"], "worker.actor.model.lora.rank (-8) must be >= 0 (0 turns LoRA off)"),
        (["worker.actor.model.lora.rank=8", "worker.actor.model.lora.alpha=0"],
         "worker.actor.model.lora.alpha (0.0) must be > 0"),
        (["worker.actor.model.lora.rank=8", "worker.actor.model.lora.target_modules=' , '"],
         "worker.actor.model.lora.target_modules (' , ') names no module"),
        (["worker.actor.model.lora.rank=8", "worker.actor.model.lora.exclude_modules='.*visual(.*'"],
         "worker.actor.model.lora.exclude_modules ('.*visual(.*') is not a regular expression: missing ), "
         "unterminated subpattern"),
    ],
)
def test_inconsistent_values_fail_with_the_rule(overrides, expected):
    with pytest.raises(ConfigError) as info:
        load_config(overrides)
    assert expected in str(info.value)


@pytest.mark.parametrize("keep", ["algorithm.overlong_buffer_len=0",
                                  "+worker.reward.reward_function_kwargs.overlong_penalty_factor=0"])
def test_one_overlong_penalty_is_accepted(keep):
    cfg = load_config(["algorithm=dapo", "+worker.reward.reward_function_kwargs.overlong_buffer_length=256", keep])
    assert cfg.worker.reward.reward_function_kwargs["overlong_buffer_length"] == 256


def test_valid_multi_rank_batch_passes():
    cfg = load_config(["trainer.n_gpus_per_node=8", "worker.actor.ulysses_size=2", "data.rollout_batch_size=8",
                       "worker.actor.global_batch_size=4", "worker.actor.micro_batch_size_per_device_for_update=2"])
    validate_config(cfg)  # 4 prompts x 4 rollouts = 16 samples over 4 DP ranks = 4 each, 2 micro-batches
    assert cfg.trainer.n_gpus_per_node == 8


def test_shipped_example_config_loads():
    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(config_file=repo / "examples/config.yaml")
    assert cfg.worker.actor.ulysses_size == 1 and cfg.trainer.n_gpus_per_node == 8
    assert cfg.worker.rollout.num_video_frames == 512
    assert cfg.data.prompt_key == "problem" and cfg.data.video_dir is None


def test_derived_fields_are_computed_once_from_the_keys_that_decide_them():
    cfg = load_config(["data.max_prompt_length=100", "data.max_response_length=20", "worker.rollout.n=3",
                       "worker.actor.global_batch_size=2", "data.rollout_batch_size=4", "algorithm.disable_kl=true",
                       "worker.actor.micro_batch_size_per_device_for_update=2",
                       "algorithm.kl_coef=0.2", "worker.rollout.temperature=0.7", "worker.rollout.seed=5",
                       "worker.rollout.num_chunk_seq=2"])
    rollout, actor = cfg.worker.rollout, cfg.worker.actor
    assert (rollout.response_length, rollout.max_model_len) == (20, 120)
    assert (actor.samples_per_update, actor.temperature, actor.num_chunk_seq, actor.model.lora.seed) == (6, 0.7, 2, 5)
    assert (actor.use_kl_loss, actor.kl_penalty, actor.kl_coef) == (False, cfg.algorithm.kl_penalty, 0.2)
    assert RootConfig().worker.actor.use_kl_loss is True  # built directly, the tree derives the same way


def test_a_derived_key_given_another_value_is_refused_naming_its_source(tmp_path: Path):
    with pytest.raises(ConfigError, match=r"worker.actor.kl_coef=0.5: it is algorithm.kl_coef \(0.01 here\)"):
        load_config(["worker.actor.kl_coef=0.5"])
    saved = tmp_path / "config.yaml"  # a run's saved config.yaml holds the derived values: it loads back
    saved.write_text(OmegaConf.to_yaml(OmegaConf.structured(load_config(["algorithm.kl_coef=0.2"]))))
    assert load_config([], config_file=saved).worker.actor.kl_coef == 0.2
