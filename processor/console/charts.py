"""Server-side SVG charts: geometry computed here, drawn by templates/_charts.html.

No JavaScript and no library: the page works offline and the numbers in the picture are the
numbers in the markup (each bar and point carries its count or rate as a data attribute).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from processor.store.daily import DayCounts, RateSeries

__all__ = ["BarChart", "RateChart", "bar_chart", "rate_chart"]

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28
COLOURS = {"hard": "#c0392b", "soft": "#e6a23c", "complaint": "#8e44ad", "auto_reply": "#3498db"}
THRESHOLDS = (0.001, 0.003)
"""The complaint-rate lines drawn: 0.1 % (aim under it) and 0.3 % (mailbox providers' limit)."""


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    day: str
    category: str
    count: int
    colour: str


@dataclass(frozen=True, slots=True)
class Tick:
    position: float
    label: str


@dataclass(slots=True)
class BarChart:
    """Events per day, one stacked bar per day."""

    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    totals: dict[str, int] = field(default_factory=dict)
    legend: list[tuple[str, str]] = field(default_factory=list)


def nice_scale(value: float, ticks: int = 5) -> tuple[float, float]:
    """An axis top at or above ``value`` and a round step (1, 2 or 5 times a power of ten) that
    divides it into about ``ticks`` intervals, so every tick label is a round number."""
    if value <= 0:
        return 1.0, 0.25
    raw = value / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return math.ceil(value / step - 1e-9) * step, step


def _steps(top: float, step: float) -> list[float]:
    return [n * step for n in range(round(top / step) + 1)]


def bar_chart(data: DayCounts) -> BarChart:
    """A stacked bar per day of ``data``, categories in their given order from the bottom."""
    chart = BarChart(WIDTH, HEIGHT)
    days = data.days
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    totals = [sum(data.counts[c][i] for c in data.counts) for i in range(len(days))]
    top, step = nice_scale(max(totals, default=0))
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.8, 1.0)
    for i, day in enumerate(days):
        x = LEFT + i * slot + (slot - bar_w) / 2
        base: float = TOP + plot_h
        for category, counts in data.counts.items():
            count = counts[i]
            if not count:
                continue
            height = plot_h * count / top
            base -= height
            chart.bars.append(Bar(round(x, 2), round(base, 2), round(bar_w, 2), round(height, 2), day, category,
                                  count, COLOURS.get(category, "#7f8c8d")))
    for value in _steps(top, step if step >= 1 else 1.0):
        chart.y_ticks.append(Tick(round(TOP + plot_h - plot_h * value / top, 2), f"{value:,.0f}"))
    every = max(1, len(days) // 6)
    for i in range(0, len(days), every):
        chart.x_ticks.append(Tick(round(LEFT + i * slot + slot / 2, 2), days[i][5:]))
    chart.totals = {category: sum(counts) for category, counts in data.counts.items()}
    chart.legend = [(category, COLOURS.get(category, "#7f8c8d")) for category in data.counts]
    return chart


@dataclass(frozen=True, slots=True)
class Point:
    x: float
    y: float
    day: str
    rate: float
    count: int
    sent: int


@dataclass(slots=True)
class Line:
    name: str
    colour: str
    segments: list[str] = field(default_factory=list)
    """SVG polyline ``points`` strings; a day without a sent count breaks the line."""
    points: list[Point] = field(default_factory=list)


@dataclass(slots=True)
class RateChart:
    """One sending domain's complaint and hard-bounce rates per day, with the threshold lines."""

    sender_domain: str
    has_sent_counts: bool
    width: int
    height: int
    lines: list[Line] = field(default_factory=list)
    thresholds: list[Tick] = field(default_factory=list)
    y_ticks: list[Tick] = field(default_factory=list)
    x_ticks: list[Tick] = field(default_factory=list)
    complaint_total: int = 0
    hard_total: int = 0
    sent_total: int = 0


def _line(name: str, colour: str, days: Sequence[str], counts: Sequence[int], *, sent: Sequence[int | None],
          x_of: list[float], y_of: Callable[[float], float]) -> Line:
    line = Line(name, colour)
    current: list[str] = []
    for i, day in enumerate(days):
        total = sent[i]
        if not total:
            if current:
                line.segments.append(" ".join(current))
                current = []
            continue
        rate = counts[i] / total
        y = y_of(rate)
        line.points.append(Point(x_of[i], y, day, rate, counts[i], total))
        current.append(f"{x_of[i]},{y}")
    if current:
        line.segments.append(" ".join(current))
    return line


def rate_chart(series: RateSeries, width: int = WIDTH, height: int = 180) -> RateChart:
    """Complaint and hard-bounce rates (events / sent) per day; days without a sent count show no point."""
    chart = RateChart(series.sender_domain, series.has_sent_counts, width, height)
    chart.complaint_total = sum(series.complaints)
    chart.hard_total = sum(series.hard)
    chart.sent_total = sum(s or 0 for s in series.sent)
    days = series.days
    plot_w, plot_h = width - LEFT - RIGHT, height - TOP - BOTTOM
    rates = [r for r in (*series.complaint_rates(), *series.hard_rates()) if r is not None]
    top, step = nice_scale(max(0.004, max(rates, default=0.0) * 1.05))
    slot = plot_w / max(len(days), 1)
    x_of = [round(LEFT + i * slot + slot / 2, 2) for i in range(len(days))]

    def y_of(rate: float) -> float:
        return round(TOP + plot_h - plot_h * min(rate, top) / top, 2)

    chart.lines.append(_line("complaint rate", COLOURS["complaint"], days, series.complaints, sent=series.sent,
                             x_of=x_of, y_of=y_of))
    chart.lines.append(_line("hard-bounce rate", COLOURS["hard"], days, series.hard, sent=series.sent,
                             x_of=x_of, y_of=y_of))
    chart.thresholds = [Tick(y_of(limit), f"{limit:.1%}") for limit in THRESHOLDS]
    decimals = max(0, -math.floor(math.log10(step * 100)))
    chart.y_ticks = [Tick(y_of(value), f"{value * 100:.{decimals}f}%") for value in _steps(top, step)]
    every = max(1, len(days) // 6)
    chart.x_ticks = [Tick(x_of[i], days[i][5:]) for i in range(0, len(days), every)]
    return chart
