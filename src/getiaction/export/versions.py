"""Versions of the packages an artifact depends on, read without importing them.

Example:
    >>> versions = package_versions()
    >>> sorted(versions)[:3]
    ['getiaction', 'numpy', 'onnx']
    >>> versions["python"].count(".") >= 2
    True
"""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

_DISTRIBUTIONS = {
    "getiaction": "getiaction-export",
    "torch": "torch",
    "onnx": "onnx",
    "onnxscript": "onnxscript",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "numpy": "numpy",
}


def package_versions() -> dict[str, str]:
    """Return ``{name: version}`` for python and the export stack (``"not installed"`` if absent)."""
    versions = {"python": platform.python_version()}
    for name, distribution in _DISTRIBUTIONS.items():
        try:
            versions[name] = version(distribution)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return dict(sorted(versions.items()))
