"""Let torchvision's pure-Python transforms import where its compiled ops cannot load.

transformers' Qwen-VL video processor needs only torchvision's tensor transforms. When torchvision's compiled
extension cannot load into the installed torch (a PyPI torchvision built for CUDA torch beside a CPU torch wheel),
torchvision still registers fake kernels for ``torchvision::nms`` / ``qnms`` and ``import torchvision`` raises
``operator torchvision::nms does not exist``.

The shim is applied only after that exact failure has been seen: torchvision is imported first, as it is, and only
if it fails for that reason are the two operator schemas declared (never their kernels) and the import retried.
Declaring the schemas before torchvision's own extension registers them aborts the interpreter (the extension's
C++ registration finds them taken), so nothing is ever declared on a guess.

This happens when torchvision is first imported, by whichever module imports it (transformers, as soon as it loads
a model or a processor): ``import longrl`` only puts a finder on ``sys.meta_path`` for that first import. A process
that never needs torchvision (the multi-node bootstrap, a reward worker) then does not import it, nor torch._dynamo
that torchvision's detection ops pull in (seconds on a small machine).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["declared_schemas", "make_torchvision_importable"]

_DETECTION_OP_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

_declared = False


def declared_schemas() -> bool:
    """Whether this process needed the shim: a fresh interpreter that imports torchvision first would fail.

    That is known once torchvision has been imported, so it is imported here if nothing has yet (an import that fails
    for another reason is left for torchvision's users to report)."""
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is not None:
        try:
            importlib.import_module("torchvision")
        except Exception:  # noqa: BLE001 - any failure but the one handled is left to torchvision's users
            pass
    return _declared


def _is_missing_detection_op(error: BaseException) -> bool:
    return any(f"torchvision::{name} does not exist" in str(error) for name in _DETECTION_OP_SCHEMAS)


def _forget_partial_import(package: ModuleType) -> None:
    """Undo what a failed execution of torchvision left: its submodules, in ``sys.modules`` and as the package's names,
    and whatever else it defined, so that the next execution imports everything again as a fresh import does."""
    for name in [name for name in sys.modules if name.startswith("torchvision.")]:
        del sys.modules[name]
    for name in [name for name in vars(package) if not (name.startswith("__") and name.endswith("__"))]:
        delattr(package, name)


class _ShimmingLoader(importlib.abc.Loader):
    """torchvision's own loader, whose module is executed again, after the schemas are declared, when its first
    execution fails only for want of them."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        global _declared
        # From here on torchvision is an ordinary module of its own loader.
        _uninstall()
        module.__loader__ = module.__spec__.loader = self.loader
        try:
            self.loader.exec_module(module)
            return
        except Exception as error:
            if not _is_missing_detection_op(error):
                raise
        _forget_partial_import(module)
        import torch

        for name, schema in _DETECTION_OP_SCHEMAS.items():
            torch.library.define(f"torchvision::{name}", schema)
        _declared = True
        self.loader.exec_module(module)


class _FirstImportFinder(importlib.abc.MetaPathFinder):
    """Finds torchvision as the other finders do, with :class:`_ShimmingLoader` around its loader."""

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != "torchvision":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _ShimmingLoader(spec.loader)
                return spec
        return None


_FINDER = _FirstImportFinder()


def _uninstall() -> None:
    if _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def make_torchvision_importable() -> None:
    """Apply the shim to torchvision's first import in this process, if it is needed then (see the module's note).

    Nothing happens where torchvision is already imported or not installed; calling again changes nothing."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None or _FINDER in sys.meta_path:
        return
    sys.meta_path.insert(0, _FINDER)
