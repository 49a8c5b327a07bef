"""Checkpoint files are loaded without unpickling code: a crafted file is refused and its payload never runs."""

from __future__ import annotations

import errno
import pickle
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

from longrl.plain_pt import UnsafeFileError, load_dcp_metadata, load_plain, save_plain
from longrl.trainer.checkpoint import load_trainer_state, save_trainer_state
from longrl.trainer.merge import checkpoint_tensor_dtypes


class _WritesMarker:
    """Unpickling this calls ``Path.touch`` on the marker: what an attacker's ``__reduce__`` would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_crafted_extra_pt_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"lr_scheduler": _WritesMarker(marker)}, tmp_path / "extra.pt")
    with pytest.raises(UnsafeFileError, match=r"refusing to load .*extra\.pt.*arbitrary code"):
        load_plain(tmp_path / "extra.pt")
    assert not marker.exists()


def test_scheduler_state_loads(tmp_path):
    """What the actor writes to extra.pt (a LambdaLR state over a closure) passes the restricted loader."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (step + 1))
    optimizer.step()
    scheduler.step()
    torch.save({"lr_scheduler": scheduler.state_dict()}, tmp_path / "extra.pt")
    assert load_plain(tmp_path / "extra.pt")["lr_scheduler"] == scheduler.state_dict()


def test_crafted_rng_pt_is_refused_on_resume(tmp_path):
    save_trainer_state(tmp_path, {"global_step": 1}, {"epoch": 0})
    marker = tmp_path / "pwned"
    torch.save({"python": _WritesMarker(marker)}, tmp_path / "rng.pt")
    with pytest.raises(UnsafeFileError, match=r"rng\.pt"):
        load_trainer_state(tmp_path)
    assert not marker.exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_full_device_raises_enospc_naming_the_file():
    """torch's own writer says ``unexpected pos``; save_plain surfaces the OS error with the path."""
    with pytest.raises(OSError) as info:
        save_plain({"x": torch.zeros(1000)}, "/dev/full")
    assert info.value.errno == errno.ENOSPC and info.value.filename == "/dev/full"
    assert "No space left on device" in str(info.value)


def test_dcp_metadata_of_real_model_and_optimizer_checkpoints_loads(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*assuming the intent is to (save|load) in a single process")
        dcp.save(get_model_state_dict(model), checkpoint_id=str(tmp_path / "model"), no_dist=True)
        dcp.save(get_optimizer_state_dict(model, optimizer), checkpoint_id=str(tmp_path / "optim"), no_dist=True)
    assert set(load_dcp_metadata(tmp_path / "model").state_dict_metadata) == {"weight", "bias"}
    assert checkpoint_tensor_dtypes(tmp_path / "model") == {"weight": torch.float32, "bias": torch.float32}
    assert "state.weight.exp_avg" in load_dcp_metadata(tmp_path / "optim").state_dict_metadata


def test_crafted_dcp_metadata_is_refused_before_dcp_unpickles_it(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / ".metadata").write_bytes(pickle.dumps(_WritesMarker(marker)))
    with pytest.raises(UnsafeFileError, match=r"refusing to load .*model/\.metadata: it names Python objects") as info:
        checkpoint_tensor_dtypes(tmp_path / "model")  # the merger's first read
    assert "global 'pathlib.Path.touch'" in str(info.value) and not marker.exists()
