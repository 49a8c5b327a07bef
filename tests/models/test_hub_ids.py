"""Hub IDs as model paths resolve through a pre-filled Hugging Face cache with no network; a missing one says which ID
and where it looked. Each case runs in a fresh interpreter, since huggingface_hub reads HF_HOME when imported."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _fill_cache(home: Path, repo_id: str, model_dir: Path, repo_type: str = "model") -> Path:
    """Lay ``model_dir`` out as huggingface_hub caches a downloaded snapshot of the ``repo_type`` repository
    ``repo_id``."""
    repo = home / "hub" / f"{repo_type}s--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(model_dir, snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def _run(code: str, home: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    env.pop("HF_HUB_CACHE", None)
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def test_a_hub_id_in_the_cache_resolves_offline_and_the_run_config_points_at_it(tmp_path, tiny_model_dir):
    snapshot = _fill_cache(tmp_path / "hf", "Qwen/Tiny-VL", tiny_model_dir("qwen2_5_vl"))
    result = _run("from longrl.trainer.main import config_from_argv\n"
                  f"cfg = config_from_argv(['quickstart.root={tmp_path / 'quickstart'}', "
                  "'worker.actor.model.model_path=Qwen/Tiny-VL', 'data.train_files=x.jsonl', 'data.val_files=null'])\n"
                  "from longrl.models import adapter_for_model_dir\n"
                  "print(cfg.worker.actor.model.model_path, adapter_for_model_dir(cfg.worker.actor.model.model_path).family)",
                  tmp_path / "hf")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == [str(snapshot), "qwen2_5_vl"]


def test_a_hub_id_missing_offline_names_the_id_and_the_cache(tmp_path):
    result = _run("from longrl.trainer.main import main\n"
                  f"raise SystemExit(main(['quickstart.root={tmp_path / 'quickstart'}', "
                  "'worker.actor.model.model_path=Qwen/Not-Cached', 'data.train_files=x.jsonl', 'data.val_files=null']))",
                  tmp_path / "hf")
    assert result.returncode == 2
    assert ("config error: worker.actor.model.model_path='Qwen/Not-Cached': not a local path, not in the Hugging "
            f"Face cache ({tmp_path / 'hf' / 'hub'}), and the download failed") in result.stderr


def test_a_hub_dataset_id_with_a_split_resolves_offline_and_its_rows_load(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    layout = tmp_path / "math12k"
    (layout / "data").mkdir(parents=True)
    rows = {"problem": ["1+1?", "2+2?"], "answer": ["2", "4"]}
    pq.write_table(pa.table(rows), layout / "data" / "train-00000-of-00001.parquet")
    pq.write_table(pa.table({"problem": ["3+3?"], "answer": ["6"]}), layout / "data" / "test-00000-of-00001.parquet")
    snapshot = _fill_cache(tmp_path / "hf", "hiyouga/math12k", layout, repo_type="dataset")
    result = _run("from longrl.trainer.main import config_from_argv\n"
                  "from longrl.data.rows import read_source\n"
                  f"cfg = config_from_argv(['quickstart.root={tmp_path / 'quickstart'}', "
                  "'data.train_files=hiyouga/math12k@train', 'data.val_files=hiyouga/math12k@test'])\n"
                  "print(cfg.data.train_files, cfg.data.val_files)\n"
                  "print([row['answer'] for row in read_source(cfg.data.train_files)[1]])",
                  tmp_path / "hf")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[-2] == f"{snapshot}@train {snapshot}@test"
    assert lines[-1] == "['2', '4']"


def test_a_missing_data_file_is_not_looked_up_on_the_hub():
    from longrl.models.hub import resolve_dataset_specs

    specs = "data/missing.jsonl, data/other.parquet@train"
    assert resolve_dataset_specs(specs, "data.train_files") == "data/missing.jsonl,data/other.parquet@train"


def test_the_longest_family_word_in_a_hub_id_names_its_family():
    from longrl.models.hub import family_named_in

    words = {"qwen2": "qwen2", "qwen2_5_vl": "qwen2_5_vl", "qwen3": "qwen3", "qwen3_vl": "qwen3_vl", "vila": "vila"}
    assert [family_named_in(name, words) for name in (
        "Qwen/Qwen2.5-VL-7B-Instruct", "Qwen/Qwen3-VL-4B-Instruct", "Qwen/Qwen2.5-7B-Instruct",
        "Efficient-Large-Model/NVILA-Lite-2B", "meta/llama-3")] == ["qwen2_5_vl", "qwen3_vl", "qwen2", "vila", None]
