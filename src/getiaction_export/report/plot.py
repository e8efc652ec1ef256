"""The drawing layer of ``report.html``'s figures: charts written straight as SVG text, no plotting library.

A :class:`Figure` holds a grid of :class:`Axes`. Each axes collects what is drawn on it (lines and
markers, horizontal bars, bound lines and spans, text) in data coordinates; :meth:`Figure.svg` then
lays the grid out, leaving room for the tick labels, axis labels, titles and legends (as
matplotlib's constrained layout does), and writes the SVG. Linear and log scales, automatic ticks,
equal aspect, a shared x axis, legends beside or inside the axes. Text stays text (selectable,
searchable); its width is estimated from DejaVu Sans' advance widths, which is all the layout needs.

Why not matplotlib: the job writes report.html at its end, and importing matplotlib and laying its
figures out cost 0.9 s and 35 MB of every job (benchmarks/RESULTS.md, section 1); this costs
milliseconds and nothing beyond the standard library.

Example:
    >>> figure = Figure(4.0, 2.0)
    >>> axes = figure.add_axes()
    >>> line = axes.plot([1, 2, 3], [1e-6, 1e-5, 1e-7], ls="", marker="o", color="#1f77b4", label="a case")
    >>> axes.set_yscale("log")
    >>> axes.legend()
    >>> page = figure.svg("fig")
    >>> page.startswith("<svg ") and page.count("<circle") == 4 and "10<tspan" in page and "a case" in page
    True
    >>> nice_ticks(0.0, 7.3, 5), log_ticks(2e-7, 3e-5)
    ([0.0, 2.0, 4.0, 6.0], [1e-06, 1e-05])
"""

from __future__ import annotations

import html
import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

FONT = "DejaVu Sans, Verdana, Geneva, Arial, Helvetica, sans-serif"
TICK, TICK_PAD, PAD, GAP = 3.5, 3.5, 4.0, 10.0
"""Lengths in points: a major tick, tick to label, around the figure, between grid cells."""
MINUS = "\u2212"

_WIDTHS = {  # DejaVu Sans advance widths (em) of the characters whose width differs from their class's
    " ": 0.318, "i": 0.278, "j": 0.278, "l": 0.278, "f": 0.352, "t": 0.392, "r": 0.411, "m": 0.974, "w": 0.818,
    "s": 0.521, "c": 0.55, "z": 0.525, "I": 0.295, "J": 0.295, "M": 0.863, "W": 0.989, ".": 0.318, ",": 0.318,
    ":": 0.337, ";": 0.337, "|": 0.337, "!": 0.4, "'": 0.275, '"': 0.46, "(": 0.39, ")": 0.39, "[": 0.39,
    "]": 0.39, "{": 0.636, "}": 0.636, "-": 0.361, "_": 0.5, "/": 0.337, "\\": 0.337, "%": 0.95, "·": 0.318,
    "=": 0.838, "+": 0.838, "<": 0.838, ">": 0.838, "≤": 0.838, "×": 0.838, MINUS: 0.838, "@": 1.0,
}


def text_width(text: str, size: float) -> float:
    """Estimated width in points of one line of ``text`` at ``size`` points (DejaVu Sans; other fonts are narrower).

    Example:
        >>> round(text_width("10 ms", 10), 1)
        30.9
    """
    em = 0.0
    for char in text:
        if char in _WIDTHS:
            em += _WIDTHS[char]
        elif char.isdigit():
            em += 0.636
        elif char.islower():
            em += 0.61
        elif char.isupper():
            em += 0.70
        else:
            em += 0.8
    return em * size


def _n(value: float) -> str:
    """A coordinate in the SVG: 2 decimals at most."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


# -- ticks


def nice_ticks(low: float, high: float, bins: int) -> list[float]:
    """Ticks at a round step (1, 2, 2.5 or 5 times a power of ten) within ``[low, high]``, at most ``bins`` steps."""
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return [low] if math.isfinite(low) else []
    raw = (high - low) / max(bins, 1)
    scale = 10 ** math.floor(math.log10(raw))
    step = next(m * scale for m in (1, 2, 2.5, 5, 10) if m * scale >= raw * (1 - 1e-9))
    first = math.ceil(low / step - 1e-9)
    ticks = []
    index = first
    while index * step <= high + step * 1e-9:
        ticks.append(round(index * step, 12) + 0.0)
        index += 1
    return ticks


def log_ticks(low: float, high: float, bins: int = 12) -> list[float]:
    """The powers of ten within ``[low, high]`` (every n-th when there are more than ``bins``)."""
    if low <= 0 or high <= low:
        return []
    first, last = math.ceil(math.log10(low) - 1e-9), math.floor(math.log10(high) + 1e-9)
    stride = max(1, math.ceil((last - first + 1) / max(bins, 1)))
    return [10.0**k for k in range(first, last + 1) if (k - first) % stride == 0]


def _minor_log_ticks(low: float, high: float) -> list[float]:
    if low <= 0 or high <= low or math.log10(high / low) > 9:
        return []
    return [m * 10.0**k for k in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
            for m in range(2, 10) if low <= m * 10.0**k <= high]


def tick_labels(ticks: Sequence[float]) -> list[str]:
    """Labels of linear ticks: as many decimals as the step needs, ``−`` for minus.

    Example:
        >>> tick_labels([0.0, 2.5, 5.0]), tick_labels([-20.0, 0.0, 20.0]), tick_labels([0.0, 2e-06, 4e-06])
        (['0.0', '2.5', '5.0'], ['−20', '0', '20'], ['0', '2e−06', '4e−06'])
    """
    if not ticks:
        return []
    step = min((b - a for a, b in itertools.pairwise(ticks)), default=abs(ticks[0]) or 1.0)
    largest = max(abs(t) for t in ticks)
    if largest >= 1e5 or step < 1e-3:
        labels = [f"{t:.3g}" for t in ticks]
    else:
        decimals = 0
        while decimals < 6 and abs(step * 10**decimals - round(step * 10**decimals)) > 1e-6 * 10**decimals:
            decimals += 1
        labels = [f"{t:.{decimals}f}" for t in ticks]
    return [label.replace("-", MINUS) if label.lstrip("-") not in ("0", "0.0") else label.lstrip("-")
            for label in labels]


# -- what an axes draws


@dataclass
class Line:
    """A polyline and/or markers at its points (``ls=""``: markers only)."""

    xs: list[float]
    ys: list[float]
    color: str = "#1f77b4"
    lw: float = 1.5
    ls: str = "-"
    marker: str = ""
    ms: float = 6.0
    mew: float = 1.0
    mfc: str | None = None
    """Marker face colour: None is ``color``, ``"none"`` hollow."""
    mec: str | None = None
    alpha: float = 1.0
    label: str | None = None


@dataclass
class _Bar:
    y: float
    width: float
    height: float
    color: str


@dataclass
class _Rule:
    """A horizontal line at ``y`` from ``x0`` to ``x1`` (data), or across the axes (``x0 is None``)."""

    y: float
    x0: float | None
    x1: float | None
    color: str
    ls: str
    lw: float
    alpha: float = 1.0


@dataclass
class _Span:
    y0: float
    y1: float
    color: str
    alpha: float


@dataclass
class _Text:
    text: str
    x: float
    y: float
    xcoords: str  # "data" or "axes" (a fraction of the axes)
    ycoords: str
    dx: float = 0.0  # offset in points, up positive
    dy: float = 0.0
    ha: str = "left"
    va: str = "baseline"
    size: float = 10.0
    color: str = "#000"
    box: bool = False


@dataclass
class Handle:
    """One legend entry: a line (``ls``), a marker, or a filled patch."""

    label: str
    color: str = "#444"
    ls: str = "-"
    lw: float = 1.5
    marker: str = ""
    ms: float = 6.0
    mew: float = 1.0
    mfc: str | None = None
    patch: bool = False


@dataclass
class _Legend:
    handles: list[Handle]
    size: float
    loc: str  # "outside" (right of the axes, top-aligned, no frame) or "best" (inside, framed)
    alpha: float = 0.8


@dataclass
class _Ticks:
    positions: list[float]
    labels: list[str]
    colors: list[str] | None = None


@dataclass
class Axes:
    """One panel: what is drawn on it, in data coordinates, and how its axes look."""

    row: int = 0
    col: int = 0
    rowspan: int = 1
    colspan: int = 1
    sharex: Axes | None = None
    lines: list[Line] = field(default_factory=list)
    bars: list[_Bar] = field(default_factory=list)
    rules: list[_Rule] = field(default_factory=list)
    spans: list[_Span] = field(default_factory=list)
    texts: list[_Text] = field(default_factory=list)
    xscale: str = "linear"
    yscale: str = "linear"
    xlim: list[float | None] = field(default_factory=lambda: [None, None])
    ylim: list[float | None] = field(default_factory=lambda: [None, None])
    xticks: _Ticks | None = None
    yticks: _Ticks | None = None
    xtick_size: float = 10.0
    ytick_size: float = 10.0
    xtick_labels: bool = True
    minor: bool = True
    xlabel: tuple[str, float] | None = None
    ylabel: tuple[str, float] | None = None
    title: tuple[str, float] | None = None
    ygrid: tuple[str, float] | None = None
    equal: bool = False
    legend_spec: _Legend | None = None
    box: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)
    """Where the plotting area landed in the figure (x, y, width, height in points), set by the layout."""

    # -- drawing (matplotlib's names where there is one)
    def plot(self, xs: Iterable[float], ys: Iterable[float], **style: Any) -> Line:
        line = Line([float(x) for x in xs], [float(y) for y in ys], **style)
        self.lines.append(line)
        return line

    def barh(self, y: float, width: float, height: float = 0.8, color: str = "#1f77b4") -> None:
        self.bars.append(_Bar(float(y), float(width), float(height), color))

    def hlines(self, y: float, x0: float, x1: float, color: str = "#333", ls: str = "-", lw: float = 1.0) -> None:
        self.rules.append(_Rule(float(y), float(x0), float(x1), color, ls, lw))

    def axhline(self, y: float, color: str = "#333", ls: str = "-", lw: float = 1.0, alpha: float = 1.0) -> None:
        self.rules.append(_Rule(float(y), None, None, color, ls, lw, alpha))

    def axhspan(self, y0: float, y1: float, color: str, alpha: float = 1.0) -> None:
        self.spans.append(_Span(float(y0), float(y1), color, alpha))

    def text(self, x: float, y: float, text: str, coords: tuple[str, str] = ("data", "data"),
             offset: tuple[float, float] = (0.0, 0.0), ha: str = "left", va: str = "baseline", size: float = 10.0,
             color: str = "#000", box: bool = False) -> None:
        """``text`` at ``(x, y)`` (each coordinate ``"data"`` or ``"axes"``: a fraction), moved by ``offset`` points."""
        self.texts.append(_Text(text, float(x), float(y), coords[0], coords[1], offset[0], offset[1], ha, va, size,
                                color, box))

    def set_xscale(self, scale: str) -> None:
        self.xscale = scale

    def set_yscale(self, scale: str) -> None:
        self.yscale = scale

    def set_xlim(self, left: float | None = None, right: float | None = None) -> None:
        self.xlim = [self.xlim[0] if left is None else float(left), self.xlim[1] if right is None else float(right)]

    def set_ylim(self, bottom: float | None = None, top: float | None = None) -> None:
        self.ylim = [self.ylim[0] if bottom is None else float(bottom), self.ylim[1] if top is None else float(top)]

    def set_xticks(self, positions: Sequence[float], labels: Sequence[str], colors: Sequence[str] | None = None,
                   size: float | None = None) -> None:
        self.xticks = _Ticks([float(p) for p in positions], list(labels), list(colors) if colors else None)
        self.xtick_size = size or self.xtick_size

    def set_yticks(self, positions: Sequence[float], labels: Sequence[str] = (), size: float | None = None) -> None:
        self.yticks = _Ticks([float(p) for p in positions], list(labels))
        self.ytick_size = size or self.ytick_size
        if not positions:
            self.minor = False

    def tick_params(self, size: float) -> None:
        """Both axes' tick labels at ``size`` points."""
        self.xtick_size = self.ytick_size = size

    def set_xlabel(self, text: str, size: float = 10.0) -> None:
        self.xlabel = (text, size)

    def set_ylabel(self, text: str, size: float = 10.0) -> None:
        self.ylabel = (text, size)

    def set_title(self, text: str, size: float = 12.0) -> None:
        self.title = (text, size)

    def grid_y(self, color: str = "#eee", lw: float = 0.6) -> None:
        """Lines across the axes at the major y ticks."""
        self.ygrid = (color, lw)

    def legend(self, handles: Sequence[Handle] | None = None, size: float = 7.0, loc: str = "outside",
               alpha: float = 0.8) -> None:
        """A legend of ``handles`` (default: the labelled lines); ``loc`` ``"outside"`` (right) or ``"best"``."""
        if handles is None:
            handles = [Handle(line.label, line.color, line.ls, line.lw, line.marker, line.ms, line.mew, line.mfc)
                       for line in self.lines if line.label]
        self.legend_spec = _Legend(list(handles), size, loc, alpha)

    # -- scales and limits
    def limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """``((x0, x1), (y0, y1))``: what was set, the rest from the data (5% margins, bars from 0)."""
        if self.sharex is not None:
            xlim = self.sharex.limits()[0]
        else:
            xs = [x for line in self.lines for x in line.xs] + [r.x0 for r in self.rules if r.x0 is not None] + \
                 [r.x1 for r in self.rules if r.x1 is not None] + [b.width for b in self.bars]
            sticky = 0.0 if self.bars else None
            xlim = _auto(self.xlim, xs + ([0.0] if self.bars else []), self.xscale, sticky)
        ys = [y for line in self.lines for y in line.ys] + [r.y for r in self.rules] + \
             [y for b in self.bars for y in (b.y - b.height / 2, b.y + b.height / 2)]
        return xlim, _auto(self.ylim, ys, self.yscale, None)

    def _fitted_limits(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """:meth:`limits`, widened to equal units along x and y when :attr:`equal` (the data's limits move)."""
        (x0, x1), (y0, y1) = self.limits()
        if self.equal and self.xscale == self.yscale == "linear":
            _, _, width, height = self.box
            per_point = max((x1 - x0) / width, (y1 - y0) / height)
            xc, yc = (x0 + x1) / 2, (y0 + y1) / 2
            x0, x1 = xc - per_point * width / 2, xc + per_point * width / 2
            y0, y1 = yc - per_point * height / 2, yc + per_point * height / 2
        return (x0, x1), (y0, y1)


def _auto(fixed: list[float | None], values: list[float], scale: str, sticky: float | None) -> tuple[float, float]:
    """Limits: the ones set, the others from ``values`` with 5% margins (in log space on a log scale)."""
    finite = [v for v in values if math.isfinite(v) and (scale != "log" or v > 0)]
    if scale == "log":
        logs = [math.log10(v) for v in finite] or [0.0, 1.0]
        low, high = min(logs), max(logs)
        if high == low:
            low, high = low - 1, high + 1
        margin = (high - low) * 0.05
        auto = (10 ** (low - margin), 10 ** (high + margin))
    else:
        low, high = (min(finite), max(finite)) if finite else (0.0, 1.0)
        if high == low:
            low, high = low - (abs(low) or 1) * 0.5, high + (abs(high) or 1) * 0.5
        margin = (high - low) * 0.05
        auto = (low if sticky is not None and low == sticky else low - margin,
                high if sticky is not None and high == sticky else high + margin)
    return (auto[0] if fixed[0] is None else fixed[0], auto[1] if fixed[1] is None else fixed[1])


class _Frame:
    """An axes placed in the figure: data to figure points, its ticks and what sticks out of its box."""

    def __init__(self, axes: Axes) -> None:
        self.axes = axes
        (self.x0, self.x1), (self.y0, self.y1) = axes._fitted_limits()
        x, y, width, height = axes.box
        self.left, self.top, self.width, self.height = x, y, width, height

    def _unit(self, value: float, low: float, high: float, scale: str) -> float:
        if scale == "log":
            if value <= 0:
                return -1e3
            return (math.log10(value) - math.log10(low)) / (math.log10(high) - math.log10(low))
        return (value - low) / (high - low) if high != low else 0.5

    def px(self, x: float) -> float:
        return self.left + self._unit(x, self.x0, self.x1, self.axes.xscale) * self.width

    def py(self, y: float) -> float:
        return self.top + (1 - self._unit(y, self.y0, self.y1, self.axes.yscale)) * self.height

    def xticks(self) -> tuple[list[float], list[str], list[str] | None]:
        axes = self.axes
        if axes.xticks is not None:
            return axes.xticks.positions, axes.xticks.labels, axes.xticks.colors
        low, high = sorted((self.x0, self.x1))
        if axes.xscale == "log":
            ticks = log_ticks(low, high, max(2, int(self.width / (axes.xtick_size * 3))))
            return ticks, [_power(t) for t in ticks], None
        ticks = nice_ticks(low, high, max(1, int(self.width / (axes.xtick_size * 3.5))))
        return ticks, tick_labels(ticks), None

    def yticks(self) -> tuple[list[float], list[str]]:
        axes = self.axes
        if axes.yticks is not None:
            return axes.yticks.positions, axes.yticks.labels
        low, high = sorted((self.y0, self.y1))
        if axes.yscale == "log":
            ticks = log_ticks(low, high, max(2, int(self.height / (axes.ytick_size * 1.6))))
            if not ticks:  # less than a decade: the ends, as numbers
                ticks = [low, high]
                return ticks, [f"{t:.2g}".replace("-", MINUS) for t in ticks]
            return ticks, [_power(t) for t in ticks]
        ticks = nice_ticks(low, high, max(1, int(self.height / (axes.ytick_size * 2.2))))
        return ticks, tick_labels(ticks)


def _power(value: float) -> str:
    """A power of ten as the label markup writes it: ``10^k`` (:func:`_label_svg` raises the exponent)."""
    return f"10^{round(math.log10(value))}"


def _decorations(axes: Axes) -> tuple[float, float, float, float]:
    """Room the axes' labels take outside its box: (left, right, top, bottom) in points."""
    frame = _Frame(axes)
    size = axes.xtick_size
    _, ylabels = frame.yticks()
    left = TICK + TICK_PAD + max((_label_width(label, axes.ytick_size) for label in ylabels), default=0.0)
    if axes.ylabel:
        left += axes.ylabel[1] * 1.25 + 2
    xpositions, xlabels, _ = frame.xticks()
    lines = max((label.count("\n") + 1 for label in xlabels), default=0) if axes.xtick_labels else 0
    bottom = TICK + (TICK_PAD + lines * size * 1.2 if lines else 0.0)
    if axes.xlabel:
        bottom += axes.xlabel[1] * 1.3 + 2
    top = axes.ytick_size * 0.6  # the top y tick label's upper half
    if axes.title:
        top = max(top, axes.title[1] * 1.3 + 4)
    right = 0.0
    if axes.xtick_labels and xlabels:  # the last x tick label's right half, when its tick is at the right edge
        last = max(range(len(xpositions)), key=lambda i: frame.px(xpositions[i]))
        right = max(0.0, frame.px(xpositions[last]) + _label_width(xlabels[last], size) / 2 - frame.left - frame.width)
    if axes.legend_spec and axes.legend_spec.loc == "outside":
        right = max(right, _legend_size(axes.legend_spec)[0] + axes.legend_spec.size * 0.5)
    return left, right, top, bottom


def _label_width(label: str, size: float) -> float:
    if label.startswith("10^"):
        return text_width("10", size) + text_width(label[3:].replace("-", MINUS), size * 0.7)
    return max(text_width(line, size) for line in label.split("\n"))


def _legend_size(legend: _Legend) -> tuple[float, float]:
    size = legend.size
    width = size * (0.8 + 2.0 + 0.8) + max((text_width(h.label, size) for h in legend.handles), default=0.0)
    rows = len(legend.handles)
    return width, size * (0.8 + rows + 0.5 * max(rows - 1, 0))


class Figure:
    """A figure of ``width`` × ``height`` inches (72 points each, as matplotlib's SVG) with a grid of axes."""

    def __init__(self, width: float, height: float, rows: int = 1, cols: int = 1,
                 width_ratios: Sequence[float] | None = None) -> None:
        self.width, self.height = width * 72.0, height * 72.0
        self.rows, self.cols = rows, cols
        self.width_ratios = list(width_ratios or [1.0] * cols)
        self.axes: list[Axes] = []

    def add_axes(self, row: int = 0, col: int = 0, rowspan: int = 1, colspan: int = 1,
                 sharex: Axes | None = None) -> Axes:
        axes = Axes(row=row, col=col, rowspan=rowspan, colspan=colspan, sharex=sharex)
        self.axes.append(axes)
        return axes

    def subplots(self, count: int) -> list[Axes]:
        """``count`` axes stacked in one column (the figure's grid becomes ``count`` rows)."""
        self.rows, self.cols, self.width_ratios = count, 1, [1.0]
        return [self.add_axes(row=i) for i in range(count)]

    # -- layout
    def _layout(self) -> None:
        """Place every axes: each grid column (row) as wide (tall) as its ratio leaves after the labels' room."""
        for axes in self.axes:  # a first guess, so that ticks (which depend on the size) can be chosen
            axes.box = (PAD + 50.0, PAD + 20.0, max(self.width / self.cols - 120, 40.0),
                        max(self.height / self.rows - 60, 30.0))
        for _ in range(2):
            rooms = {id(axes): _decorations(axes) for axes in self.axes}
            left, right = [0.0] * self.cols, [0.0] * self.cols
            top, bottom = [0.0] * self.rows, [0.0] * self.rows
            for axes in self.axes:
                room = rooms[id(axes)]
                left[axes.col] = max(left[axes.col], room[0])
                right[axes.col + axes.colspan - 1] = max(right[axes.col + axes.colspan - 1], room[1])
                top[axes.row] = max(top[axes.row], room[2])
                bottom[axes.row + axes.rowspan - 1] = max(bottom[axes.row + axes.rowspan - 1], room[3])
            xs = _cells(self.width, left, right, self.width_ratios)
            ys = _cells(self.height, top, bottom, [1.0] * self.rows)
            for axes in self.axes:
                x0, y0 = xs[axes.col][0], ys[axes.row][0]
                x1, y1 = xs[axes.col + axes.colspan - 1][1], ys[axes.row + axes.rowspan - 1][1]
                axes.box = (x0, y0, max(x1 - x0, 10.0), max(y1 - y0, 10.0))

    def svg(self, element_id: str) -> str:
        """The figure as one ``<svg>`` element; ids (clip paths) start with ``element_id``, unique in a page."""
        self._layout()
        width, height = _n(self.width), _n(self.height)
        parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_esc(element_id)}" '
                 f'width="{width}pt" height="{height}pt" viewBox="0 0 {width} {height}" '
                 f'font-family="{FONT}" stroke-linecap="butt">',
                 f'<rect width="{width}" height="{height}" fill="#fff"/>']
        for index, axes in enumerate(self.axes):
            parts.append(_draw(_Frame(axes), f"{element_id}-clip{index}"))
        parts.append("</svg>")
        return "\n".join(parts)


def _cells(total: float, before: list[float], after: list[float], ratios: list[float]) -> list[tuple[float, float]]:
    """Start and end (points) of each grid cell's plotting area along one side of the figure."""
    free = total - 2 * PAD - sum(before) - sum(after) - GAP * (len(ratios) - 1)
    free = max(free, 10.0 * len(ratios))
    cells, at = [], PAD
    for index, ratio in enumerate(ratios):
        at += before[index]
        size = free * ratio / sum(ratios)
        cells.append((at, at + size))
        at += size + after[index] + GAP
    return cells


# -- SVG


def _dash(ls: str, lw: float) -> str:
    if ls == "--":
        return f' stroke-dasharray="{_n(3.7 * lw)},{_n(1.6 * lw)}"'
    if ls == ":":
        return f' stroke-dasharray="{_n(1 * lw)},{_n(1.65 * lw)}"'
    return ""


def _opacity(alpha: float) -> str:
    return f' opacity="{_n(alpha)}"' if alpha < 1 else ""


def marker_svg(marker: str, x: float, y: float, ms: float, color: str, mfc: str | None = None,
               mec: str | None = None, mew: float = 1.0, alpha: float = 1.0) -> str:
    """One marker (``o v ^ X x |``) of size ``ms`` points centred at ``(x, y)``."""
    face = color if mfc is None else mfc
    edge = mec or color
    style = f' fill="{face}" stroke="{edge}" stroke-width="{_n(mew)}"{_opacity(alpha)}'
    r = ms / 2
    if marker == "o":
        return f'<circle cx="{_n(x)}" cy="{_n(y)}" r="{_n(r)}"{style}/>'
    if marker in ("v", "^"):
        sign = 1 if marker == "v" else -1
        points = [(x - r, y - sign * r), (x + r, y - sign * r), (x, y + sign * r)]
        return f'<polygon points="{" ".join(f"{_n(a)},{_n(b)}" for a, b in points)}"{style}/>'
    if marker == "X":
        a, b = r, r * 0.38  # a filled cross: arms of half-width b
        shape = [(-a + b, -a), (0, -b * 1.41), (a - b, -a), (a, -a + b), (b * 1.41, 0), (a, a - b), (a - b, a),
                 (0, b * 1.41), (-a + b, a), (-a, a - b), (-b * 1.41, 0), (-a, -a + b)]
        return (f'<polygon points="{" ".join(f"{_n(x + dx)},{_n(y + dy)}" for dx, dy in shape)}" fill="{face}"'
                f' stroke="{edge}" stroke-width="{_n(mew * 0.5)}"{_opacity(alpha)}/>')
    if marker == "x":
        return (f'<path d="M{_n(x - r)} {_n(y - r)}L{_n(x + r)} {_n(y + r)}M{_n(x - r)} {_n(y + r)}L{_n(x + r)} '
                f'{_n(y - r)}" fill="none" stroke="{edge}" stroke-width="{_n(max(mew, 1.0))}"{_opacity(alpha)}/>')
    if marker == "|":
        return (f'<path d="M{_n(x)} {_n(y - r)}V{_n(y + r)}" stroke="{edge}" stroke-width="{_n(mew)}"'
                f"{_opacity(alpha)}/>")
    raise ValueError(f"unknown marker {marker!r}")


def _label_svg(label: str, x: float, y: float, size: float, anchor: str, color: str = "#000",
               va: str = "center") -> str:
    """A tick label (``10^k`` with a raised exponent; ``\\n`` starts a new line) anchored at ``(x, y)``."""
    fill = f' fill="{color}"' if color not in ("", "#000") else ""
    lines = label.split("\n")
    shift = {"center": 0.35 - 0.6 * (len(lines) - 1), "top": 0.8, "bottom": -0.25 - 1.2 * (len(lines) - 1)}[va]
    baseline = y + shift * size
    head = f'<text x="{_n(x)}" y="{_n(baseline)}" font-size="{_n(size)}" text-anchor="{anchor}"{fill}>'
    if label.startswith("10^"):
        exponent = label[3:].replace("-", MINUS)
        return f'{head}10<tspan dy="{_n(-0.45 * size)}" font-size="{_n(size * 0.7)}">{_esc(exponent)}</tspan></text>'
    if len(lines) == 1:
        return f"{head}{_esc(label)}</text>"
    spans = "".join(f'<tspan x="{_n(x)}" dy="{_n(0 if i == 0 else 1.2 * size)}">{_esc(line)}</tspan>'
                    for i, line in enumerate(lines))
    return f"{head}{spans}</text>"


def _draw(frame: _Frame, clip_id: str) -> str:
    axes = frame.axes
    out: list[str] = []
    left, top, width, height = frame.left, frame.top, frame.width, frame.height
    right, bottom = left + width, top + height
    out.append(f'<clipPath id="{clip_id}"><rect x="{_n(left)}" y="{_n(top)}" width="{_n(width)}" '
               f'height="{_n(height)}"/></clipPath>')
    body: list[str] = []
    for span in axes.spans:
        y0, y1 = sorted((frame.py(span.y0), frame.py(span.y1)))
        body.append(f'<rect x="{_n(left)}" y="{_n(y0)}" width="{_n(width)}" height="{_n(y1 - y0)}" '
                    f'fill="{span.color}"{_opacity(span.alpha)}/>')
    yticks, ylabels = frame.yticks()
    if axes.ygrid:
        color, lw = axes.ygrid
        body.extend(f'<path d="M{_n(left)} {_n(frame.py(t))}H{_n(right)}" stroke="{color}" stroke-width="{_n(lw)}"/>'
                    for t in yticks)
    for bar in axes.bars:
        base = frame.px(0.0) if axes.xscale != "log" else left
        end = frame.px(bar.width) if bar.width > 0 or axes.xscale != "log" else left
        ya, yb = sorted((frame.py(bar.y - bar.height / 2), frame.py(bar.y + bar.height / 2)))
        body.append(f'<rect x="{_n(min(base, end))}" y="{_n(ya)}" width="{_n(abs(end - base))}" '
                    f'height="{_n(yb - ya)}" fill="{bar.color}"/>')
    for rule in axes.rules:
        y = frame.py(rule.y)
        x0 = left if rule.x0 is None else frame.px(rule.x0)
        x1 = right if rule.x1 is None else frame.px(rule.x1)
        body.append(f'<path d="M{_n(x0)} {_n(y)}H{_n(x1)}" stroke="{rule.color}" stroke-width="{_n(rule.lw)}"'
                    f"{_dash(rule.ls, rule.lw)}{_opacity(rule.alpha)} fill=\"none\"/>")
    for line in axes.lines:
        points = [(frame.px(x), frame.py(y)) for x, y in zip(line.xs, line.ys, strict=True)
                  if math.isfinite(x) and math.isfinite(y)
                  and (axes.xscale != "log" or x > 0) and (axes.yscale != "log" or y > 0)]
        if line.ls and len(points) > 1:
            path = "M" + "L".join(f"{_n(px)} {_n(py)}" for px, py in points)
            body.append(f'<path d="{path}" fill="none" stroke="{line.color}" stroke-width="{_n(line.lw)}" '
                        f'stroke-linejoin="round"{_dash(line.ls, line.lw)}{_opacity(line.alpha)}/>')
        if line.marker:
            body.extend(marker_svg(line.marker, px, py, line.ms, line.color, line.mfc, line.mec, line.mew, line.alpha)
                        for px, py in points)
    out.append(f'<g clip-path="url(#{clip_id})">' + "".join(body) + "</g>")
    out.append(f'<rect x="{_n(left)}" y="{_n(top)}" width="{_n(width)}" height="{_n(height)}" fill="none" '
               'stroke="#000" stroke-width="0.8"/>')
    ticks: list[str] = []
    for t, label in zip(yticks, ylabels, strict=True):
        y = frame.py(t)
        if top - 0.5 <= y <= bottom + 0.5:
            ticks.append(f"M{_n(left)} {_n(y)}h{_n(-TICK)}")
            out.append(_label_svg(label, left - TICK - TICK_PAD, y, axes.ytick_size, "end"))
    if axes.minor and axes.yscale == "log" and axes.yticks is None:
        ticks.extend(f"M{_n(left)} {_n(frame.py(t))}h-2" for t in _minor_log_ticks(*sorted((frame.y0, frame.y1))))
    xticks, xlabels, colors = frame.xticks()
    for index, (t, label) in enumerate(zip(xticks, xlabels, strict=True)):
        x = frame.px(t)
        if left - 0.5 <= x <= right + 0.5:
            ticks.append(f"M{_n(x)} {_n(bottom)}v{_n(TICK)}")
            if axes.xtick_labels:
                out.append(_label_svg(label, x, bottom + TICK + TICK_PAD, axes.xtick_size, "middle",
                                      colors[index] if colors else "#000", va="top"))
    if axes.minor and axes.xscale == "log" and axes.xticks is None:
        ticks.extend(f"M{_n(frame.px(t))} {_n(bottom)}v2" for t in _minor_log_ticks(*sorted((frame.x0, frame.x1))))
    out.append(f'<path d="{"".join(ticks)}" stroke="#000" stroke-width="0.8"/>')
    room = _decorations(axes)
    if axes.xlabel:
        text, label_size = axes.xlabel
        out.append(f'<text x="{_n(left + width / 2)}" y="{_n(bottom + room[3] - 0.3 * label_size)}" '
                   f'font-size="{_n(label_size)}" text-anchor="middle">{_esc(text)}</text>')
    if axes.ylabel:
        text, label_size = axes.ylabel
        x = left - room[0] + label_size * 0.85
        out.append(f'<text transform="translate({_n(x)} {_n(top + height / 2)}) rotate(-90)" '
                   f'font-size="{_n(label_size)}" text-anchor="middle">{_esc(text)}</text>')
    if axes.title:
        text, title_size = axes.title
        out.append(f'<text x="{_n(left + width / 2)}" y="{_n(top - 0.45 * title_size)}" font-size="{_n(title_size)}" '
                   f'text-anchor="middle">{_esc(text)}</text>')
    out.extend(_text_svg(frame, item) for item in axes.texts)
    if axes.legend_spec and axes.legend_spec.handles:
        out.append(_legend_svg(frame, axes.legend_spec))
    return "\n".join(out)


def _text_svg(frame: _Frame, item: _Text) -> str:
    x = frame.left + item.x * frame.width if item.xcoords == "axes" else frame.px(item.x)
    y = frame.top + (1 - item.y) * frame.height if item.ycoords == "axes" else frame.py(item.y)
    x, y = x + item.dx, y - item.dy
    lines = item.text.split("\n")
    width = max(text_width(line, item.size) for line in lines)
    tall = item.size * (1 + 1.2 * (len(lines) - 1))
    top = {"top": y, "center": y - tall / 2, "bottom": y - tall, "baseline": y - item.size * 0.8}[item.va]
    anchor = {"left": "start", "center": "middle", "right": "end"}[item.ha]
    start = {"left": x, "center": x - width / 2, "right": x - width}[item.ha]
    parts = []
    if item.box:
        pad = item.size * 0.2
        parts.append(f'<rect x="{_n(start - pad)}" y="{_n(top - pad)}" width="{_n(width + 2 * pad)}" '
                     f'height="{_n(tall + 2 * pad)}" rx="{_n(pad)}" fill="#fff" opacity="0.85"/>')
    fill = f' fill="{item.color}"' if item.color not in ("#000", "") else ""
    baseline = top + item.size * 0.8
    spans = _esc(lines[0]) if len(lines) == 1 else "".join(
        f'<tspan x="{_n(x)}" dy="{_n(0 if i == 0 else 1.2 * item.size)}">{_esc(line)}</tspan>'
        for i, line in enumerate(lines))
    parts.append(f'<text x="{_n(x)}" y="{_n(baseline)}" font-size="{_n(item.size)}" text-anchor="{anchor}"'
                 f"{fill}>{spans}</text>")
    return "".join(parts)


def _legend_svg(frame: _Frame, legend: _Legend) -> str:
    size = legend.size
    width, height = _legend_size(legend)
    if legend.loc == "outside":
        x, y = frame.left + frame.width + size * 0.5, frame.top
    else:
        x, y = _best_corner(frame, width, height, size * 0.5)
    out = []
    if legend.loc != "outside":
        out.append(f'<rect x="{_n(x)}" y="{_n(y)}" width="{_n(width)}" height="{_n(height)}" rx="{_n(size * 0.3)}" '
                   f'fill="#fff" fill-opacity="{_n(legend.alpha)}" stroke="#ccc" stroke-width="0.8"/>')
    row = y + size * 0.4
    for handle in legend.handles:
        middle = row + size * 0.5
        h0, h1 = x + size * 0.4, x + size * 2.4
        if handle.patch:
            out.append(f'<rect x="{_n(h0)}" y="{_n(middle - size * 0.35)}" width="{_n(h1 - h0)}" '
                       f'height="{_n(size * 0.7)}" fill="{handle.color}"/>')
        elif handle.ls and not handle.marker:
            out.append(f'<path d="M{_n(h0)} {_n(middle)}H{_n(h1)}" stroke="{handle.color}" '
                       f'stroke-width="{_n(handle.lw)}"{_dash(handle.ls, handle.lw)}/>')
        if handle.marker:
            out.append(marker_svg(handle.marker, (h0 + h1) / 2, middle, handle.ms, handle.color, handle.mfc,
                                  mew=handle.mew))
        out.append(f'<text x="{_n(h1 + size * 0.8)}" y="{_n(middle + size * 0.35)}" font-size="{_n(size)}">'
                   f"{_esc(handle.label)}</text>")
        row += size * 1.5
    return "".join(out)


def _best_corner(frame: _Frame, width: float, height: float, pad: float) -> tuple[float, float]:
    """The inside corner whose legend box would cover the fewest drawn points (ties: upper right first)."""
    points = [(frame.px(x), frame.py(y)) for line in frame.axes.lines for x, y in zip(line.xs, line.ys, strict=True)
              if math.isfinite(x) and math.isfinite(y)]
    left, top = frame.left + pad, frame.top + pad
    right, bottom = frame.left + frame.width - pad - width, frame.top + frame.height - pad - height
    corners = [(right, top), (left, top), (left, bottom), (right, bottom)]

    def covered(corner: tuple[float, float]) -> int:
        x, y = corner
        return sum(1 for px, py in points if x <= px <= x + width and y <= py <= y + height)

    return min(corners, key=covered)
