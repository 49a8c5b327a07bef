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


def _fill_cache(home: Path, repo_id: str, model_dir: Path) -> Path:
    """Lay ``model_dir`` out as huggingface_hub caches a downloaded snapshot of ``repo_id``."""
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
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
                  f"cfg = config_from_argv(['embedded.root={tmp_path / 'embedded'}', "
                  "'worker.actor.model.model_path=Qwen/Tiny-VL', 'data.train_files=x.jsonl', 'data.val_files=null'])\n"
                  "from longrl.models import adapter_for_model_dir\n"
                  "print(cfg.worker.actor.model.model_path, adapter_for_model_dir(cfg.worker.actor.model.model_path).family)",
                  tmp_path / "hf")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == [str(snapshot), "qwen2_5_vl"]


def test_a_hub_id_missing_offline_names_the_id_and_the_cache(tmp_path):
    result = _run("from longrl.trainer.main import main\n"
                  f"raise SystemExit(main(['embedded.root={tmp_path / 'embedded'}', "
                  "'worker.actor.model.model_path=Qwen/Not-Cached', 'data.train_files=x.jsonl', 'data.val_files=null']))",
                  tmp_path / "hf")
    assert result.returncode == 2
    assert ("config error: worker.actor.model.model_path='Qwen/Not-Cached': not a local directory, not in the Hugging "
            f"Face cache ({tmp_path / 'hf' / 'hub'}), and the download failed") in result.stderr
