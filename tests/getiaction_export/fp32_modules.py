"""Policies for the fitted fp32 gate (tests/getiaction_export/test_fp32_bound.py), each a ``policy=module`` factory.

Import path from a subprocess whose cwd is not the repo: put the repo root on ``PYTHONPATH`` and
name e.g. ``policy._target_=tests.getiaction_export.fp32_modules.make_chain``.

:class:`Chain` is a deep residual stack whose float32 forward is far from exact arithmetic (its
rounding is amplified layer after layer, like a diffusion policy's denoising passes): about 1e-5
of its output's scale, 40x the shipped policies'. Its variants are wrong on purpose, only in the
exported graph (while ``torch.onnx.export`` / ``torch.export`` trace it), the way real export
faults are: an error added to the action, a lost input normalization, an upsampling with the
coordinate semantics of ONNX's opset-9/10 ``Upsample``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def exporting() -> bool:
    """True while an exporter traces the module (TorchScript or dynamo)."""
    return bool(torch.onnx.is_in_onnx_export() or torch.jit.is_tracing() or torch.compiler.is_compiling())


def upsample_half_pixel(h: torch.Tensor) -> torch.Tensor:
    """(B, W) → (B, 2W) linear interpolation as PyTorch does it (``align_corners=False``: Resize-11+ ``half_pixel``)."""
    return F.interpolate(h.unsqueeze(1), scale_factor=2.0, mode="linear", align_corners=False).squeeze(1)


def upsample_asymmetric(h: torch.Tensor) -> torch.Tensor:
    """The same with ONNX ``Upsample`` (opsets 9-10) semantics: input coordinate = output coordinate / 2."""
    following = torch.cat([h[:, 1:], h[:, -1:]], dim=1)
    return torch.stack([h, (h + following) / 2], dim=-1).flatten(1)


class Chain(nn.Module):
    """``state`` (B, 8) → normalized → ``depth`` residual tanh layers of ``width`` → upsampled → ``action`` (B, 8).

    Each layer is ``h = h + tanh(W h)`` with ``W`` of gain ``growth`` (> 1 amplifies every rounding
    difference a little); the read-out is scaled by ``gain``. ``fault`` changes the exported graph
    only: ``offset`` adds ``offset`` to every action, ``normalization`` drops the input
    normalization, ``upsample`` interpolates with opset-9/10 coordinates.
    """

    def __init__(self, width: int = 64, depth: int = 96, growth: float = 1.3, gain: float = 10.0, seed: int = 0,
                 fault: str | None = None, offset: float = 0.0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.inp = nn.Linear(8, width)
        self.layers = nn.ModuleList(nn.Linear(width, width, bias=False) for _ in range(depth))
        self.out = nn.Linear(2 * width, 8)
        with torch.no_grad():
            for module in [self.inp, *self.layers, self.out]:
                fan_in = module.weight.shape[1]
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) / fan_in**0.5)
            for layer in self.layers:
                layer.weight.mul_(growth)
        self.gain, self.fault, self.offset = gain, fault, offset
        self.register_buffer("mean", torch.linspace(-3.0, 3.0, 8))
        self.register_buffer("std", torch.linspace(0.5, 4.0, 8))
        self.sample_input = {"state": torch.linspace(-6.0, 6.0, 16).reshape(2, 8)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        faulty = self.fault is not None and exporting()
        state = batch["state"]
        h = self.inp(state if faulty and self.fault == "normalization" else (state - self.mean) / self.std)
        for layer in self.layers:
            h = h + torch.tanh(layer(h))
        upsample = upsample_asymmetric if faulty and self.fault == "upsample" else upsample_half_pixel
        action = self.gain * self.out(upsample(h / h.shape[-1] ** 0.5))
        return action + self.offset if faulty and self.fault == "offset" else action


def make_chain(**kwargs: float) -> nn.Module:
    """The chain itself: correct everywhere, ~1e-5 of its scale from float64 in float32."""
    return Chain(**kwargs)  # type: ignore[arg-type]


def make_offset(offset: float) -> nn.Module:
    """The chain whose exported graph adds ``offset`` to every action."""
    return Chain(fault="offset", offset=offset)


def make_lost_normalization() -> nn.Module:
    """The chain whose exported graph skips the input normalization."""
    return Chain(fault="normalization")


def make_old_upsample() -> nn.Module:
    """The chain whose exported graph interpolates with ONNX Upsample-9 (asymmetric) coordinates."""
    return Chain(fault="upsample")


class Float32Only(nn.Module):
    """A module that cannot run in float64: its table is a plain float32 attribute, which ``.double()`` skips."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 4)
        self.table = torch.linspace(-1.0, 1.0, 16).reshape(4, 4)
        self.sample_input = {"state": torch.linspace(-1.0, 1.0, 8).reshape(2, 4)}

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.mm(self.layer(batch["state"]), self.table)


def make_float32_only() -> nn.Module:
    return Float32Only()
