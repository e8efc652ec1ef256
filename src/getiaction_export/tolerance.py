"""What an output is held to: elementwise in float32, relative to its scale in reduced precision.

Torch-free (the config check and deploy_check import it). :data:`DEFAULT_TOLERANCES` are the
defaults per precision, measured (README "Parity gates"); ``format.output_tolerances`` overrides
them per output.

Example:
    >>> DEFAULT_TOLERANCES["int8"].describe()
    '<= 10% of the largest |output|, cosine >= 0.999'
"""

from __future__ import annotations

from typing import NamedTuple

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
