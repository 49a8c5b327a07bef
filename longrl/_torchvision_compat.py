"""Let torchvision's pure-Python transforms import where its compiled ops cannot load.

transformers' Qwen-VL video processor needs only torchvision's tensor transforms. When torchvision's compiled
extension cannot load into the installed torch (a PyPI torchvision built for CUDA torch beside a CPU torch wheel),
torchvision still registers fake kernels for ``torchvision::nms`` / ``qnms`` and ``import torchvision`` raises
``operator torchvision::nms does not exist``.

The shim is applied only after that exact failure has been seen: torchvision is imported first, as it is, and only
if it fails for that reason are the two operator schemas declared (never their kernels) and the import retried.
Declaring the schemas before torchvision's own extension registers them aborts the interpreter (the extension's
C++ registration finds them taken), so nothing is ever declared on a guess.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import torch

__all__ = ["declared_schemas", "make_torchvision_importable"]

_DETECTION_OP_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}

_declared = False


def declared_schemas() -> bool:
    """Whether this process needed the shim: a fresh interpreter that imports torchvision first would fail."""
    return _declared


def _is_missing_detection_op(error: BaseException) -> bool:
    return any(f"torchvision::{name} does not exist" in str(error) for name in _DETECTION_OP_SCHEMAS)


def _forget_partial_import() -> None:
    for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
        del sys.modules[name]


def make_torchvision_importable() -> None:
    """Import torchvision; if it fails only for want of its detection-op schemas, declare them and import again.

    Any other import failure is left for the code that needs torchvision to report: longrl's text-only paths do not.
    """
    global _declared
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is None:
        return
    try:
        importlib.import_module("torchvision")
        return
    except Exception as error:  # noqa: BLE001 - any failure but the one handled is left to torchvision's users
        _forget_partial_import()
        if not _is_missing_detection_op(error):
            return
    for name, schema in _DETECTION_OP_SCHEMAS.items():
        torch.library.define(f"torchvision::{name}", schema)
    _declared = True
    importlib.import_module("torchvision")
