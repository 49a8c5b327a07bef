"""GRPO on the quickstart task with ``worker.rollout.name=vllm``: the hybrid worker's vLLM engine end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here; `make test` runs these in .venv-vllm")

from longrl.trainer.main import main  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
VLLM = ["worker.rollout.name=vllm", "worker.rollout.enforce_eager=true", "trainer.logger=[file]",
        f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}"]
# Rewards that vary within a group on a random tiny model (even text length), so the update really moves weights.
PARITY_REWARD = '''
REWARD_TYPE = "sequential"

def compute_score(reward_input):
    even = float(len(reward_input["response"]) % 2 == 0)
    return {"overall": even, "accuracy": even}
'''


def _steps(tmp_path: Path, experiment: str) -> list[dict]:
    lines = (tmp_path / f"outputs/logs/longrl/{experiment}/metrics.jsonl").read_text().splitlines()
    return [record for record in map(json.loads, lines) if "actor/pg_loss" in record]


def test_quickstart_task_runs_3_steps_and_updates_reach_the_engine(tmp_path: Path, monkeypatch, capsys):
    """The quickstart task (validated before and after, checkpointed) for 3 steps, with a reward that varies within
    groups and lr 1e-3 so that every update changes the weights: each step trains, and the rollouts of every step,
    those after an update included, come from exactly the actor's weights (probabilities within 1e-3): the engine
    samples from the actor's weights and each sync landed."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "parity.py").write_text(PARITY_REWARD)
    parity = f"worker.reward.reward_function={tmp_path / 'parity.py'}:compute_score"
    assert main([f"quickstart.root={tmp_path / 'quickstart'}", *VLLM, "trainer.max_steps=3",
                 "worker.actor.optim.lr=1e-3", parity]) == 0
    steps = _steps(tmp_path, "quickstart_qwen2_5_vl")
    assert [record["step"] for record in steps] == [1, 2, 3]
    for record in steps:
        assert math.isfinite(record["actor/pg_loss"]) and record["response_length/mean"] > 0
        assert record["actor/grad_norm"] > 0
        assert record["training/rollout_probs_diff/max"] < 1e-3, record
    assert "checkpoint: checkpoints/longrl/quickstart_qwen2_5_vl/global_step_3" in capsys.readouterr().out


def test_two_ranks_in_one_sequence_parallel_group(tmp_path: Path, monkeypatch):
    """Each rank's engine joins the worker's existing 2-rank process group; both generate the group's share."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "parity.py").write_text(PARITY_REWARD)
    assert main([f"quickstart.root={tmp_path / 'quickstart'}", *VLLM, "trainer.max_steps=2", "trainer.experiment_name=sp2",
                 "trainer.n_gpus_per_node=2", "worker.actor.ulysses_size=2", "worker.actor.optim.lr=1e-3",
                 f"worker.reward.reward_function={tmp_path / 'parity.py'}:compute_score",
                 "trainer.val_before_train=false", "trainer.val_freq=-1", "trainer.save_freq=-1"]) == 0
    steps = _steps(tmp_path, "sp2")
    assert [record["step"] for record in steps] == [1, 2]
    for record in steps:
        assert record["actor/grad_norm"] > 0 and record["training/rollout_probs_diff/max"] < 1e-3, record
