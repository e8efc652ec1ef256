"""``deploy_check`` verifies a package again where it runs: its reference set through the runtime on this machine.

Each package carries ``reference.npz`` (the gate's first inputs and PyTorch's outputs) and each
backend's tolerance; :func:`check_reference` runs the set through a loaded backend and holds it
to that tolerance, naming what differs from the export machine when it drifts
(:func:`machine_difference`). Two kinds of package need more than arrays fed back:

- one that tokenizes its task (SmolVLA) is sent the robot loop's task string
  (:func:`robot_task`) and the stored task strings (:func:`~.task.reference_feed`), so its own
  tokenizer is part of what is held to PyTorch;
- one whose graph draws its start noise: its action belongs to the noise it drew, so it is first
  checked to draw fresh, standard normal noise every call (:func:`check_fresh`), then loaded
  again with the draw *pinned* to an input (:func:`load_pinned`, :mod:`~.pinned`), and the
  reference set's stored noise is what it computes from.

Torch-free. Each failure is one line, raised as :class:`Refused`; ``deploy_check`` reports it as
not deployable.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from getiaction_export.files import sha256_of
from getiaction_export.parity.tolerance import Tolerance, failure_phrase
from getiaction_export.physicalai.manifest import SECTION
from getiaction_export.physicalai.pinned import pin
from getiaction_export.physicalai.task import ROBOT_TASK, reference_feed


class Refused(Exception):
    """One line: why the package does not compute here what was verified (``deploy_check``: not deployable)."""


def robot_task(section: dict[str, Any]) -> str | None:
    """The task string the robot-loop observation carries: :data:`~.task.ROBOT_TASK` if the package tokenizes one."""
    return ROBOT_TASK if section.get("task") else None


def drawn_outputs(section: dict[str, Any]) -> list[str]:
    """The outputs the graph draws itself (start noise) that its reference set is conditioned on."""
    return list((section.get("reference") or {}).get("conditioned_on") or {})


def check_fresh(model: Any, backend: str, observation: dict[str, Any], drawn: Sequence[str]) -> str:
    """What the graph draws (start noise) is finite, about standard normal, and new on every call; the ✓ line."""
    first, second = model(observation), model(observation)
    for name in drawn:
        one, two = np.asarray(first[name], np.float64), np.asarray(second[name], np.float64)
        if not (np.isfinite(one).all() and abs(one.mean()) < 0.5 and 0.5 < one.std() < 1.5):
            raise Refused(f"{backend}: the {name!r} the graph draws is not standard normal noise (mean "
                          f"{one.mean():.3g}, std {one.std():.3g})")
        if np.array_equal(one, two):
            raise Refused(f"{backend}: the graph drew the same {name!r} on two calls; it must be fresh per call")
    return f"{backend}: the graph draws fresh {', '.join(drawn)} every call (standard normal)"


def load_pinned(model: Any, backend: str, path: Path, drawn: Sequence[str], into: Path) -> Path:
    """Load into ``model`` a copy of the model file at ``path`` with ``drawn`` pinned (written in ``into``)."""
    from getiaction_export.errors import first_line

    pinned = pin(path, list(drawn), into)
    try:
        model.adapter.load(pinned)
    except Exception as error:  # the runtime's own error on the pinned copy
        raise Refused(f"{backend}: the model with its {', '.join(drawn)} pinned does not load: "
                      f"{first_line(error)}") from error
    return pinned


def check_reference(folder: Path, section: dict[str, Any], backend: str,
                    model: Any) -> tuple[dict[str, dict[str, Any]] | None, str]:
    """The package's reference set through ``backend`` on this machine, held to the tolerance recorded at export.

    Returns the per-output figures and the ✓ line, or ``None`` and a warning for a package without a reference set.
    """
    from getiaction_export.errors import first_line
    from getiaction_export.physicalai.reference_set import read_reference, recheck

    recorded = section.get("reference") or {}
    backend_record = (section.get("backends") or {}).get(backend) or {}
    if not recorded or not backend_record.get("tolerance"):
        return None, (f"{backend}: the package has no reference set (made by an older getiaction-export): "
                      "its numbers are not verified again on this machine")
    path = folder / str(recorded.get("file"))
    if not path.is_file():
        raise Refused(f"{SECTION}.reference: {path.name} is missing from {folder}")
    if recorded.get("sha256") and sha256_of(path) != recorded["sha256"]:
        raise Refused(f"{path.name} changed since export: sha256 {sha256_of(path)[:12]}, "
                      f"the manifest records {str(recorded['sha256'])[:12]}")
    tolerances = {name: Tolerance(*(bound.get(key) for key in Tolerance._fields))
                  for name, bound in backend_record["tolerance"].items()}
    try:
        figures = recheck(lambda row: model(reference_feed(row)), read_reference(path), tolerances)
    except Exception as error:  # the runtime's own errors on a bad feed; a corrupt .npz
        raise Refused(f"{backend}: the reference set does not run: {first_line(error)}") from error
    precision = str(backend_record.get("precision") or "fp32")
    at_export = backend_record.get("reference") or {}
    cases = int(recorded.get("cases") or 0)
    failed = {name: f for name, f in figures.items() if not f["passed"]}
    if failed:
        name, worst = next(iter(failed.items()))
        was = at_export.get(name) or {}
        before = f" (at export {was['share']:.2%}, cosine {was['cosine']:.6f})" if was else ""
        difference = machine_difference(section)
        advice = ("; INT8 without VNNI saturates unless every layer has the overflow fix: export again with "
                  "format.calibration.overflow_fix=enable" if precision == "int8" and "VNNI" in difference.split(
                      ", which")[0] and (backend_record.get("int8") or {}).get("overflow_fix") != "enable" else "")
        raise Refused(f"{backend} ({precision}) drifts on this CPU: {failure_phrase(name, worst)} on the "
                      f"package's {cases} reference inputs{before}; {difference}{advice}")
    main = "action" if "action" in figures else next(iter(figures))
    worst = figures[main]
    return figures, (f"{backend} ({precision}) verified again on this CPU: {main} {worst['max_abs_diff']:.2e} "
                     f"({worst['share']:.2%} of the largest |{main}|) off PyTorch on the {cases} reference "
                     f"inputs, within {Tolerance(*(worst.get(k) for k in Tolerance._fields)).describe()}")


def machine_difference(section: dict[str, Any], here: dict[str, Any] | None = None) -> str:
    """What differs between the machine recorded at export (``getiaction.machine``) and ``here`` (default: this one).

    >>> export = {"machine": {"cpu": {"model": "AMD EPYC", "isa": ["avx2", "avx512f", "avx512_vnni"]},
    ...                       "runtimes": {"openvino": "2026.4.1"}}}
    >>> machine_difference(export, {"cpu": {"model": "AMD EPYC", "isa": ["avx2"]}, "runtimes": {}}).split(" (")[0]
    'this CPU lacks AVX-512F AVX-512-VNNI, which the export machine had'
    >>> machine_difference(export, {"cpu": {"isa": ["avx2", "avx512f", "avx512_vnni"]}, "runtimes": {}})
    "this CPU has the export machine's ISA features; runtime versions differ: openvino 2026.4.1 at export, not \
installed here"
    """
    from getiaction_export.machine import LABELS, cpu_line, describe_machine, missing_features

    recorded = section.get("machine") or {}
    if not recorded:
        return "the manifest does not record the export machine"
    here = here or describe_machine()
    lacking = missing_features(list((recorded.get("cpu") or {}).get("isa") or []), here["cpu"].get("isa") or [])
    if lacking:
        return (f"this CPU lacks {' '.join(LABELS.get(f, f) for f in lacking)}, which the export machine had "
                f"(export: {cpu_line(recorded.get('cpu') or {})}; here: {cpu_line(here['cpu'])})")
    changed = [f"{name} {old} at export, {here['runtimes'].get(name, 'not installed')} here"
               for name, old in (recorded.get("runtimes") or {}).items() if here["runtimes"].get(name) != old]
    if changed:
        return "this CPU has the export machine's ISA features; runtime versions differ: " + ", ".join(changed)
    return f"same ISA features and runtime versions as the export machine ({cpu_line(here['cpu'])})"
