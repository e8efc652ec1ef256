"""The small HTML pieces every part of ``report.html`` is built from: escaping, badges, inline figures, numbers.

Shared by :mod:`getiaction_export.report.html` (the page) and :mod:`getiaction_export.report.rollout`
(its rollout sections), which is why they live here and not in either. A figure is a matplotlib
``Figure`` from :mod:`getiaction_export.report.figures`, inlined as SVG; matplotlib is imported only
when one is rendered.

Example:
    >>> badge("failed", "2/3 jobs ok"), escape('<a & "b">'), fmt("4.2", "{:.2f}"), fmt(None, "{:.2f}")
    ('<span class="badge failed">2/3 jobs ok</span>', '&lt;a &amp; &quot;b&quot;&gt;', '4.20', '')
    >>> figure_html("fig-latency", None, "no latency was measured"), classes("num", "", "nowrap"), slug("int8 / ov")
    ('<p id="fig-latency-missing" class="muted">no latency was measured</p>', ' class="num nowrap"', 'int8-ov')
    >>> cpu_text({"model": "AMD EPYC", "arch": "x86_64", "cores": 2, "isa": ["avx2"], "isa_cap": "AVX2",
    ...           "flags_seen": ["avx2", "avx512f"]})
    'AMD EPYC, x86_64, 2 cores, AVX2 (ISA capped at AVX2 by ONEDNN_MAX_CPU_ISA); the CPU has AVX2 AVX-512F'
"""

from __future__ import annotations

import html
import io
import re
from typing import TYPE_CHECKING, Any

from getiaction_export.machine import LABELS, cpu_line, runtimes_line, shared_machine
from getiaction_export.report.figures import number

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def escape(value: Any) -> str:
    """``value`` as HTML text (``None`` as nothing), quotes escaped too: safe in an attribute."""
    return html.escape("" if value is None else str(value), quote=True)


def badge(kind: str, label: str) -> str:
    """A coloured pill: ``kind`` is its class (``ok`` green; ``failed``, ``parity``, ``crashed`` red)."""
    return f'<span class="badge {escape(kind)}">{escape(label)}</span>'


def pass_badge(passed: bool) -> str:
    """``passed`` in green or ``failed`` in red."""
    return badge("ok", "passed") if passed else badge("failed", "failed")


def figure_html(element_id: str, figure: Figure | None, caption: str) -> str:
    """``<figure id=element_id>`` with the figure's SVG and its caption; the caption alone, muted, when None."""
    if figure is None:
        return f'<p id="{escape(element_id)}-missing" class="muted">{escape(caption)}</p>'
    return (f'<figure id="{escape(element_id)}">{svg(figure, element_id)}<figcaption>{escape(caption)}'
            "</figcaption></figure>")


def svg(figure: Figure, element_id: str) -> str:
    """The figure as inline SVG: text kept as text, no metadata, ids prefixed by ``element_id`` (unique per page)."""
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": element_id}):
        figure.savefig(buffer, format="svg", metadata=dict.fromkeys(("Date", "Creator", "Format", "Type")))
    text = buffer.getvalue()
    text = re.sub(r'(\sid="|url\(#|href="#)', lambda m: f"{m.group(1)}{element_id}-", text[text.index("<svg"):])
    return text.replace("<svg ", f'<svg role="img" aria-label="{escape(element_id)}" ', 1)


def fmt(value: Any, pattern: str) -> str:
    """``pattern`` filled with ``value`` as a float; nothing when it is not a number."""
    parsed = number(value)
    return "" if parsed is None else pattern.format(parsed)


def classes(*names: str) -> str:
    """`` class="a b"`` of the non-empty names (nothing when none)."""
    joined = " ".join(name for name in names if name)
    return f' class="{joined}"' if joined else ""


def slug(name: str) -> str:
    """``name`` fit for an element id: runs of anything but letters, digits, ``_`` and ``-`` become one ``-``."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "format"


def cpu_text(cpu: dict[str, Any]) -> str:
    """:func:`getiaction_export.machine.cpu_line`, and under a cap what the CPU itself has (``flags_seen``)."""
    seen = [str(name) for name in cpu.get("flags_seen") or []]
    line = cpu_line(cpu)
    if cpu.get("isa_cap") and seen != list(cpu.get("isa") or []):
        line += "; the CPU has " + (" ".join(LABELS.get(name, name) for name in seen) or "none of them")
    return line


def machines_html(machines: dict[str, dict[str, Any]]) -> str:
    """The machine a sweep's jobs ran on (``{job: result.json's machine}``).

    ``<p id="machine">`` when every job shares it, else ``<table id="machines">`` (job, CPU,
    runtimes); nothing when no job recorded one.

    Example:
        >>> epyc = {"cpu": {"model": "AMD EPYC", "arch": "x86_64", "cores": 2, "isa": ["avx2"]}, "runtimes": {}}
        >>> machines_html({"a": epyc, "b": epyc})
        '<p id="machine"><b>Machine:</b> AMD EPYC, x86_64, 2 cores, AVX2</p>'
        >>> machines_html({"a": epyc, "b": {**epyc, "runtimes": {"torch": "2.13"}}}).count("<tr>")
        3
        >>> machines_html({})
        ''
    """
    shared = shared_machine(machines)
    if shared is not None:
        runtimes = runtimes_line(shared.get("runtimes") or {})
        return (f'<p id="machine"><b>Machine:</b> {escape(cpu_text(shared.get("cpu") or {}))}'
                + (f'<br><span class="muted">{escape(runtimes)}</span>' if runtimes else "") + "</p>")
    if not machines:
        return ""
    rows = "".join(f"<tr><td class=job>{escape(job)}</td><td>{escape(cpu_text(record.get('cpu') or {}))}"
                   f"</td><td>{escape(runtimes_line(record.get('runtimes') or {}))}</td></tr>"
                   for job, record in machines.items())
    return ('<p class="muted">The jobs did not all run on the same machine:</p><table id="machines"><thead>'
            f"<tr><th>job</th><th>CPU</th><th>runtimes</th></tr></thead><tbody>{rows}</tbody></table>")
