"""The fp32 parity bound fitted to the policy: a multiple of PyTorch's own float32 rounding, capped by its scale.

A float32 artifact cannot match PyTorch's float32 forward more closely than both match exact
arithmetic: each rounds differently (other kernels, other summation orders), and the error grows
with the model's depth (10 UNet passes of a default-size LeRobot Diffusion: 5.3e-5 at a scale of
9.10 on the verification inputs, where the fixed ``atol`` 1e-5 refused a correct export 6.3e-5
off in onnxruntime, 8.6e-5 in OpenVINO f32). So for an fp32 format
whose tolerance is the precision's default, the gate measures that rounding: PyTorch runs the
same reference once more in float64 on the verification inputs (:class:`Float64Reference`, once
per job), and per output

``atol = max(FLOOR_ATOL, min(MULTIPLE * float64_gap, CEILING_SHARE * largest |PyTorch output|))``

with ``rtol`` kept at 1e-4 (:func:`fitted_atol`). ``float64_gap`` is the max abs difference
between PyTorch's float32 and float64 outputs over every verification input.

- ``FLOOR_ATOL`` (1e-5, the fixed bound before): never tighter than before; the shipped
  policies' float32 forwards are 9e-8..1.5e-6 from float64, so they keep 1e-5.
- ``MULTIPLE`` (4): two float32 roundings of the same exact result are about as far apart as one
  is from exact. Measured (AMD EPYC, AVX-512; onnxruntime, OpenVINO f32, ExecuTorch; the shipped
  policies, the default-size LeRobot Diffusion, 24 deep residual chains): the artifact's max abs
  diff was 1.25x the gap at the median of 72 pairs, at most 2.6x on a real policy and 4.7x once
  on a chain (where ``rtol`` covered it); counting ``rtol``, the multiple needed was at most
  1.74. 4 leaves twice that.
- ``CEILING_SHARE`` (1e-4 of the output's scale): however far PyTorch's own float32 is from
  exact, ``atol + rtol * |output|`` stays within 2e-4 of the largest output, so an error of 1e-3
  of the scale (a lost normalization is whole units, a wrong operator semantics tens of percent)
  never passes as rounding (for outputs above 0.011 in magnitude; below, the floor rules).

What is recorded (``result.json`` → ``formats.<f>.tolerances.<output>``): the usual ``atol``,
``rtol``, ``max_share``, ``min_cosine``, with ``source: "fp32 fitted"`` and ``float64_gap``,
``scale``, ``multiple``, ``ceiling_share``, ``floor_atol``, ``float64_seconds``; when the float64
run cannot be made (a module that refuses float64, or non-finite output), the fixed bound stays
(``source: "fp32 default"``) and ``fallback`` says why in one phrase.

Example:
    >>> round(fitted_atol(5.33e-5, 9.10), 7)  # the default-size LeRobot Diffusion: 4 x its own rounding
    0.0002132
    >>> fitted_atol(1e-7, 2.0)           # a small policy keeps the floor
    1e-05
    >>> round(fitted_atol(1e-2, 8.88), 6)   # rounding that large is capped at 1e-4 of the scale
    0.000888
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from getiaction.export.onnx import call_with_batch, output_tensors
from getiaction_export.errors import first_line

FLOOR_ATOL = 1e-5
"""The fixed fp32 bound before fitting: the fitted one is never tighter."""
MULTIPLE = 4.0
"""How many times PyTorch's own float32 error an artifact may be off (measured: 1.25x median, 2.6x worst policy)."""
CEILING_SHARE = 1e-4
"""The fitted ``atol`` never exceeds this share of the output's largest magnitude."""
RTOL = 1e-4
SOURCE = "fp32 fitted"
FITS = "fp32 default"
"""The tolerance ``source`` that is fitted (:func:`~getiaction_export.config.format_plan.tolerances`); not a user's."""


def fitted_atol(gap: float, scale: float, multiple: float = MULTIPLE, ceiling_share: float = CEILING_SHARE,
                floor: float = FLOOR_ATOL) -> float:
    """``max(floor, min(multiple * gap, ceiling_share * scale))`` (see the module doc)."""
    return max(floor, min(multiple * gap, ceiling_share * scale))


def fitted(chosen: dict[str, Any], gap: float, scale: float, seconds: float) -> dict[str, Any]:
    """``chosen`` (an output's default fp32 tolerance) with the fitted ``atol`` and how it was derived.

    Example:
        >>> record = fitted({"atol": 1e-5, "rtol": 1e-4, "max_share": None, "min_cosine": None,
        ...                  "source": "fp32 default"}, 3.5e-5, 8.88, 2.5)
        >>> record["atol"], record["rtol"], record["source"], record["float64_gap"], record["multiple"]
        (0.00014, 0.0001, 'fp32 fitted', 3.5e-05, 4.0)
    """
    return {**chosen, "atol": fitted_atol(gap, scale), "rtol": RTOL, "source": SOURCE, "float64_gap": gap,
            "scale": scale, "multiple": MULTIPLE, "ceiling_share": CEILING_SHARE, "floor_atol": FLOOR_ATOL,
            "float64_seconds": round(seconds, 4)}


def describe(name: str, record: dict[str, Any]) -> str | None:
    """The console phrase for a fitted bound that differs from the floor, or for a fit that fell back.

    Example:
        >>> describe("action", fitted({"atol": 1e-5, "source": "fp32 default"}, 3.5e-5, 8.88, 2.5))
        "action: atol 1.4e-04 fitted = 4x PyTorch's own float32 error (3.50e-05 from a float64 run, 2.5 s)"
        >>> describe("action", fitted({"atol": 1e-5, "source": "fp32 default"}, 1e-7, 2.0, 0.1)) is None
        True
        >>> describe("action", {"atol": 1e-5, "source": "fp32 default", "fallback": "the float64 run failed: E"})
        'action: atol 1e-05 kept, not fitted (the float64 run failed: E)'
    """
    if record.get("fallback"):
        return f"{name}: atol {record['atol']:g} kept, not fitted ({record['fallback']})"
    if record.get("source") != SOURCE or record["atol"] == record["floor_atol"]:
        return None
    run = f"{record['float64_gap']:.2e} from a float64 run, {record['float64_seconds']:.1f} s"
    if record["atol"] < record["multiple"] * record["float64_gap"]:
        return (f"{name}: atol {record['atol']:.1e} fitted = the ceiling {record['ceiling_share']:g} of the largest "
                f"|{name}| {record['scale']:.3g} (PyTorch's own float32 error: {run})")
    return f"{name}: atol {record['atol']:.1e} fitted = {record['multiple']:g}x PyTorch's own float32 error ({run})"


def input_key(batch: dict[str, torch.Tensor]) -> tuple[Any, ...]:
    """What identifies a verification input (as :class:`~getiaction_export.parity.runtimes.TorchReference` keys it)."""
    return tuple((name, tuple(t.shape), str(t.dtype), hashlib.sha256(t.numpy().tobytes()).hexdigest())
                 for name, t in sorted(batch.items()))


@contextlib.contextmanager
def float64_default() -> Iterator[None]:
    """``torch.set_default_dtype(torch.float64)`` inside, the previous default restored after.

    Example:
        >>> with float64_default():
        ...     inside = torch.zeros(1).dtype
        >>> inside, torch.zeros(1).dtype
        (torch.float64, torch.float32)
    """
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class Float64Requests(TorchFunctionMode):
    """Inside it, float32 asked for by name is float64: ``dtype=torch.float32``, ``.to(torch.float32)``, ``.float()``.

    Some modules name float32 outright (LeRobot's ACT builds its zero latent with
    ``torch.zeros(..., dtype=torch.float32)``), which neither ``.double()`` nor the default dtype reaches.
    A float32 tensor held outside the module's tree is left alone (the run then fails and falls back).

    Example:
        >>> with Float64Requests():
        ...     dtypes = torch.zeros(1, dtype=torch.float32).dtype, torch.ones(1).float().dtype
        >>> dtypes, torch.zeros(1, dtype=torch.float32).dtype
        ((torch.float64, torch.float64), torch.float32)
    """

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (),
                           kwargs: dict[str, Any] | None = None) -> Any:
        if func is torch.Tensor.float:
            func = torch.Tensor.double
        args = tuple(torch.float64 if arg is torch.float32 else arg for arg in args)
        kwargs = {key: torch.float64 if value is torch.float32 else value for key, value in (kwargs or {}).items()}
        return func(*args, **kwargs)


class Float64Reference:
    """The reference module's outputs in float64, each distinct input computed once per job.

    The module is deep-copied and cast with ``.double()`` (the job's own module is never touched),
    float inputs are cast to float64, and the run happens with float64 as torch's default dtype
    (some modules build float32 tensors from it, e.g. a diffusion timestep embedding) and with
    float32 asked for by name turned into float64 (:class:`Float64Requests`). The copy
    lives only while :meth:`outputs` runs. A run that raises is remembered in ``failure`` (one
    phrase) and not retried.

    Example:
        >>> exact = Float64Reference(torch.nn.Linear(2, 1), "kwargs")
        >>> case = ("sample", {"input": torch.ones(1, 2)})
        >>> exact.outputs([case])[0][0].dtype, exact.outputs([case]) is not None, exact.runs
        (dtype('float64'), True, 1)
    """

    def __init__(self, module: nn.Module, call_style: str, input_names: Sequence[str] | None = None) -> None:
        self.module, self.call_style = module, call_style
        self.input_names = list(input_names) if input_names is not None else None
        self.failure: str | None = None
        self.seconds = 0.0
        """Time spent in float64 runs (the copy and cast included)."""
        self.runs = 0
        self._outputs: dict[tuple[Any, ...], list[np.ndarray]] = {}

    def outputs(self, cases: Sequence[tuple[str, dict[str, torch.Tensor]]]) -> list[list[np.ndarray]] | None:
        """Per case its float64 outputs (graph-output order); ``None`` (and ``failure`` set) if it cannot run."""
        if self.failure is not None:
            return None
        keys = [input_key(batch) for _, batch in cases]
        missing = [(key, batch) for key, (_, batch) in zip(keys, cases, strict=True) if key not in self._outputs]
        if missing:
            started = time.perf_counter()
            try:
                self._run(missing)
            except Exception as error:  # a module that cannot run in float64: the fixed bound stays
                self.failure = f"the float64 run failed: {first_line(error)}"[:200]
            finally:
                self.seconds += time.perf_counter() - started
        return None if self.failure is not None else [self._outputs[key] for key in keys]

    def _run(self, missing: list[tuple[tuple[Any, ...], dict[str, torch.Tensor]]]) -> None:
        with float64_default(), Float64Requests(), torch.no_grad():
            double = double_copy(self.module)
            for key, batch in missing:
                if key in self._outputs:
                    continue
                feed = {name: batch[name] for name in (self.input_names or batch)}
                feed = {name: t.double() if t.is_floating_point() else t for name, t in feed.items()}
                outputs = output_tensors(call_with_batch(double, feed, self.call_style))
                self._outputs[key] = [output.detach().cpu().double().numpy() for output in outputs]
                self.runs += 1


class Float64Runner:
    """The reference module in float64, one batch at a time: a closed loop run in float64 end to end.

    What :class:`Float64Reference` does for a set of inputs, for a rollout's PyTorch episodes (whose
    next input depends on the last output); outputs are float64 arrays in graph-output order.
    """

    def __init__(self, module: nn.Module, call_style: str) -> None:
        self.module, self.call_style = module, call_style
        self.double: nn.Module | None = None

    def __call__(self, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        with float64_default(), Float64Requests(), torch.no_grad():
            if self.double is None:
                self.double = double_copy(self.module)
            feed = {name: t.double() if t.is_floating_point() else t for name, t in batch.items()}
            outputs = output_tensors(call_with_batch(self.double, feed, self.call_style))
            return [output.detach().cpu().double().numpy() for output in outputs]


def double_copy(module: nn.Module) -> nn.Module:
    """A deep copy of ``module`` in float64, modules it holds outside its tree included.

    ``.double()`` casts registered submodules only; a module may also hold one as a plain attribute or
    through a bound method (LeRobot's reference calls ``policy.predict_action_chunk``). Those are cast too.

    Example:
        >>> class Holder(torch.nn.Module):
        ...     def __init__(self) -> None:
        ...         super().__init__()
        ...         self.infer = torch.nn.Linear(2, 2).forward  # the Linear is not a submodule
        >>> holder = Holder()
        >>> double_copy(holder).infer.__self__.weight.dtype, holder.infer.__self__.weight.dtype
        (torch.float64, torch.float32)
    """
    double = copy.deepcopy(module)
    for held in _held_modules(double):
        held.double().eval()
    return double.double().eval()


def _held_modules(root: nn.Module) -> list[nn.Module]:
    held: list[nn.Module] = []
    pending = [root]
    while pending:
        for module in pending.pop().modules():
            for value in vars(module).values():
                owner = value if isinstance(value, nn.Module) else getattr(value, "__self__", None)
                if isinstance(owner, nn.Module) and owner is not module and all(owner is not h for h in held):
                    held.append(owner)
                    pending.append(owner)
    return held


def float64_gaps(expected: Sequence[Sequence[np.ndarray]], exact: Sequence[Sequence[np.ndarray]],
                 output_names: Sequence[str]) -> tuple[dict[str, tuple[float, float]] | None, str | None]:
    """Per output ``(gap, scale)`` over every case: max |float32 - float64| and the largest |float32|.

    ``expected`` and ``exact`` are per case the float32 and float64 outputs. Returns ``(None, why)``
    when a float64 output is non-finite or shaped differently.

    Example:
        >>> f32 = [[np.array([1.0, -2.0], np.float32)], [np.array([3.0, 0.5], np.float32)]]
        >>> f64 = [[np.array([1.0, -2.0 + 1e-6])], [np.array([3.0 - 4e-6, 0.5])]]
        >>> gaps, why = float64_gaps(f32, f64, ["action"])
        >>> round(gaps["action"][0], 9), gaps["action"][1], why
        (4e-06, 3.0, None)
        >>> float64_gaps(f32, [[np.array([np.nan, 0.0])], f64[1]], ["action"])
        (None, 'the float64 run gave non-finite action')
    """
    gaps = {name: (0.0, 0.0) for name in output_names}
    for want, truth in zip(expected, exact, strict=True):
        for name, f32, f64 in zip(output_names, want, truth, strict=True):
            if f32.shape != f64.shape:
                return None, f"the float64 run gave {name} shaped {list(f64.shape)}, not {list(f32.shape)}"
            if not np.isfinite(f64).all():
                return None, f"the float64 run gave non-finite {name}"
            if not np.isfinite(f32).all():
                return None, f"PyTorch's float32 {name} is non-finite"
            if f32.size:
                gap = float(np.abs(f32.astype(np.float64) - f64).max())
                scale = float(np.abs(f32).max())
                gaps[name] = (max(gaps[name][0], gap), max(gaps[name][1], scale))
    return gaps, None
