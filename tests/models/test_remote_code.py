"""A model directory's own Python runs only with trust_remote_code, and is logged when it does (any family)."""

from __future__ import annotations

import json
import logging
import multiprocessing
import shutil
import uuid

import pytest
import torch
from transformers import Qwen2ForCausalLM

from longrl.models import get_adapter
from longrl.models.remote_code import remote_code_files


@pytest.fixture
def qwen2_with_code(tiny_model_dir, tmp_path):
    """The tiny Qwen2 directory plus a module that config.json's auto_map names; importing it writes a marker."""
    model_dir = tmp_path / f"qwen2_code_{uuid.uuid4().hex[:8]}"  # transformers caches a directory's modules by name
    marker = tmp_path / "remote_code_ran"
    shutil.copytree(tiny_model_dir("qwen2"), model_dir)
    (model_dir / "modeling_custom.py").write_text(
        "from pathlib import Path\nfrom transformers import Qwen2ForCausalLM\n\n\n"
        "class CustomModel(Qwen2ForCausalLM):\n    pass\n\n\n"
        f"Path({str(marker)!r}).touch()\n")
    config = json.loads((model_dir / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_custom.CustomModel", "AutoTokenizer": ["hub--x.Y", None]}
    (model_dir / "config.json").write_text(json.dumps(config))
    return model_dir, marker


def test_untrusted_directory_loads_with_transformers_classes_and_runs_nothing(qwen2_with_code, caplog):
    model_dir, marker = qwen2_with_code
    with caplog.at_level(logging.WARNING, logger="longrl.models.remote_code"):
        model = get_adapter("qwen2").load_model(model_dir)
        with torch.device("meta"):  # what ranks > 0 build under enable_rank0_init
            empty = get_adapter("qwen2").build_empty_model(model_dir, torch.float32)
    assert type(model) is Qwen2ForCausalLM and type(empty) is Qwen2ForCausalLM
    assert not marker.exists() and caplog.text == ""


def _load_trusted(model_dir, results) -> None:
    """Child process: transformers registers a trusted class process-wide, which must not leak into other tests."""
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("longrl.models.remote_code").addHandler(handler)
    model = get_adapter("qwen2").load_model(model_dir, trust_remote_code=True)
    with torch.device("meta"):  # the model built without weights is the same class
        empty = get_adapter("qwen2").build_empty_model(model_dir, torch.float32, trust_remote_code=True)
    results.put(((type(model).__name__, type(empty).__name__), records))


def test_trusted_directory_runs_its_code_and_says_which(qwen2_with_code):
    model_dir, marker = qwen2_with_code
    assert remote_code_files(model_dir) == [model_dir / "modeling_custom.py"]  # the hub reference is not a local file
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_load_trusted, args=(model_dir, results))
    child.start()
    class_names, records = results.get(timeout=120)
    child.join(60)
    assert class_names == ("CustomModel", "CustomModel") and marker.exists()
    assert records == [f"worker.actor.model.trust_remote_code=true: running the Python code of {model_dir} "
                       "(modeling_custom.py)"] * 2
