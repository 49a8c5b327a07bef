"""The Flow-GRPO configuration: EasyR1 keys over configs/flow.yaml, a misspelt key named with the valid ones, and the
cross-field rules stated with the values that broke them."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from longrl.config.describe import field_notes
from longrl.config.errors import ConfigError
from longrl.config.loader import load_config
from longrl.flow.config import FlowRootConfig
from longrl.flow.main import main
from longrl.flow.validate import FLOW_SCHEMA

REQUIRED = ["data.train_files=prompts.jsonl", "worker.actor.model.model_path=/models/sd3"]


def _load(*overrides: str) -> FlowRootConfig:
    return load_config([*REQUIRED, *overrides], config_name="flow", schema=FLOW_SCHEMA)


def test_defaults_and_easyr1_keys():
    cfg = _load("worker.actor.optim.lr=3e-4", "worker.rollout.n=4", "algorithm.kl_coef=0.01", "trainer.max_steps=7",
                "+worker.reward.reward_function_kwargs.target=[0.0,1.0,0.0]")
    assert isinstance(cfg, FlowRootConfig)
    assert cfg.worker.actor.optim.lr == 3e-4 and cfg.worker.rollout.n == 4 and cfg.algorithm.kl_coef == 0.01
    assert cfg.trainer.max_steps == 7 and cfg.trainer.project_name == "longrl_flow"
    assert cfg.worker.reward.reward_function == "longrl.flow.rewards:composition"
    assert cfg.worker.reward.reward_function_kwargs == {"target": [0.0, 1.0, 0.0]}
    assert cfg.worker.actor.lora.rank == 0 and cfg.worker.rollout.guidance_scale == 1.0


@pytest.mark.parametrize("override, message", [
    ("worker.rollout.num_step=4",
     r"unknown config key 'worker.rollout.num_step'.*Did you mean 'worker.rollout.num_steps'"),
    ("worker.rollout.n=1", r"worker.rollout.n \(1\) must be >= 2"),
    ("worker.actor.global_batch_size=3", r"data.rollout_batch_size \(8\) must be a positive multiple of"),
    ("worker.actor.micro_batch_size_per_device_for_update=5", r"the 64 samples per rank .* \(5\)"),
    ("worker.actor.timestep_fraction=0", r"timestep_fraction \(0.0\) must be in \(0, 1\]"),
    ("worker.rollout.eta=0", r"eta > 0 \(the SDE's noise"),
    ("worker.reward.reward_type=batched", r"worker.reward.reward_type='batched' is not one of"),
    ("trainer.save_limit=0", r"trainer.save_limit=0: allowed -1 \(off\) or >= 1"),
    ("trainer.resume_mismatch=ignore", r"trainer.resume_mismatch='ignore' is not one of \['allow', 'error'\]"),
])
def test_mistakes_are_named(override, message):
    with pytest.raises(ConfigError, match=message):
        _load(override)


def test_the_entry_point_reports_a_config_error(capsys):
    assert main([*REQUIRED, "worker.rollout.n=1"]) == 2
    assert "config error: worker.rollout.n (1) must be >= 2" in capsys.readouterr().err


def test_every_key_and_section_of_the_flow_stage_has_a_one_line_note():
    """``--help`` prints the comment above each field as its key's note."""
    def keys(node: dict, prefix: str = "") -> list[str]:
        return [key for name, child in node.items() for key in [f"{prefix}{name}", *(
            keys(child, f"{prefix}{name}.") if isinstance(child, dict) else [])]]

    every = keys(OmegaConf.to_container(OmegaConf.structured(FlowRootConfig)))
    notes = field_notes(FlowRootConfig)  # read once: each read parses the schema's source
    assert len(every) > 90 and "worker.rollout.num_steps" in every and "worker.actor.lora" in every
    assert [key for key in every if key not in notes] == []


def test_without_the_flow_extra_the_package_names_the_install():
    """diffusers comes with the optional extra: importing Flow-GRPO without it says how to get it (an entry of None in
    sys.modules is how Python marks a module as not importable)."""
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['diffusers'] = None; import longrl.flow.main"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "ModuleNotFoundError: Flow-GRPO needs diffusers, an optional dependency: pip install 'longrl[flow]'")


# The keys of Long-RL's diffusion config files (written here with their key names and shapes, not copied) as the
# video recipe sets them.
LONG_RL_DIFFUSION_CONFIG = """\
data:
  train_files: prompts.jsonl
  prompt_key: text
  answer_key: answer
  image_key: images
  image_dir: null
  max_prompt_length: 2048
  mini_rollout_batch_size: null
  format_prompt: ./examples/format_prompt/math.jinja
  filter_overlong_prompts: false
  diffusion: true
algorithm:
  adv_estimator: grpo
  disable_kl: false
  kl_penalty: flow_grpo
  kl_coef: 1.0e-2
  online_filtering: false
  filter_key: overall
worker:
  actor:
    global_batch_size: 1
    micro_batch_size_per_device_for_update: 1
    micro_batch_size_per_device_for_experience: 1
    padding_free: true
    ulysses_size: 1
    diffusion: true
    loss_avg_mode: seq
    guidance_scale: 4.5
    model:
      model_path: /models/wan
      trust_remote_code: false
    fsdp:
      use_orig_params: true
  rollout:
    n: 2
    temperature: 1.0
    tensor_parallel_size: 1
    val_override_config:
      temperature: 0.5
      n: 1
    diffusion: true
    guidance_scale: 4.5
    resolution: 256
    num_steps: 4
    num_frames: 17
    kl_reward: 0.0
  ref:
    diffusion: true
    scheduler: Wan-AI/Wan2.1-T2V-1.3B-Diffusers
  reward:
    reward_type: batch
    reward_function: ./examples/reward_function/diffusion.py:compute_score
trainer:
  max_try_make_batch: 20
  save_model_only: false
  diffusion: true
"""


def test_a_long_rl_diffusion_config_composes_with_each_key_accounted_for(tmp_path, caplog):
    config = tmp_path / "config_video_diffusion.yaml"
    config.write_text(LONG_RL_DIFFUSION_CONFIG)
    with caplog.at_level("WARNING", logger="longrl.config"):
        cfg = load_config(["data.rollout_batch_size=1"], config_file=config, config_name="flow", schema=FLOW_SCHEMA)
    rollout = cfg.worker.rollout
    assert (rollout.height, rollout.width, rollout.num_frames, rollout.n, rollout.guidance_scale) == (256, 256, 17, 2,
                                                                                                      4.5)
    assert cfg.worker.reward.reward_function == "./examples/reward_function/diffusion.py:compute_score"
    assert cfg.data.prompt_key == "text" and cfg.algorithm.kl_coef == 0.01
    assert "worker.rollout.resolution is longrl's worker.rollout.height, worker.rollout.width" in caplog.text
    assert "worker.rollout.val_override_config.temperature=0.5 is not needed: validation samples the deterministic" \
        in caplog.text
    assert "worker.actor.fsdp.use_orig_params=true is not needed" in caplog.text


def test_long_rl_diffusion_settings_with_an_effect_longrl_lacks_are_refused_together(tmp_path):
    with pytest.raises(ConfigError) as error:
        _load("algorithm.disable_kl=true", "worker.actor.ulysses_size=2", "algorithm.online_filtering=true")
    message = str(error.value)
    assert "algorithm.disable_kl=true: set algorithm.kl_coef=0 to train without the KL term" in message
    assert "worker.actor.ulysses_size=2: sequence parallelism is not implemented for Flow-GRPO" in message
    assert "algorithm.online_filtering=true: DAPO's group filter is not implemented for Flow-GRPO" in message
