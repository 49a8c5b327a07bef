"""End to end on the quickstart task: every algorithm trains, resume is exact, reward failures keep checkpoints."""

import json
from pathlib import Path

import pytest
import ray
import torch
from safetensors.torch import load_file

from longrl.config.errors import ConfigError
from longrl.config.loader import load_config
from longrl.data.synthetic import generate_dataset
from longrl.rewards import RewardFunctionError
from longrl.trainer.checkpoint import CheckpointManager
from longrl.trainer.main import run

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]

# Rewards that vary within a group on a random tiny model, so advantages (and DAPO's filter) have work to do:
# whether the response's text has an even number of characters.
PARITY_REWARD = '''
REWARD_TYPE = "sequential"

def compute_score(reward_input):
    even = float(len(reward_input["response"]) % 2 == 0)
    return {"overall": even, "accuracy": even}
'''
FAILING_REWARD = '''
CALLS = []

def compute_score(reward_inputs):
    CALLS.append(len(reward_inputs))
    if len(CALLS) == 3:
        raise ValueError("judge exploded")
    return [{"overall": 0.0, "accuracy": 0.0} for _ in reward_inputs]
'''

# DAPO's refill: the first two batches score every response alike (all groups dropped), later ones by parity, so
# three steps of 2 of the 8 training rows need more than the epoch's 4 batches.
FIRST_BATCHES_FILTERED_REWARD = '''
REWARD_TYPE = "batch"
CALLS = []

def compute_score(reward_inputs):
    CALLS.append(len(reward_inputs))
    even = [float(len(item["response"]) % 2 == 0) for item in reward_inputs]
    return [{"overall": 1.0, "accuracy": 1.0} if len(CALLS) <= 2 else {"overall": e, "accuracy": e} for e in even]
'''
# A reward a random tiny model can climb in a few steps: the share of the response's characters that are lowercase
# ASCII letters (it varies within every group, so no group is filtered out).
LOWERCASE_REWARD = '''
REWARD_TYPE = "sequential"

def compute_score(reward_input):
    text = reward_input["response"]
    share = sum("a" <= char <= "z" for char in text) / max(len(text), 1)
    return {"overall": share, "accuracy": share}
'''
CONSTANT_REWARD = '''
REWARD_TYPE = "batch"

def compute_score(reward_inputs):
    return [{"overall": 1.0, "accuracy": 1.0} for _ in reward_inputs]
'''


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("rl")
    generate_dataset(root / "data", num=10, frames=8, seed=2)
    (root / "parity.py").write_text(PARITY_REWARD)
    (root / "failing.py").write_text(FAILING_REWARD)
    (root / "first_filtered.py").write_text(FIRST_BATCHES_FILTERED_REWARD)
    (root / "constant.py").write_text(CONSTANT_REWARD)
    (root / "lowercase.py").write_text(LOWERCASE_REWARD)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield root, tiny_model_dir("qwen2_5_vl")
    ray.shutdown()


# The reward in a thread of the trainer: a reward process (worker.reward.num_workers=1, the default) would import
# longrl again in every run, seconds of the 2 CPUs. The tests of a failing reward keep the default, so a run's reward
# process is tested here too; tests/trainer/test_rewarding.py checks that processes score as the thread does.
REWARD_IN_THREAD = ("worker.reward.num_workers=0", "worker.reward.timeout_s=null")


def _cfg(root: Path, model_dir: Path, name: str, *extra: str, reward_process: bool = False):
    return load_config([*(() if reward_process else REWARD_IN_THREAD),
        f"data.train_files={root / 'data/train.jsonl'}", "data.val_files=null", "data.video_dir=null",
        f"data.format_prompt={REPO / 'examples/format_prompt/r1v.jinja'}",
        f"worker.actor.model.model_path={model_dir}", "data.rollout_batch_size=2", "worker.actor.global_batch_size=2",
        "worker.rollout.n=4", "worker.actor.micro_batch_size_per_device_for_update=4",
        "worker.rollout.num_video_frames=4", "data.max_response_length=12", "worker.actor.optim.lr=1e-3",
        f"worker.reward.reward_function={root / 'parity.py'}:compute_score",
        f"trainer.save_checkpoint_path={root / name}", f"trainer.experiment_name={name}",
        "trainer.logger=[file]", *extra])


def _metrics(name: str) -> list[dict]:
    path = Path("outputs/logs/longrl") / name / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _deterministic(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(("timing_s/", "perf/"))}


def _check_steps_and_curves(name: str, algorithm: str, count: int) -> list[dict]:
    """The run's per-step metrics: ``count`` steps of finite headline values, each plotted once per step, and the KL
    where the algorithm puts it (REINFORCE in the reward, the others in the loss); returns them."""
    steps = _metrics(name)
    assert [m["step"] for m in steps] == list(range(1, count + 1))
    for m in steps:
        for key in ("critic/score/mean", "actor/pg_loss", "actor/grad_norm", "actor/entropy", "response_length/mean"):
            assert m[key] is not None and abs(m[key]) < 1e6, (key, m)
    curves = json.loads((Path("outputs/logs/longrl") / name / "curves/curves.json").read_text())
    for curve, key in (("reward", "critic/score/mean"), ("accuracy", "critic/accuracy/mean"), ("entropy",
                       "actor/entropy"), ("response_length", "response_length/mean"), ("step_time", "timing_s/step")):
        assert curves[curve]["series"][key] == {"steps": [m["step"] for m in steps],
                                                "values": [m[key] for m in steps]}, curve
    if algorithm == "reinforce":
        assert all("critic/kl" in m for m in steps)
    else:
        assert "critic/kl" not in steps[0]
    return steps


def test_dapo_refills_from_the_next_epoch(setup, monkeypatch, tmp_path, caplog):
    """DAPO's first two batches are all dropped, so its three steps need a batch past the epoch's four: it refills
    from epoch 2 (and says so) instead of ending the run."""
    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("WARNING", logger="longrl.trainer.rl_trainer"):
        run(_cfg(root, model_dir, "algo_dapo", "algorithm=dapo", "trainer.max_steps=3", "trainer.save_freq=-1",
                 "algorithm.overlong_buffer_len=4",
                 f"worker.reward.reward_function={root / 'first_filtered.py'}:compute_score"))
    steps = _check_steps_and_curves("algo_dapo", "dapo", 3)
    refills = [r.getMessage() for r in caplog.records if "refilling" in r.getMessage()]
    assert all(m["filter/kept_ratio"] <= 1.0 for m in steps)
    assert steps[0]["filter/tries"] >= 3 and sum(m["filter/tries"] for m in steps) >= 5
    assert len(refills) == 1 and "online filtering has used up the 1 epoch(s) of trainer.total_epochs; " \
        "refilling from epoch 2" in refills[0]


@pytest.mark.parametrize("algorithm", ["grpo", "dapo", "reinforce"])
def test_each_algorithm_raises_the_training_reward(setup, algorithm, monkeypatch, tmp_path):
    """Twelve steps of 4 prompts x 8 responses on a reward the tiny random model can climb: the mean reward of the
    last four steps clears the first four's by far more than the step-to-step noise (about 0.03 here), and every
    step's headline metrics are finite and plotted. DAPO runs without its overlong penalty: every response here
    reaches the length limit, so the penalty would reward stopping early instead of the task."""
    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    name = f"climb_{algorithm}"
    run(_cfg(root, model_dir, name, f"algorithm={algorithm}", "trainer.max_steps=12", "trainer.total_epochs=20",
             "trainer.save_freq=-1", "algorithm.overlong_buffer_len=0", "worker.actor.optim.lr=1e-2",
             "data.rollout_batch_size=4", "worker.actor.global_batch_size=4", "worker.rollout.n=8",
             "worker.actor.micro_batch_size_per_device_for_update=8",
             f"worker.reward.reward_function={root / 'lowercase.py'}:compute_score"))
    rewards = [m["critic/score/mean"] for m in _check_steps_and_curves(name, algorithm, 12)]
    first, last = sum(rewards[:4]) / 4, sum(rewards[-4:]) / 4
    assert last > first + 0.15, rewards


def test_dapo_names_the_fix_when_no_group_passes_the_filter(setup, monkeypatch, tmp_path):
    """A reward that never varies within a group stops DAPO after one pass over the data (4 batches), saying why."""
    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    dapo = ("algorithm=dapo", "algorithm.overlong_buffer_len=4", "trainer.save_freq=-1")
    with pytest.raises(RuntimeError) as info:
        run(_cfg(root, model_dir, "dapo_constant", *dapo,
                 f"worker.reward.reward_function={root / 'constant.py'}:compute_score"))
    message = str(info.value)
    assert message.startswith("step 1: online filtering kept no group of prompts in 4 batches "
                              "(algorithm.max_try_make_batch=20, 4 batches per epoch)")
    assert "'accuracy' was outside (algorithm.filter_low=0.01, algorithm.filter_high=0.99)" in message
    assert "algorithm.online_filtering=false" in message


def test_dapo_generates_in_rounds_of_mini_rollout_batch_size(setup, monkeypatch, tmp_path):
    """Rounds of one prompt (EasyR1's data.mini_rollout_batch_size=1): a step of 2 prompts needs at least 2 rounds,
    one more for each group the filter drops, and trains on 2 groups of 4 rows."""
    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    run(_cfg(root, model_dir, "dapo_rounds", "algorithm=dapo", "data.mini_rollout_batch_size=1", "trainer.max_steps=2",
             "trainer.save_freq=-1", "algorithm.overlong_buffer_len=4"))
    steps = _metrics("dapo_rounds")
    assert [m["step"] for m in steps] == [1, 2]
    for m in steps:
        # kept_ratio is the mean over rounds of the kept share of each round (0 or 1 with one prompt per round)
        assert m["filter/tries"] >= 2 and m["filter/kept_ratio"] == pytest.approx(2 / m["filter/tries"])


def test_resume_continues_exactly_and_the_merged_model_generates(setup, monkeypatch, tmp_path, capsys):
    """A run resumed at step 2 logs and saves what the straight run does; the straight run's last checkpoint, merged
    into a Hugging Face directory at the end of the run, loads with transformers' Auto classes and generates."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    run(_cfg(root, model_dir, "straight", "trainer.max_steps=4", "trainer.save_freq=2"))
    run(_cfg(root, model_dir, "resumed", "trainer.max_steps=2", "trainer.save_freq=2"))
    with pytest.raises(ConfigError, match=r"refusing to resume .*\n  algorithm\.disable_kl: checkpoint False"):
        run(_cfg(root, model_dir, "resumed", "algorithm=dapo", "algorithm.overlong_buffer_len=4", "trainer.max_steps=4",
                 "trainer.save_freq=2"))
    capsys.readouterr()
    run(_cfg(root, model_dir, "resumed", "trainer.max_steps=4", "trainer.save_freq=2"))  # auto-resumes at step 2
    assert f"resumed from {root / 'resumed/global_step_2'} at step 2\n" in capsys.readouterr().out
    straight, resumed = _metrics("straight"), _metrics("resumed")
    assert [m["step"] for m in resumed] == [1, 2, 3, 4]
    assert [_deterministic(m) for m in straight] == [_deterministic(m) for m in resumed]
    weights = [load_file(str(root / name / "global_step_4/actor/huggingface/model.safetensors"))
               for name in ("straight", "resumed")]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    initial = load_file(str(model_dir / "model.safetensors"))
    assert initial.keys() == weights[0].keys()
    assert any(not torch.equal(initial[k], weights[0][k]) for k in weights[0]), "training changed the weights"
    merged = root / "straight/global_step_4/actor/huggingface"
    model = AutoModelForImageTextToText.from_pretrained(str(merged))
    processor = AutoProcessor.from_pretrained(str(merged))
    ids = processor.tokenizer("<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n", return_tensors="pt")
    out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert out.shape == (1, ids["input_ids"].shape[1] + 3)


def test_raising_reward_fails_the_step_and_keeps_the_checkpoint(setup, monkeypatch, tmp_path):
    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    cfg = _cfg(root, model_dir, "failing", "trainer.max_steps=4", "trainer.save_freq=2",
               f"worker.reward.reward_function={root / 'failing.py'}:compute_score", "worker.reward.reward_type=batch",
               reward_process=True)
    with pytest.raises(RewardFunctionError) as info:
        run(cfg)
    message = str(info.value)
    assert "failing.py:compute_score" in message and "judge exploded" in str(info.value.__cause__)
    assert "batch of 8" in message
    checkpoints = CheckpointManager(root / "failing")
    assert checkpoints.committed_steps() == [2] and checkpoints.latest_step() == 2
    step_dir = root / "failing/global_step_2"
    assert (step_dir / "actor/model").is_dir() and (step_dir / "actor/optim").is_dir()
    assert "experiment_name: failing" in (step_dir / "config.yaml").read_text()
    assert {p.name for p in step_dir.iterdir()} >= {"trainer_state.json", "rng.pt", "dataloader.pt", "config.yaml"}


def test_raising_reward_skips_the_step_when_configured(setup, monkeypatch, tmp_path):
    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    (root / "failing2.py").write_text(FAILING_REWARD)
    # the same rows plus three the build drops under data.on_bad_row=skip: they count in data/skipped_rows
    lines = (root / "data/train.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    bad = [{**first, "video": "videos/missing.mp4"}, {k: v for k, v in first.items() if k != "video"},
           {**first, "video": [first["video"]] * 2}]
    (root / "data/with_bad.jsonl").write_text("\n".join(lines + [json.dumps(row) for row in bad]) + "\n")
    cfg = _cfg(root, model_dir, "skipping", "trainer.max_steps=4", "trainer.save_freq=-1",
               f"worker.reward.reward_function={root / 'failing2.py'}:compute_score", "worker.reward.reward_type=batch",
               "worker.reward.on_error=skip_step", "data.on_bad_row=skip", reward_process=True)
    cfg.data.train_files = str(root / "data/with_bad.jsonl")
    run(cfg)
    steps = _metrics("skipping")
    assert [m["step"] for m in steps] == [1, 2, 3, 4]
    assert steps[2] == {"step": 3, "reward/failed_step": 1.0}
    assert "actor/pg_loss" in steps[3]
    assert [m["data/skipped_rows"] for m in steps if m["step"] != 3] == [3.0, 3.0, 3.0]


_FIRST_STEPS: dict[tuple, dict] = {}


def _first_step(root: Path, model_dir: Path, name: str, *extra: str) -> dict:
    """The metrics of the first step of a run with the ``extra`` overrides. Each configuration runs once per session:
    tests that compare a variant with the same single-rank, unshared step reuse that step's metrics."""
    key = (root, model_dir, tuple(sorted(extra)))
    if key not in _FIRST_STEPS:
        run(_cfg(root, model_dir, name, "trainer.max_steps=1", "trainer.save_freq=-1", *extra))
        _FIRST_STEPS[key] = _metrics(name)[0]
    return _FIRST_STEPS[key]


@pytest.mark.parametrize("freeze", [True, False])
def test_ulysses_2_on_2_ranks_matches_sp_1(setup, monkeypatch, tmp_path, freeze):
    """GRPO's first step with MR-SP over 2 CPU ranks (one data-parallel group) equals the single-rank step.

    Frozen tower: the vision tower runs once per step on each rank (stage 1 at rollout), each rank encoding half of
    the step's temporal slices; nothing re-encodes afterwards. Trained tower: the update re-encodes under the same
    sharding, with gradients.
    """
    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    # Update micro-batches of 2 rows when the tower is trained (so the update re-encodes once per micro-batch, counted
    # below); the frozen case's micro-batches are the shared-prefix test's, whose single-rank step is the same run.
    micro = ("worker.actor.micro_batch_size_per_device_for_update=2",) if not freeze else (
        "worker.actor.micro_batch_size_per_device_for_update=4",
        "worker.actor.micro_batch_size_per_device_for_experience=4")
    common = (f"worker.actor.model.freeze_vision_tower={str(freeze).lower()}", "algorithm.use_kl_loss=true", *micro)
    single = _first_step(root, model_dir, f"sp1_{freeze}", *common)
    sharded = _first_step(root, model_dir, f"sp2_{freeze}", "worker.actor.ulysses_size=2",
                          "trainer.n_gpus_per_node=2", *common)
    compared = [k for k in _deterministic(single) if not k.startswith("mrsp/")]
    assert {"actor/pg_loss", "actor/kl_loss", "actor/grad_norm", "actor/entropy", "critic/score/mean"} <= set(compared)
    for key in compared:
        assert sharded[key] == pytest.approx(single[key], rel=1e-4, abs=1e-5), key
    # 2 prompts x 4 frames = 2 x 2 temporal slices per encoding of the step's prompts; rank 0 reports its half.
    # Rows of one prompt (same uid) share one encoding, in the update's micro-batches too.
    assert sharded["mrsp/encoded_slices"] * 2 == single["mrsp/encoded_slices"]
    if freeze:
        assert single["mrsp/encoded_slices"] == 4
        assert single["mrsp/vision_tower_calls"] == 1 and sharded["mrsp/vision_tower_calls"] == 1
    else:  # + the reference's own pass (4 slices) + one per update micro-batch (4 of 2 rows, 2 slices each)
        assert single["mrsp/encoded_slices"] == 4 + 4 + 8
        assert single["mrsp/vision_tower_calls"] == 1 + 1 + 4 and sharded["mrsp/vision_tower_calls"] == 1 + 1 + 4


def test_shared_prefix_step_matches_the_unshared_step(setup, monkeypatch, tmp_path):
    """GRPO's first step with each prompt scored once for its n responses (old/ref log-probs and the update) equals
    the step that scores n full rows: every logged metric but the timings, KL loss on so the reference is used too."""
    root, model_dir = setup
    monkeypatch.chdir(tmp_path)
    # the frozen tower spelt out, as the MR-SP test's frozen case spells it: the two share this unshared step
    common = ("worker.actor.model.freeze_vision_tower=true", "algorithm.use_kl_loss=true",
              "worker.actor.micro_batch_size_per_device_for_update=4",
              "worker.actor.micro_batch_size_per_device_for_experience=4")
    unshared = _first_step(root, model_dir, "unshared", *common)
    shared = _first_step(root, model_dir, "shared", "worker.actor.shared_prefix=true", *common)
    compared = list(_deterministic(unshared))
    assert {"actor/pg_loss", "actor/kl_loss", "actor/grad_norm", "actor/entropy"} <= set(compared)
    assert list(_deterministic(shared)) == compared
    for key in compared:
        assert shared[key] == pytest.approx(unshared[key], rel=1e-4, abs=1e-5), key
