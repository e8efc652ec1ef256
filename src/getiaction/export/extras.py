"""Optional dependencies (pip extras): is one installed, and one line that says how to get it.

OpenVINO (``[openvino]``), onnxslim (``[simplify]``) and the physicalai runtime (``[deploy]``) are
not needed for the ONNX and torch formats, so they are imported only when a feature needs them.
This module imports none of them, nor torch: the application's config check asks
:func:`installed` before anything heavy runs.

Example:
    >>> installed("json"), installed("no_such_package_here")
    (True, False)
    >>> missing_message("format=openvino", "openvino")
    "format=openvino needs the openvino package: pip install 'getiaction-export[openvino]'"
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from types import ModuleType

from getiaction.errors import ConfigError

EXTRAS = {"openvino": "openvino", "onnxslim": "simplify", "physicalai": "deploy", "nncf": "int8",
          "executorch": "executorch", "gymnasium": "sim", "gym_pusht": "sim"}
"""Import name -> the pip extra of getiaction-export that installs it."""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a blocked or half-installed package counts as missing
        return False


INSTALL_VARIABLE = "GETIACTION_INSTALL"
"""How to install an extra where the default ``pip install 'getiaction-export[extra]'`` is not the way: a template
with ``{extra}``. ``scripts/run`` sets it to ``GETIACTION_EXTRAS={extra} scripts/run ...`` (its .venv)."""


def install_command(module: str) -> str:
    """The command that installs ``module``: its extra of getiaction-export (see :data:`INSTALL_VARIABLE`)."""
    if module not in EXTRAS:  # a package of the user's own (a task adapter's requirement)
        return f"pip install {module}"
    template = os.environ.get(INSTALL_VARIABLE) or "pip install 'getiaction-export[{extra}]'"
    return template.replace("{extra}", EXTRAS[module])


def missing_message(feature: str, module: str) -> str:
    """The one line shown when ``feature`` needs ``module`` and it is not installed."""
    return f"{feature} needs the {module} package: {install_command(module)}"


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise a one-line :class:`ConfigError` with the install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(missing_message(feature, module)) from error
