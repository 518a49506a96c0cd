"""Import torchvision on a CPU-only torch.

The torchvision wheel on PyPI is a CUDA build; on a CPU torch its compiled
extension cannot load and the import fails with
``operator torchvision::nms does not exist``. When (and only when) that happens,
the missing operator schemas are registered with ``torch.library`` before the
import. torchvision's datasets, transforms and models then work; its ops do not.
Every module of the package imports torchvision through :func:`import_torchvision`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import torch

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library: torch.library.Library | None = None


def _register_missing_schemas() -> None:
    global _library
    if _library is not None:
        return
    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        _library.define(schema)


def import_torchvision() -> ModuleType:
    """Return the ``torchvision`` module, patching operator schemas only if needed."""
    try:
        return importlib.import_module("torchvision")
    except RuntimeError as error:
        if "torchvision::nms" not in str(error):
            raise
    for module in [m for m in list(importlib.sys.modules) if m.startswith("torchvision")]:
        del importlib.sys.modules[module]
    _register_missing_schemas()
    return importlib.import_module("torchvision")
