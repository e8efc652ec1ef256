"""The small HTML pieces every part of ``report.html`` is built from: escaping, badges, inline figures, numbers.

Shared by :mod:`getiaction_export.html_report` (the page) and :mod:`getiaction_export.html_rollout`
(its rollout sections), which is why they live here and not in either. A figure is a matplotlib
``Figure`` from :mod:`getiaction_export.html_figures`, inlined as SVG; matplotlib is imported only
when one is rendered.

Example:
    >>> badge("failed", "2/3 jobs ok"), escape('<a & "b">'), fmt("4.2", "{:.2f}"), fmt(None, "{:.2f}")
    ('<span class="badge failed">2/3 jobs ok</span>', '&lt;a &amp; &quot;b&quot;&gt;', '4.20', '')
    >>> figure_html("fig-latency", None, "no latency was measured"), classes("num", "", "nowrap"), slug("int8 / ov")
    ('<p id="fig-latency-missing" class="muted">no latency was measured</p>', ' class="num nowrap"', 'int8-ov')
"""

from __future__ import annotations

import html
import io
import re
from typing import TYPE_CHECKING, Any

from getiaction_export.html_figures import number

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
