"""Charts as inline SVG, drawn on the server: no script, no CDN, readable offline and by a screen
reader (each chart is role="img" with a title and a text description of its numbers)."""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass

# Colours with at least 4.5:1 contrast against white (WCAG AA for text, and so for thin marks).
COLOURS = ("#1f5fa8", "#a8321f", "#2d6a2d", "#6a3d9a", "#7a5a00")
_W, _H, _PAD_L, _PAD_B, _PAD_T = 640, 220, 40, 36, 12


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float]


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def bar_chart(title: str, labels: Sequence[str], series: Sequence[Series], *, percent: bool = False) -> str:
    """Grouped bars, one group per label; `percent`: values are shares 0..1 shown as %."""
    top = 1.0 if percent else max([1.0, *(v for s in series for v in s.values)])
    n, k = max(len(labels), 1), max(len(series), 1)
    plot_w, plot_h = _W - _PAD_L - 8, _H - _PAD_B - _PAD_T
    group = plot_w / n
    bar = max(group * 0.8 / k, 1.0)
    key = re.sub(r"[^a-z0-9]+", "-", title.lower())  # ids for aria-labelledby, unique per page by title
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" aria-labelledby="t-{key} d-{key}"'
        ' xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet">',
        f'<title id="t-{key}">{_esc(title)}</title>',
        f'<desc id="d-{key}">{_esc(describe(labels, series, percent=percent))}</desc>',
    ]
    for frac in (0.0, 0.5, 1.0):
        y = _PAD_T + plot_h * (1 - frac)
        shown = f"{frac * 100:.0f}%" if percent else f"{top * frac:g}"
        parts.append(
            f'<line x1="{_PAD_L}" x2="{_W - 8}" y1="{y:.1f}" y2="{y:.1f}" '
            'stroke="#767676" stroke-width="0.5"/>'
        )
        parts.append(
            f'<text x="{_PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="#222">{shown}</text>'
        )
    for i, label in enumerate(labels):
        x0 = _PAD_L + i * group + group * 0.1
        for j, s in enumerate(series):
            v = s.values[i] if i < len(s.values) else 0
            h = plot_h * (v / top if top else 0)
            x, y = x0 + j * bar, _PAD_T + plot_h - h
            shown = f"{v * 100:.0f}%" if percent else f"{v:g}"
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar * 0.9:.1f}" height="{h:.1f}" '
                f'fill="{COLOURS[j % len(COLOURS)]}"><title>{_esc(s.name)} {_esc(label)}: {shown}</title>'
                "</rect>"
            )
        if n <= 14 or i % 2 == 0:
            parts.append(
                f'<text x="{_PAD_L + (i + 0.5) * group:.1f}" y="{_H - _PAD_B + 14}" text-anchor="middle" '
                f'font-size="11" fill="#222">{_esc(label)}</text>'
            )
    for j, s in enumerate(series):
        x = _PAD_L + j * 150
        parts.append(
            f'<rect x="{x}" y="{_H - 14}" width="10" height="10" fill="{COLOURS[j % len(COLOURS)]}"/>'
        )
        parts.append(f'<text x="{x + 14}" y="{_H - 5}" font-size="11" fill="#222">{_esc(s.name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def describe(labels: Sequence[str], series: Sequence[Series], *, percent: bool = False) -> str:
    """The chart's numbers as text (its accessible description)."""

    def shown(v: float) -> str:
        return f"{v * 100:.0f}%" if percent else f"{v:g}"

    return "; ".join(
        f"{label}: " + ", ".join(f"{s.name} {shown(s.values[i])}" for s in series if i < len(s.values))
        for i, label in enumerate(labels)
    )


def sparkline(label: str, values: Sequence[float | None]) -> str:
    """A small trend line of shares 0..1 (None: no data that day), for a table cell."""
    w, h = 80, 20
    known = [(i, v) for i, v in enumerate(values) if v is not None]
    text = ", ".join("no data" if v is None else f"{v * 100:.0f}%" for v in values)
    if not known:
        return f'<span class="muted" aria-label="{_esc(label)}: no data yet">-</span>'
    step = w / max(len(values) - 1, 1)
    points = " ".join(f"{i * step:.1f},{h - 2 - v * (h - 4):.1f}" for i, v in known)
    return (
        f'<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" '
        f'aria-label="{_esc(label)}: {_esc(text)}"'
        f' xmlns="http://www.w3.org/2000/svg"><polyline points="{points}" fill="none" stroke="{COLOURS[0]}"'
        ' stroke-width="2"/></svg>'
    )
