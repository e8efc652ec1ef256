"""Loading a policy package in physicalai's ``InferenceModel`` the way a robot does, quietly, with one-line errors.

physicalai is optional (``pip install 'getiaction-export[deploy]'``); it is imported only inside
the functions that need it.

Example:
    >>> enabled(False)
    False
    >>> enabled(None) == available()
    True
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from getiaction.errors import ConfigError, ExportError
from getiaction.export.extras import EXTRAS, installed, missing_message
from getiaction_export.errors import first_line
from getiaction_export.physicalai.precision import OPENVINO_F32, bf16_capped
from getiaction_export.physicalai.task import Feed, numpy_feed

if TYPE_CHECKING:
    import torch



INSTALL_HINT = f"pip install 'getiaction-export[{EXTRAS['physicalai']}]'"

def available() -> bool:
    """Whether physicalai can be imported (without importing it)."""
    return installed("physicalai")

def physicalai_version() -> str | None:
    try:
        return version("physicalai")
    except PackageNotFoundError:
        return None

def enabled(setting: bool | None) -> bool:
    """``format.runtime_check``: null = on when physicalai is importable; true without it is a config error."""
    if setting is None:
        return available()
    if setting and not available():
        raise ConfigError(missing_message("format.runtime_check=true", "physicalai"))
    return bool(setting)

@contextlib.contextmanager
def quiet_runtime() -> Iterator[None]:
    """physicalai logs every load at INFO through loguru; keep those lines out of our console and job log."""
    from loguru import logger

    logger.disable("physicalai")
    try:
        yield
    finally:
        logger.enable("physicalai")

def load(folder: Path, backend: str, default_backend: str | None, hints: bool = True) -> Any:
    """``InferenceModel`` on ``folder`` as a robot would load it: ``backend="auto"`` for the default one.

    OpenVINO gets the f32 inference-precision hint unless ``hints`` is False (the default load).
    Raises :class:`ExportError` with the runtime's first line when it refuses the package, or
    when it picked another backend or file than ours.
    """
    from physicalai.inference import InferenceModel

    kwargs = dict(OPENVINO_F32) if backend == "openvino" and (hints or bf16_capped()) else {}
    asked = "auto" if backend == default_backend else backend
    try:
        with quiet_runtime():
            model = InferenceModel(folder, backend=asked, **kwargs)
    except Exception as error:  # the runtime raises plain ValueError/TypeError/KeyError/FileNotFoundError
        raise ExportError(f"physicalai cannot load the package ({backend}): {first_line(error)}") from error
    if model.backend != backend:
        raise ExportError(f"physicalai loads the package with backend {model.backend!r}, not the default "
                          f"{backend!r}; the first key of model.artifacts names the default backend")
    return model

def watch_runs(model: Any, on_run: Callable[[dict[str, Any], dict[str, np.ndarray]], None]) -> None:
    """Call ``on_run(inputs, outputs)`` after every run of ``model``'s graph: what the graph was fed (after the
    package's pre-processors) and its raw outputs (before the post-processors), both as numpy.

    physicalai's ``InferenceModel`` calls ``runner.run(adapter, inputs)`` once per model run; an instance
    attribute shadows that method. The raw outputs carry what a graph drew itself (SmolVLA's ``noise``).

    Example:
        >>> class Runner:
        ...     def run(self, adapter, inputs):
        ...         return {"action": inputs["state"] * 2}
        >>> class Model:
        ...     runner = Runner()
        >>> seen = []
        >>> model = Model()
        >>> watch_runs(model, lambda inputs, outputs: seen.append((inputs["state"], outputs["action"])))
        >>> model.runner.run(None, {"state": np.ones(2)})["action"].tolist(), len(seen)
        ([2.0, 2.0], 1)
    """
    original = model.runner.run

    def watched(adapter: Any, inputs: Any) -> Any:
        outputs = original(adapter, inputs)
        on_run({name: value if isinstance(value, list) else np.array(value) for name, value in dict(inputs).items()},
               {name: np.asarray(value) for name, value in dict(outputs).items()})
        return outputs

    setattr(model.runner, "run", watched)  # noqa: B010 - an instance attribute shadows the method


def model_file(model: Any) -> str | None:
    """The file the runtime loaded (its private lookup; None if a later version renames it)."""
    lookup = getattr(model, "_get_model_path", None)
    return Path(lookup()).name if callable(lookup) else None

class RuntimeRunner:
    """An ``InferenceModel`` called like a verification :data:`~getiaction_export.parity.runtimes.Runner`.

    ``feed`` turns a case into what the model is called with (task strings for a package that
    tokenizes its task: :class:`~getiaction_export.physicalai.task.TaskFeed`).
    """

    def __init__(self, model: Any, output_names: Sequence[str], feed: Feed = numpy_feed) -> None:
        self.model = model
        self.output_names = list(output_names)
        self.feed = feed

    def __call__(self, batch: Mapping[str, torch.Tensor]) -> list[np.ndarray]:
        outputs = self.model(self.feed(batch))
        return [np.asarray(outputs[name]) for name in self.output_names]
