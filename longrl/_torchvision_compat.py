"""Let torchvision's pure-Python transforms import where its compiled ops cannot load.

transformers' Qwen-VL video processor needs only torchvision's tensor transforms. On a CPU-only torch
(the CI and developer machines) the PyPI torchvision wheel is linked against CUDA torch libraries, so its
``_C`` extension fails to load; torchvision then still registers fake kernels for ``torchvision::nms`` and
``torchvision::qnms`` without checking that the ops exist, and ``import torchvision`` raises
``operator torchvision::nms does not exist``. Declaring those two operator schemas (never their kernels)
lets the import finish; calling them would still raise, and longrl never calls detection ops.
Where the extension loads, nothing is touched.
"""

from __future__ import annotations

import importlib.util
import os

import torch

_DETECTION_OP_SCHEMAS = {
    "nms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}


def _extension_loads(package_dir: str) -> bool:
    candidates = [f for f in os.listdir(package_dir) if f.startswith("_C.") and f.endswith((".so", ".pyd"))]
    if not candidates:
        return False
    try:
        torch.ops.load_library(os.path.join(package_dir, candidates[0]))
    except (OSError, RuntimeError):
        return False
    return True


_declared = False


def declared_schemas() -> bool:
    """Whether this process needed the shim: a fresh interpreter that imports torchvision first would fail."""
    return _declared


def make_torchvision_importable() -> None:
    """Declare torchvision's detection-op schemas when its compiled extension cannot load."""
    global _declared
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    if _extension_loads(os.path.dirname(spec.origin)):
        return
    _declared = True
    for name, schema in _DETECTION_OP_SCHEMAS.items():
        try:
            torch.library.define(f"torchvision::{name}", schema)
        except RuntimeError:
            pass  # already declared by an earlier call in this process
