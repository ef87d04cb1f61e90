"""Bar charts drawn on the server as SVG: no script, nothing from elsewhere, readable at any width
(the drawing scales to its box). Each chart is an `<svg role="img">` with a title and a text
description; the page puts a table of the same numbers beside it."""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 720, 260
LEFT, RIGHT, TOP, BOTTOM = 56, 12, 14, 34


@dataclass(frozen=True)
class Series:
    name: str
    values: list[int]
    css: str  # the class that colours it (app.css)


def _nice_max(value: int) -> int:
    """A round top for the axis at or above `value`."""
    if value <= 0:
        return 1
    step = 10 ** (len(str(value)) - 1)
    for factor in (1, 2, 2.5, 5, 10):
        top = int(step * factor)
        if top >= value:
            return top
    return value


def stacked_bars(chart_id: str, title: str, description: str, labels: list[str], series: list[Series],
                 tick_text=str) -> str:
    """Bars of `labels` (months), each the stack of `series` values (bottom first); `tick_text`
    writes an axis value (money, a count)."""
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    top = _nice_max(max(totals, default=0))
    top += -top % 4  # four even steps of whole numbers
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(labels), 1)
    bar = max(slot * 0.62, 2)
    parts = [f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" class="chart" role="img" '
             f'aria-labelledby="{chart_id}-title {chart_id}-desc" preserveAspectRatio="xMidYMid meet">',
             f'<title id="{chart_id}-title">{escape(title)}</title>',
             f'<desc id="{chart_id}-desc">{escape(description)}</desc>']
    for k in range(5):  # grid lines and axis values
        value = top * k / 4
        y = TOP + plot_h - plot_h * k / 4
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                     f'{escape(tick_text(int(value)))}</text>')
    every = max(1, round(len(labels) / 12))
    for i, label in enumerate(labels):
        x = LEFT + slot * i + (slot - bar) / 2
        y = TOP + plot_h
        for s in series:
            value = max(s.values[i], 0)
            h = plot_h * value / top
            if h > 0:
                parts.append(f'<rect class="{s.css}" x="{x:.1f}" y="{y - h:.1f}" width="{bar:.1f}" height="{h:.1f}">'
                             f'<title>{escape(label)}: {escape(s.name)} {escape(tick_text(s.values[i]))}</title></rect>')
            y -= h
        if i % every == 0:
            parts.append(f'<text class="tick" x="{x + bar / 2:.1f}" y="{HEIGHT - 12}" text-anchor="middle">'
                         f'{escape(label)}</text>')
    parts.append("</svg>")
    return "".join(parts)
