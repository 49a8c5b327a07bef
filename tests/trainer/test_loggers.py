"""The tracker fan-out: console lines, JSONL files, and the optional trackers' imports and calls."""

from __future__ import annotations

import json
import sys
import types

import pytest
import torch

from longrl.trainer.loggers import Generation, Tracker, plain_config

GENERATIONS = [Generation("what moved?", "<answer>A</answer>", "A", 1.0),
               Generation("how many?", "3", "4", 0.0)]


def test_file_backend_writes_one_object_per_step(tmp_path):
    tracker = Tracker(["file"], "proj", "exp", {}, tmp_path)
    tracker.log({"loss": torch.tensor(0.5), "n": 3}, step=1)
    tracker.log({"loss": float("nan")}, step=2)
    tracker.log_generations(GENERATIONS, step=2)
    tracker.close()
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{"step": 1, "loss": 0.5, "n": 3.0}, {"step": 2, "loss": None}]
    rows = [json.loads(line) for line in (tmp_path / "generations.jsonl").read_text().splitlines()]
    assert rows == [
        {"step": 2, "input": "what moved?", "output": "<answer>A</answer>", "ground_truth": "A", "score": 1.0},
        {"step": 2, "input": "how many?", "output": "3", "ground_truth": "4", "score": 0.0},
    ]
    resumed = Tracker(["file"], "proj", "exp", {}, tmp_path)  # a resumed run appends
    resumed.log({"loss": 0.25}, step=3)
    resumed.close()
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1]) == {"step": 3, "loss": 0.25}


def test_console_backend_prints_the_progress_line_not_every_metric(tmp_path, capsys):
    tracker = Tracker(["console"], "proj", "exp", {}, tmp_path, total_steps=10)
    tracker.log({"critic/score/mean": 0.5, "critic/accuracy/mean": 0.25, "response_length/mean": 11.25,
                 "actor/entropy": 2.0, "actor/pg_loss": 0.1, "timing_s/step": 0.25, "timing_s/gen": 0.125}, step=7)
    assert capsys.readouterr().out == ("step 7/10 | elapsed 0:00:00 | eta 0:00:01 | reward 0.500 acc 0.250 len 11.2 "
                                       "entropy 2.000 | 0.2 s/step\n")
    tracker.log_generations(GENERATIONS[:1], step=7)
    assert "[output] <answer>A</answer>" in capsys.readouterr().out
    assert not any(tmp_path.iterdir())


def test_config_becomes_plain_dicts():
    from omegaconf import OmegaConf

    from longrl.config.schema import RootConfig, TrainerConfig

    assert plain_config(TrainerConfig(project_name="p"))["project_name"] == "p"
    assert plain_config(RootConfig())["data"]["seed"] == 1
    assert plain_config(OmegaConf.create({"a": {"b": 2}})) == {"a": {"b": 2}}
    assert plain_config({"lr": 0.1}) == {"lr": 0.1}


def test_unknown_backend_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"unknown backend\(s\) \['mlflow'\]"):
        Tracker(["file", "mlflow"], "p", "e", {}, tmp_path)


@pytest.mark.parametrize("backend, module, extra", [
    ("wandb", "wandb", "wandb"),
    ("swanlab", "swanlab", "swanlab"),
    ("tensorboard", "torch.utils.tensorboard", "tensorboard"),
])
def test_missing_tracker_names_the_extra(tmp_path, monkeypatch, backend, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes the import fail as if not installed
    with pytest.raises(ImportError, match=rf"pip install 'longrl\[{extra}\]'"):
        Tracker(["file", backend], "p", "e", {}, tmp_path)


class _Recorder(types.ModuleType):
    """A stand-in tracker package that records what it is called with."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.calls: list[tuple] = []


def test_wandb_backend_calls(tmp_path, monkeypatch):
    fake = _Recorder("wandb")

    class Run:
        def log(self, data, step):
            fake.calls.append(("log", data, step))

        def finish(self):
            fake.calls.append(("finish",))

    def init(**kwargs):
        fake.calls.append(("init", kwargs))
        return Run()

    fake.init = init
    fake.Table = lambda columns, data: ("table", columns, data)
    monkeypatch.setitem(sys.modules, "wandb", fake)
    tracker = Tracker(["wandb"], "proj", "exp", {"lr": 1e-6}, tmp_path)
    tracker.log({"loss": 1.0}, step=1)
    tracker.log_generations(GENERATIONS[:1], step=1)
    tracker.log_generations(GENERATIONS[1:], step=2)
    tracker.close()
    columns = ["step", "input", "output", "ground_truth", "score"]
    assert fake.calls == [
        ("init", {"project": "proj", "name": "exp", "config": {"lr": 1e-6}, "dir": str(tmp_path)}),
        ("log", {"loss": 1.0}, 1),
        ("log", {"val/generations": ("table", columns, [[1, "what moved?", "<answer>A</answer>", "A", 1.0]])}, 1),
        ("log", {"val/generations": ("table", columns, [[1, "what moved?", "<answer>A</answer>", "A", 1.0],
                                                         [2, "how many?", "3", "4", 0.0]])}, 2),
        ("finish",),
    ]


def test_swanlab_backend_calls(tmp_path, monkeypatch):
    fake = _Recorder("swanlab")
    fake.init = lambda **kwargs: fake.calls.append(("init", kwargs))
    fake.log = lambda data, step: fake.calls.append(("log", data, step))
    fake.finish = lambda: fake.calls.append(("finish",))
    fake.Text = lambda text, caption: (text, caption)
    monkeypatch.setitem(sys.modules, "swanlab", fake)
    tracker = Tracker(["swanlab"], "proj", "exp", {"lr": 1e-6}, tmp_path)
    tracker.log({"loss": 2.0}, step=4)
    tracker.log_generations(GENERATIONS[1:], step=4)
    tracker.close()
    assert fake.calls == [
        ("init", {"project": "proj", "experiment_name": "exp", "config": {"lr": 1e-6},
                  "logdir": str(tmp_path / "swanlog")}),
        ("log", {"loss": 2.0}, 4),
        ("log", {"val/generations": [("how many?\n\n3", "ground truth 4, score 0")]}, 4),
        ("finish",),
    ]


def test_tensorboard_backend_calls(tmp_path, monkeypatch):
    fake = _Recorder("torch.utils.tensorboard")

    class SummaryWriter:
        def __init__(self, log_dir):
            fake.calls.append(("init", log_dir))

        def add_scalar(self, key, value, step):
            fake.calls.append(("scalar", key, value, step))

        def add_text(self, key, text, step):
            fake.calls.append(("text", key, text.splitlines()[-1], step))

        def close(self):
            fake.calls.append(("close",))

    fake.SummaryWriter = SummaryWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    tracker = Tracker(["tensorboard"], "p", "e", {}, tmp_path)
    tracker.log({"loss": 3.0}, step=2)
    tracker.log_generations(GENERATIONS[1:], step=2)
    tracker.close()
    assert fake.calls == [("init", str(tmp_path / "tensorboard")), ("scalar", "loss", 3.0, 2),
                          ("text", "val/generations", "| how many? | 3 | 4 | 0 |", 2), ("close",)]
