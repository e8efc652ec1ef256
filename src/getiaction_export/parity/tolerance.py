"""What an output is held to: elementwise in float32, relative to its scale in reduced precision.

Torch-free (the config check and deploy_check import it): :class:`Tolerance` and :func:`compare`, which
measures one output against its expected value and judges it. :data:`DEFAULT_TOLERANCES` are the
defaults per precision, measured (README "Parity gates"); ``format.output_tolerances`` overrides
them per output.

Example:
    >>> DEFAULT_TOLERANCES["int8"].describe()
    '<= 10% of the largest |output|, cosine >= 0.999'
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Tolerance(NamedTuple):
    """What one output is held to; every criterion given must hold (``None``: not checked).

    Example:
        >>> Tolerance(1e-5, 1e-4).describe(), Tolerance(max_share=0.1, min_cosine=0.999).describe()
        ('atol 1e-05, rtol 0.0001', '<= 10% of the largest |output|, cosine >= 0.999')
    """

    atol: float | None = None
    rtol: float | None = None
    max_share: float | None = None
    """Max abs diff as a share of the largest ``|PyTorch output|``."""
    min_cosine: float | None = None

    def describe(self) -> str:
        parts = [f"atol {self.atol:g}, rtol {self.rtol or 0.0:g}"] if self.atol is not None else []
        if self.max_share is not None:
            parts.append(f"<= {self.max_share:.3g} of the largest |output|" if self.max_share < 0.01
                         else f"<= {self.max_share:.0%} of the largest |output|")
        if self.min_cosine is not None:
            parts.append(f"cosine >= {self.min_cosine:g}")
        return ", ".join(parts)

    def elementwise(self, scale: float) -> tuple[float, float]:
        """``(atol, rtol)`` for an elementwise check of outputs whose largest magnitude is ``scale``."""
        if self.atol is not None:
            return self.atol, self.rtol or 0.0
        return (self.max_share or 0.0) * scale, 0.0

    def holds(self, diff: np.ndarray, expected: np.ndarray, share: float, cosine: float) -> bool:
        within = True
        if self.atol is not None:
            within = bool(np.all(diff <= self.atol + (self.rtol or 0.0) * np.abs(expected)))
        if self.max_share is not None:
            within = within and share <= self.max_share
        if self.min_cosine is not None:
            within = within and cosine >= self.min_cosine
        return within


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-5, rtol=1e-4),
    "fp16": Tolerance(atol=5e-3, rtol=1e-2),
    "int8": Tolerance(max_share=0.10, min_cosine=0.999),
}
"""Per precision, when nothing overrides it.

- fp32: PyTorch vs onnxruntime/OpenVINO f32 differ by float32 rounding (1e-7..1e-5 on the shipped policies).
- fp16: ACT-like 7e-4 in onnxruntime (which upcasts float16 arithmetic on CPU), 2e-3 in true float16.
- int8 (OpenVINO + NNCF, 100 calibration inputs): ACT 0.8% of the largest |action| (cosine 0.99998),
  the 10-step diffusion policy 7.3% (cosine 0.9998): its error compounds over the denoising steps.
  The bound catches a broken quantization (a lost channel is tens of percent off); whether 7% steers
  the robot the same way is what a closed-loop check answers.
"""


def compare(expected: np.ndarray, actual: np.ndarray, atol: float | None, rtol: float | None,
            max_share: float | None = None, min_cosine: float | None = None) -> dict[str, Any]:
    """Difference figures of ``actual`` against ``expected``, judged by ``Tolerance(atol, rtol, max_share,
    min_cosine)``."""
    expected64 = expected.astype(np.float64)
    actual64 = actual.astype(np.float64)
    if expected64.shape != actual64.shape:
        return {"max_abs_diff": float("inf"), "mean_abs_diff": float("inf"), "max_rel_diff": float("inf"),
                "share": float("inf"), "max_abs_expected": 0.0,
                "cosine": 0.0, "nonfinite": False, "nonfinite_expected": False, "nonfinite_actual": False,
                "passed": False, "shape_mismatch": [list(expected64.shape), list(actual64.shape)]}
    nonfinite_expected = bool(not np.isfinite(expected64).all())
    nonfinite_actual = bool(not np.isfinite(actual64).all())
    nonfinite = nonfinite_expected or nonfinite_actual
    diff = np.abs(expected64 - actual64)
    if diff.size == 0:
        max_abs = mean_abs = max_rel = 0.0
    else:
        max_abs, mean_abs = float(np.nanmax(diff)), float(np.nanmean(diff))
        max_rel = float(np.nanmax(diff / np.maximum(np.abs(expected64), 1e-12)))
    norms = float(np.linalg.norm(expected64) * np.linalg.norm(actual64))
    cosine = float(np.dot(expected64.ravel(), actual64.ravel()) / norms) if norms > 0 else 1.0
    largest = float(np.nanmax(np.abs(expected64))) if expected64.size else 0.0
    share = max_abs / largest if largest > 0 else (0.0 if max_abs == 0 else float("inf"))
    within = Tolerance(atol, rtol, max_share, min_cosine).holds(diff, expected64, share, cosine)
    return {"max_abs_diff": max_abs, "mean_abs_diff": mean_abs, "max_rel_diff": max_rel, "share": share,
            "max_abs_expected": largest, "cosine": cosine,
            "nonfinite": nonfinite, "nonfinite_expected": nonfinite_expected, "nonfinite_actual": nonfinite_actual,
            "passed": within and not nonfinite}


_FLAGS = ("nonfinite", "nonfinite_expected", "nonfinite_actual")


def keep_worst(worst: dict[str, dict[str, Any]], name: str, stats: dict[str, Any], bound: Tolerance) -> None:
    """Fold one case's :func:`compare` figures of output ``name`` into ``worst[name]`` (the worst over cases).

    Example:
        >>> worst = {}
        >>> for actual in (1.0001, 1.2):
        ...     keep_worst(worst, "action", compare(np.ones(2), np.full(2, actual), 1e-3, 0.0), Tolerance(1e-3, 0.0))
        >>> round(worst["action"]["max_abs_diff"], 4), worst["action"]["passed"]
        (0.2, False)
    """
    record = worst.setdefault(
        name, {"max_abs_diff": 0.0, "mean_abs_diff": 0.0, "max_rel_diff": 0.0, "share": 0.0,
               "max_abs_expected": 0.0, "cosine": 1.0, **dict.fromkeys(_FLAGS, False), **bound._asdict(),
               "passed": True})
    for key in ("max_abs_diff", "mean_abs_diff", "max_rel_diff", "share", "max_abs_expected"):
        record[key] = max(record[key], stats[key])
    record["cosine"] = min(record["cosine"], stats["cosine"])
    for key in _FLAGS:
        record[key] = record[key] or stats[key]
    record["passed"] = record["passed"] and stats["passed"]


def failure_phrase(name: str, figures: dict[str, Any]) -> str:
    """``action: max abs diff 0.3 > atol 1e-05`` (or the share / cosine that missed its bound)."""
    nonfinite = " (non-finite values)" if figures["nonfinite"] else ""
    if figures.get("atol") is not None:
        return f"{name}: max abs diff {figures['max_abs_diff']:.3g} > atol {figures['atol']:.3g}{nonfinite}"
    missed = []
    if figures.get("max_share") is not None and figures["share"] > figures["max_share"]:
        missed.append(f"max abs diff {figures['share']:.2%} of the largest |{name}| > {figures['max_share']:.2%}")
    if figures.get("min_cosine") is not None and figures["cosine"] < figures["min_cosine"]:
        missed.append(f"cosine {figures['cosine']:.6f} < {figures['min_cosine']:g}")
    return f"{name}: {', '.join(missed) or 'out of bounds'}{nonfinite}"
