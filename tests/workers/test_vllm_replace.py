"""vllm_replace.sh: a no-op with a message when there are no overrides; otherwise copies them idempotently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "vllm_replace.sh"


def _run(env_extra: dict[str, str]) -> str:
    env = {**os.environ, "PYTHON": sys.executable, **env_extra}
    result = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, check=True)
    return result.stdout


def test_no_overrides_is_a_no_op_that_says_so(tmp_path: Path):
    out = _run({"LONGRL_VLLM_OVERRIDES": str(tmp_path / "none")})
    assert out.startswith("vllm_replace.sh: nothing to replace")


def test_overrides_are_installed_once_and_originals_kept(tmp_path: Path):
    # A stand-in vllm package (only its location matters to the script) with one model file to override.
    package = tmp_path / "site" / "vllm"
    (package / "model_executor/models").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    original = package / "model_executor/models/omni.py"
    original.write_text("ORIGINAL = True\n")
    overrides = tmp_path / "overrides"
    (overrides / "model_executor/models").mkdir(parents=True)
    (overrides / "model_executor/models/omni.py").write_text("PATCHED = True\n")
    (overrides / "model_executor/models/new_model.py").write_text("NEW = True\n")
    env = {"LONGRL_VLLM_OVERRIDES": str(overrides), "PYTHONPATH": str(tmp_path / "site")}
    first = _run(env).splitlines()
    assert first == [f"replaced: {package}/model_executor/models/new_model.py (from {overrides}/model_executor/models/new_model.py)",
                     f"replaced: {original} (from {overrides}/model_executor/models/omni.py)"]
    assert original.read_text() == "PATCHED = True\n"
    assert Path(f"{original}.orig").read_text() == "ORIGINAL = True\n"
    second = _run(env).splitlines()
    assert second == [f"unchanged: {package}/model_executor/models/new_model.py", f"unchanged: {original}"]
    assert Path(f"{original}.orig").read_text() == "ORIGINAL = True\n"
