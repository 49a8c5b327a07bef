"""The command line as EasyR1 / Long-RL users write it: --help and --cfg job on every entry point, every unknown key
in one error, dict values as JSON, non-ASCII paths, disable_kl over the default KL loss."""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from longrl.config.describe import field_notes
from longrl.config.errors import ConfigError
from longrl.config.loader import load_config
from longrl.config.schema import RootConfig
from longrl.sft.main import main as sft_main
from longrl.flow.main import main as flow_main
from longrl.trainer.main import main as rl_main
from longrl.sft.pipeline import main as pipeline_main
from longrl.workers.hybrid import needs_reference

ENTRY_POINTS = {"rl": rl_main, "sft": sft_main, "flow": flow_main, "pipeline": pipeline_main}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_help_lists_every_key_with_its_default_one_line_each(entry, capsys):
    assert ENTRY_POINTS[entry](["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("``python -m longrl.")
    lines = out.splitlines()
    assert "worker.rollout.n=" in out
    key_lines = [line for line in lines if line.startswith("  ") and "=" in line]
    assert len(key_lines) > 40
    if entry != "flow":
        assert any(line.startswith('  data.on_bad_row=error  # "error" stops at the first unreadable row')
                   for line in lines)
        assert "  worker.actor.model.use_hub_kernels=false  # transformers' kernels fetched from the Hugging Face hub" \
               " on CUDA (needs internet); off by default" in lines
        assert "  worker.actor.kl_coef (derived)  # algorithm.kl_coef: the KL loss's weight" in lines


def test_every_field_of_the_text_stages_has_a_one_line_note():
    def fields(schema: type, prefix: str = "") -> list[str]:
        hints = typing.get_type_hints(schema)
        return [key for field in dataclasses.fields(schema) for key in (
            [f"{prefix}{field.name}", *fields(hints[field.name], f"{prefix}{field.name}.")]
            if dataclasses.is_dataclass(hints[field.name]) else [f"{prefix}{field.name}"])]

    keys, notes = fields(RootConfig), field_notes(RootConfig)  # the notes read once: each read parses the source
    assert len(keys) > 150 and "algorithm.kl_horizon" in keys
    assert [key for key in keys if key not in notes] == []


def test_cfg_job_prints_the_composed_configuration_with_the_overrides(capsys):
    assert rl_main(["--cfg", "job", "algorithm=dapo", "worker.rollout.n=3",
                    'worker.rollout.val_override_config={"n":16,"temperature":0.6}']) == 0
    tree = yaml.safe_load(capsys.readouterr().out)
    assert tree["algorithm"]["adv_estimator"] == "grpo" and tree["algorithm"]["online_filtering"] is True
    assert tree["worker"]["rollout"]["n"] == 3
    assert tree["worker"]["rollout"]["val_override_config"] == {"n": 16, "temperature": 0.6}
    assert tree["data"]["train_files"] == "${quickstart.root}/data/train.jsonl"


def test_cfg_job_resolves_on_request_and_reports_config_errors(capsys):
    assert rl_main(["--cfg", "job", "--resolve", "quickstart.root=/r"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["data"]["train_files"] == "/r/data/train.jsonl"
    assert rl_main(["--cfg", "job", "data.imgae_key=x"]) == 2
    assert "unknown config key 'data.imgae_key'" in capsys.readouterr().err


def test_pipeline_cfg_job_prints_both_stages(capsys):
    assert pipeline_main(["--cfg", "job", "worker.rollout.n=3", "--rl", "trainer.max_steps=7"]) == 0
    sft, rl = capsys.readouterr().out.split("# rl stage\n")
    assert sft.startswith("# sft stage\n")
    sft, rl = yaml.safe_load(sft.split("\n", 1)[1]), yaml.safe_load(rl)
    assert sft["trainer"]["max_steps"] == 260 and sft["data"]["train_files"].endswith("/data/train_annotated.jsonl")
    # the stage defaults sit under every override: the shared n=3 beats the RL stage's n=8, --rl beats both
    assert rl["trainer"]["max_steps"] == 7 and rl["worker"]["rollout"]["n"] == 3
    assert rl["worker"]["actor"]["optim"]["lr"] == 1e-4 and rl["data"]["train_files"].endswith("/data/train.jsonl")


def test_every_unknown_key_is_reported_at_once_with_its_closest_valid_key(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("data:\n  imgae_key: images\n")
    with pytest.raises(ConfigError) as error:
        load_config(["worker.rollout.temprature=0.5", "trainer.total_epoch=2", "worker.actor.global_batch_size=4"],
                    config_file=config)
    message = str(error.value)
    assert message.startswith("3 unknown config keys:\n")
    assert f"unknown config key 'data.imgae_key' (from {config})" in message
    assert "Did you mean 'data.image_key'?" in message
    assert "Did you mean 'worker.rollout.temperature'?" in message
    assert "Did you mean 'trainer.total_epochs'?" in message


@pytest.mark.parametrize("value", ['{"max_response_length":4096,"overlong_penalty_factor":1.0}',
                                   "{max_response_length:4096,overlong_penalty_factor:1.0}"])
def test_dict_values_in_the_forms_upstream_scripts_write(value):
    cfg = load_config([f"worker.reward.reward_function_kwargs={value}",
                       'worker.rollout.val_override_config={"n":16,"temperature":1.0,"top_p":0.7}',
                       "trainer.logger=['console','file']"])
    assert cfg.worker.reward.reward_function_kwargs == {"max_response_length": 4096, "overlong_penalty_factor": 1.0}
    assert cfg.worker.rollout.val_override_config == {"n": 16, "temperature": 1.0, "top_p": 0.7}
    assert cfg.trainer.logger == ["console", "file"]


def test_non_ascii_paths_are_taken_as_strings(tmp_path):
    cfg = load_config(["data.train_files=/data/视频/train.jsonl", "data.video_dir=/données/vidéos"])
    assert cfg.data.train_files == "/data/视频/train.jsonl" and cfg.data.video_dir == "/données/vidéos"


def test_disable_kl_turns_the_default_kl_loss_off_as_in_easyr1():
    cfg = load_config(["algorithm.disable_kl=True"])
    assert cfg.algorithm.use_kl_loss is True and not needs_reference(cfg)
