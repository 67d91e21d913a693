"""Charts as self-contained SVG strings, built with the standard library only.

Every function returns one ``<svg>...</svg>`` element with a ``viewBox`` (so it scales), inline presentation
attributes, a ``<title>`` for accessibility, escaped labels and round-number axis ticks. The output is
deterministic for the same input. Empty input gives a chart that says "no data"; a single value or a zero range
never divides by zero. Missing or non-finite values (``None``, NaN, infinity) are skipped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import TypeGuard

__all__ = [
    "PALETTE",
    "bar_chart",
    "error_bar_chart",
    "format_tick",
    "histogram",
    "line_chart",
    "nice_step",
    "nice_ticks",
    "range_chart",
]

# Colour-blind-safe qualitative palette (Okabe-Ito, reordered so the first two contrast most); cycles beyond eight.
PALETTE: tuple[str, ...] = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")

_FONT = "system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif"
_TEXT = "#1f2328"
_MUTED = "#57606a"
_GRID = "#e5e7eb"
_AXIS = "#8c959f"
_CHAR_W = 7.0  # approximate width of one 12px character, for laying out labels and legends
_NO_DATA = "no data"


# -- small helpers ---------------------------------------------------------------------------------------------


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _n(value: float) -> str:
    """A coordinate with at most two decimals and no trailing zeros (keeps the SVG small and deterministic)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _finite(value: object) -> TypeGuard[float]:
    """True for a real, finite number (booleans excluded); ``None``, NaN and infinities are missing values."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _text_width(text: str, size: float = 12.0) -> float:
    return len(text) * _CHAR_W * size / 12.0


def _truncate(text: str, max_width: float, size: float = 12.0) -> str:
    """Shorten ``text`` with an ellipsis so it fits ``max_width`` pixels (the full label stays in a tooltip)."""
    max_chars = max(1, int(max_width / (_CHAR_W * size / 12.0)))
    return text if len(text) <= max_chars else text[: max(1, max_chars - 1)] + "\u2026"


def format_tick(value: float) -> str:
    """A tick label: thousands separated, at most six decimals, trailing zeros dropped, never "-0"."""
    if abs(value) < 1e-12:
        return "0"
    text = f"{value:,.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def nice_step(span: float, max_ticks: int = 6) -> float:
    """The round tick step (1, 2, 2.5 or 5 times a power of ten) that cuts ``span`` into at most ``max_ticks``."""
    if not math.isfinite(span) or span <= 0:
        return 1.0
    raw = span / max(1, max_ticks)
    magnitude = 10 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 2.5, 5.0, 10.0):
        step = multiple * magnitude
        if step >= raw * (1 - 1e-9):
            return step
    return 10 * magnitude


def nice_ticks(low: float, high: float, max_ticks: int = 6, *, integer: bool = False) -> list[float]:
    """Round-number ticks covering ``low``..``high`` (the first tick <= low, the last >= high).

    A zero-width range is widened around its value so a single value still gets an axis; ``integer`` forces a
    step of at least 1 (for counts).
    """
    if low > high:
        low, high = high, low
    if high - low < 1e-12:
        pad = max(1.0, abs(low) * 0.1)
        low, high = (low - pad, high + pad) if low != 0 else (0.0, 1.0)
    step = nice_step(high - low, max_ticks)
    if integer:
        step = max(1.0, math.ceil(step))
    first = math.floor(low / step + 1e-9) * step
    last = math.ceil(high / step - 1e-9) * step
    count = int(round((last - first) / step))
    return [round(first + i * step, 10) for i in range(count + 1)]


class _Scale:
    """A linear map from data values to pixels."""

    def __init__(self, d0: float, d1: float, p0: float, p1: float) -> None:
        self.d0, self.d1, self.p0, self.p1 = d0, d1, p0, p1
        self.k = (p1 - p0) / (d1 - d0) if d1 != d0 else 0.0

    def __call__(self, value: float) -> float:
        return self.p0 + (value - self.d0) * self.k


def _open(width: float, height: float, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_n(width)} {_n(height)}" width="{_n(width)}" '
        f'height="{_n(height)}" role="img" aria-label="{_esc(title)}" font-family="{_FONT}" font-size="12" '
        f'fill="{_TEXT}">',
        f"<title>{_esc(title)}</title>",
        f'<rect x="0" y="0" width="{_n(width)}" height="{_n(height)}" fill="#ffffff"/>',
        f'<text x="{_n(width / 2)}" y="22" text-anchor="middle" font-size="15" font-weight="600">{_esc(title)}</text>',
    ]


def _empty(title: str, width: float, height: float) -> str:
    parts = _open(width, height, title)
    parts.append(
        f'<text x="{_n(width / 2)}" y="{_n(height / 2 + 10)}" text-anchor="middle" fill="{_MUTED}" '
        f'font-size="14">{_NO_DATA}</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def _legend_layout(names: Sequence[str], width: float, left: float = 16.0) -> tuple[list[tuple[float, float]], float]:
    """Positions of legend entries in rows wrapped to ``width``, and the total height the legend takes."""
    positions: list[tuple[float, float]] = []
    x, y = left, 0.0
    for name in names:
        item_w = 14 + 6 + _text_width(name) + 18
        if x > left and x + item_w > width - 16:
            x, y = left, y + 18
        positions.append((x, y))
        x += item_w
    return positions, (y + 18 if names else 0.0)


def _legend(names: Sequence[str], width: float, top: float, kinds: str = "rect") -> tuple[list[str], float]:
    """A legend below the title: a swatch (box or line) and the escaped name per series; returns parts and height."""
    if not names:
        return [], 0.0
    positions, legend_h = _legend_layout(names, width)
    parts = ['<g class="legend">']
    for i, (name, (x, y)) in enumerate(zip(names, positions, strict=True)):
        cy = top + y
        if kinds == "line":
            parts.append(
                f'<line x1="{_n(x)}" y1="{_n(cy + 6)}" x2="{_n(x + 14)}" y2="{_n(cy + 6)}" '
                f'stroke="{_colour(i)}" stroke-width="3"/>'
            )
        else:
            parts.append(f'<rect x="{_n(x)}" y="{_n(cy)}" width="12" height="12" rx="2" fill="{_colour(i)}"/>')
        parts.append(f'<text x="{_n(x + 20)}" y="{_n(cy + 10.5)}">{_esc(name)}</text>')
    parts.append("</g>")
    return parts, legend_h


def _y_axis(ticks: list[float], scale: _Scale, left: float, right: float, label: str, mid_y: float) -> list[str]:
    """Horizontal grid lines with tick labels on the left and an optional rotated axis label."""
    parts = ['<g class="y-axis">']
    for tick in ticks:
        y = scale(tick)
        parts.append(
            f'<line x1="{_n(left)}" y1="{_n(y)}" x2="{_n(right)}" y2="{_n(y)}" stroke="{_GRID}" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{_n(left - 6)}" y="{_n(y + 4)}" text-anchor="end" fill="{_MUTED}" font-size="11">'
            f"{_esc(format_tick(tick))}</text>"
        )
    if label:
        parts.append(
            f'<text x="14" y="{_n(mid_y)}" text-anchor="middle" transform="rotate(-90 14 {_n(mid_y)})" '
            f'fill="{_MUTED}">{_esc(label)}</text>'
        )
    parts.append("</g>")
    return parts


def _x_axis(ticks: list[float], scale: _Scale, top: float, bottom: float, label: str, label_x: float) -> list[str]:
    """Vertical grid lines with tick labels under the plot and an optional axis label below them."""
    parts = ['<g class="x-axis">']
    for tick in ticks:
        x = scale(tick)
        parts.append(
            f'<line x1="{_n(x)}" y1="{_n(top)}" x2="{_n(x)}" y2="{_n(bottom)}" stroke="{_GRID}" stroke-width="1"/>'
        )
        parts.append(
            f'<text x="{_n(x)}" y="{_n(bottom + 16)}" text-anchor="middle" fill="{_MUTED}" font-size="11">'
            f"{_esc(format_tick(tick))}</text>"
        )
    if label:
        parts.append(
            f'<text x="{_n(label_x)}" y="{_n(bottom + 36)}" text-anchor="middle" fill="{_MUTED}">{_esc(label)}</text>'
        )
    parts.append("</g>")
    return parts


def _tick_label_width(ticks: Iterable[float]) -> float:
    return max((_text_width(format_tick(t), 11) for t in ticks), default=0.0)


# -- charts ----------------------------------------------------------------------------------------------------


def bar_chart(
    categories: list[str],
    series: dict[str, list[float | None]],
    *,
    title: str,
    y_label: str = "",
    y_max: float | None = None,
    width: int = 720,
    height: int = 340,
    value_format: str = "{:.1f}",
) -> str:
    """Grouped vertical bars: one group per category, one bar per series (named in the legend), value labels.

    ``series`` maps a series name to one value per category; ``None`` draws no bar. The value axis starts at zero
    (or below it for negative values) and ends at ``y_max`` when given, else at a round number above the largest
    value. Each bar carries a tooltip with its series, category and value.
    """
    names = list(series)
    for name, values in series.items():
        if len(values) != len(categories):
            raise ValueError(f"series '{name}' has {len(values)} values for {len(categories)} categories")
    finite = [float(v) for values in series.values() for v in values if v is not None and _finite(v)]
    if not categories or not names or not finite:
        return _empty(title, width, height)

    low = min(0.0, min(finite))
    high = max(0.0, max(finite))
    if y_max is not None and y_max >= high and y_max > low:
        # Honour an explicit maximum (e.g. 100 for scores) instead of rounding past it.
        ticks = [t for t in nice_ticks(low, y_max) if t <= y_max + 1e-9]
        if ticks[-1] < y_max - 1e-9:
            ticks.append(float(y_max))
    else:
        ticks = nice_ticks(low, high)
    d0, d1 = ticks[0], ticks[-1]

    parts = _open(width, height, title)
    legend_parts, legend_h = _legend(names, width, 34) if len(names) > 1 else ([], 0.0)
    parts += legend_parts
    rotate = len(categories) > 6 or any(_text_width(c) > (width - 80) / len(categories) for c in categories)
    label_room = 18.0
    left = 24 + _tick_label_width(ticks) + (16 if y_label else 0)
    right = width - 16.0
    if rotate:
        # Labels slant at 35 degrees (cos 0.82, sin 0.57); make room below and keep the first one inside the left edge.
        label_w = [min(_text_width(c), 150.0) for c in categories]
        label_room = max(label_w) * 0.57 + 20
        first_reach = label_w[0] * 0.82 + 10 - (right - left) / len(categories) / 2
        left = max(left, first_reach)
    top = 40 + legend_h + 14
    bottom = height - 14 - label_room
    if bottom - top < 40:
        bottom = top + 40
    y = _Scale(d0, d1, bottom, top)
    parts += _y_axis(ticks, y, left, right, y_label, (top + bottom) / 2)

    group_w = (right - left) / len(categories)
    inner = group_w * 0.8
    bar_w = inner / len(names)
    show_values = bar_w >= 14
    value_size = 10 if bar_w < 26 else 11
    zero_y = y(0.0)
    parts.append('<g class="bars">')
    for ci, category in enumerate(categories):
        gx = left + ci * group_w + (group_w - inner) / 2
        for si, name in enumerate(names):
            value = series[name][ci]
            if value is None or not _finite(value):
                continue
            v = float(value)
            bx = gx + si * bar_w
            top_y, bar_h = (y(v), zero_y - y(v)) if v >= 0 else (zero_y, y(v) - zero_y)
            label = value_format.format(v)
            parts.append(
                f'<rect x="{_n(bx + 1)}" y="{_n(top_y)}" width="{_n(max(1.0, bar_w - 2))}" height="{_n(bar_h)}" '
                f'fill="{_colour(si)}"><title>{_esc(f"{name} - {category}: {label}")}</title></rect>'
            )
            if show_values:
                ty = top_y - 4 if v >= 0 else top_y + bar_h + 12
                parts.append(
                    f'<text x="{_n(bx + bar_w / 2)}" y="{_n(ty)}" text-anchor="middle" font-size="{value_size}">'
                    f"{_esc(label)}</text>"
                )
    parts.append("</g>")
    parts.append(
        f'<line x1="{_n(left)}" y1="{_n(zero_y)}" x2="{_n(right)}" y2="{_n(zero_y)}" stroke="{_AXIS}" '
        'stroke-width="1"/>'
    )
    parts.append('<g class="categories">')
    for ci, category in enumerate(categories):
        cx = left + (ci + 0.5) * group_w
        if rotate:
            text = _truncate(category, 150)
            parts.append(
                f'<text x="{_n(cx)}" y="{_n(bottom + 14)}" text-anchor="end" '
                f'transform="rotate(-35 {_n(cx)} {_n(bottom + 14)})">{_esc(text)}<title>{_esc(category)}</title></text>'
            )
        else:
            parts.append(f'<text x="{_n(cx)}" y="{_n(bottom + 16)}" text-anchor="middle">{_esc(category)}</text>')
    parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def error_bar_chart(
    labels: list[str],
    values: list[float],
    lows: list[float],
    highs: list[float],
    *,
    title: str,
    x_label: str = "",
    zero_line: bool = True,
    width: int = 720,
    height: int | None = None,
) -> str:
    """Horizontal points with confidence-interval whiskers, one row per label (e.g. a mean delta and its 95% CI).

    Each row shows the point ``values[i]`` and a whisker from ``lows[i]`` to ``highs[i]``, with the numbers written
    to the right; a dashed vertical line marks zero when ``zero_line``. Points whose interval excludes zero are
    drawn filled, the others hollow. The height grows with the number of rows unless given.
    """
    if not (len(labels) == len(values) == len(lows) == len(highs)):
        raise ValueError(
            f"labels, values, lows and highs differ in length ({len(labels)}, {len(values)}, {len(lows)}, {len(highs)})"
        )
    rows = [
        (label, float(v), float(lo), float(hi))
        for label, v, lo, hi in zip(labels, values, lows, highs, strict=True)
        if _finite(v) and _finite(lo) and _finite(hi)
    ]
    row_h = 30.0
    if height is None:
        height = int(40 + 16 + max(1, len(rows)) * row_h + (52 if x_label else 36))
    if not rows:
        return _empty(title, width, height)

    data = [x for _, v, lo, hi in rows for x in (v, lo, hi)] + ([0.0] if zero_line else [])
    ticks = nice_ticks(min(data), max(data))
    label_w = min(220.0, max(_text_width(label) for label, *_ in rows) + 12)
    left = 16 + label_w
    right = width - 16 - 120.0  # room for the "value [low, high]" column
    top = 48.0
    bottom = height - (52.0 if x_label else 36.0)
    x = _Scale(ticks[0], ticks[-1], left, right)
    parts = _open(width, height, title)
    parts += _x_axis(ticks, x, top, bottom, x_label, (left + right) / 2)
    if zero_line and ticks[0] <= 0 <= ticks[-1]:
        parts.append(
            f'<line x1="{_n(x(0))}" y1="{_n(top)}" x2="{_n(x(0))}" y2="{_n(bottom)}" stroke="{_AXIS}" '
            'stroke-width="1.5" stroke-dasharray="4 3"/>'
        )
    step = (bottom - top) / len(rows)
    parts.append('<g class="rows">')
    for i, (label, v, lo, hi) in enumerate(rows):
        cy = top + (i + 0.5) * step
        lo, hi = min(lo, hi), max(lo, hi)
        colour = _colour(0)
        significant = lo > 0 or hi < 0
        summary = f"{v:.2f} [{lo:.2f}, {hi:.2f}]"
        parts.append(
            f'<text x="{_n(left - 8)}" y="{_n(cy + 4)}" text-anchor="end">{_esc(_truncate(label, label_w - 8))}'
            f"<title>{_esc(label)}</title></text>"
        )
        parts.append(
            f'<line x1="{_n(x(lo))}" y1="{_n(cy)}" x2="{_n(x(hi))}" y2="{_n(cy)}" stroke="{colour}" stroke-width="2"/>'
        )
        for end in (lo, hi):
            parts.append(
                f'<line x1="{_n(x(end))}" y1="{_n(cy - 6)}" x2="{_n(x(end))}" y2="{_n(cy + 6)}" stroke="{colour}" '
                'stroke-width="2"/>'
            )
        fill = colour if significant else "#ffffff"
        parts.append(
            f'<circle cx="{_n(x(v))}" cy="{_n(cy)}" r="5" fill="{fill}" stroke="{colour}" stroke-width="2">'
            f"<title>{_esc(f'{label}: {summary}')}</title></circle>"
        )
        parts.append(
            f'<text x="{_n(right + 12)}" y="{_n(cy + 4)}" font-size="11" fill="{_MUTED}">{_esc(summary)}</text>'
        )
    parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def _bin_counts(values: Iterable[float], bins: list[float]) -> list[int]:
    """Counts per bin of sorted edges; the last bin includes its right edge and values outside are not counted."""
    counts = [0] * (len(bins) - 1)
    for value in values:
        if not _finite(value) or value < bins[0] or value > bins[-1]:
            continue
        for i in range(len(bins) - 1):
            if value < bins[i + 1] or i == len(bins) - 2:
                counts[i] += 1
                break
    return counts


def histogram(
    series: dict[str, list[float]],
    *,
    bins: list[float],
    title: str,
    x_label: str = "",
    width: int = 720,
    height: int = 340,
) -> str:
    """Counts of each series per bin, drawn side by side within each bin, with a legend and count axis.

    ``bins`` are the increasing bin edges (e.g. ``[0, 10, ..., 100]``); a bin includes its left edge and the last
    bin also its right edge, as numpy does. Values outside the edges are not counted.
    """
    if len(bins) >= 2 and any(b1 <= b0 for b0, b1 in zip(bins, bins[1:], strict=False)):
        raise ValueError(f"bin edges must increase strictly, got {bins}")
    names = list(series)
    if len(bins) < 2 or not names or not any(_finite(v) for values in series.values() for v in values):
        return _empty(title, width, height)
    counts = {name: _bin_counts(series[name], bins) for name in names}
    max_count = max(max(c) for c in counts.values())
    ticks = nice_ticks(0.0, float(max(1, max_count)), 5, integer=True)

    parts = _open(width, height, title)
    legend_parts, legend_h = _legend(names, width, 34) if len(names) > 1 else ([], 0.0)
    parts += legend_parts
    left = 24 + _tick_label_width(ticks) + 16
    right = width - 16.0
    top = 40 + legend_h + 14
    bottom = height - (52.0 if x_label else 36.0)
    y = _Scale(ticks[0], ticks[-1], bottom, top)
    x = _Scale(bins[0], bins[-1], left, right)
    parts += _y_axis(ticks, y, left, right, "count", (top + bottom) / 2)
    parts.append('<g class="bars">')
    for bi in range(len(bins) - 1):
        x0, x1 = x(bins[bi]), x(bins[bi + 1])
        pad = (x1 - x0) * 0.08
        bar_w = (x1 - x0 - 2 * pad) / len(names)
        for si, name in enumerate(names):
            count = counts[name][bi]
            if count == 0:
                continue
            bx = x0 + pad + si * bar_w
            edge = "]" if bi == len(bins) - 2 else ")"
            tip = f"{name}: {count} in [{format_tick(bins[bi])}, {format_tick(bins[bi + 1])}{edge}"
            parts.append(
                f'<rect x="{_n(bx)}" y="{_n(y(count))}" width="{_n(max(1.0, bar_w - 1))}" '
                f'height="{_n(bottom - y(count))}" fill="{_colour(si)}"><title>{_esc(tip)}</title></rect>'
            )
            if bar_w >= 12:
                parts.append(
                    f'<text x="{_n(bx + bar_w / 2)}" y="{_n(y(count) - 3)}" text-anchor="middle" font-size="10">'
                    f"{count}</text>"
                )
    parts.append("</g>")
    parts.append(
        f'<line x1="{_n(left)}" y1="{_n(bottom)}" x2="{_n(right)}" y2="{_n(bottom)}" stroke="{_AXIS}" '
        'stroke-width="1"/>'
    )
    # Label every edge unless they would collide; then every k-th.
    every = max(1, math.ceil(len(bins) * 34 / max(1.0, right - left)))
    parts.append('<g class="edges">')
    for i, bin_edge in enumerate(bins):
        if i % every and i != len(bins) - 1:
            continue
        parts.append(
            f'<text x="{_n(x(bin_edge))}" y="{_n(bottom + 16)}" text-anchor="middle" fill="{_MUTED}" font-size="11">'
            f"{_esc(format_tick(bin_edge))}</text>"
        )
    parts.append("</g>")
    if x_label:
        parts.append(
            f'<text x="{_n((left + right) / 2)}" y="{_n(bottom + 36)}" text-anchor="middle" fill="{_MUTED}">'
            f"{_esc(x_label)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)


def line_chart(
    series: dict[str, list[tuple[float, float]]],
    *,
    title: str,
    x_label: str = "",
    y_label: str = "",
    width: int = 720,
    height: int = 340,
    markers: bool = False,
) -> str:
    """One polyline per series of ``(x, y)`` points (e.g. training and validation loss per step), with a legend.

    Points are drawn in the order given; non-finite points are skipped. A series of one point is drawn as a marker.
    Both axes get round-number ticks.
    """
    clean = {
        name: [(float(px), float(py)) for px, py in points if _finite(px) and _finite(py)]
        for name, points in series.items()
    }
    every_point = [p for points in clean.values() for p in points]
    if not every_point:
        return _empty(title, width, height)
    names = list(clean)
    xs = [p[0] for p in every_point]
    ys = [p[1] for p in every_point]
    x_ticks = nice_ticks(min(xs), max(xs), 8)
    y_ticks = nice_ticks(min(ys), max(ys), 6)

    parts = _open(width, height, title)
    legend_parts, legend_h = _legend(names, width, 34, kinds="line") if len(names) > 1 else ([], 0.0)
    parts += legend_parts
    left = 24 + _tick_label_width(y_ticks) + (16 if y_label else 0)
    right = width - 20.0
    top = 40 + legend_h + 14
    bottom = height - (52.0 if x_label else 36.0)
    x = _Scale(x_ticks[0], x_ticks[-1], left, right)
    y = _Scale(y_ticks[0], y_ticks[-1], bottom, top)
    parts += _y_axis(y_ticks, y, left, right, y_label, (top + bottom) / 2)
    parts += _x_axis(x_ticks, x, top, bottom, x_label, (left + right) / 2)
    parts.append(
        f'<line x1="{_n(left)}" y1="{_n(bottom)}" x2="{_n(right)}" y2="{_n(bottom)}" stroke="{_AXIS}" '
        'stroke-width="1"/>'
    )
    for si, name in enumerate(names):
        points = clean[name]
        colour = _colour(si)
        parts.append(f'<g class="series"><title>{_esc(name)}</title>')
        if len(points) > 1:
            coords = " ".join(f"{_n(x(px))},{_n(y(py))}" for px, py in points)
            parts.append(
                f'<polyline points="{coords}" fill="none" stroke="{colour}" stroke-width="2" '
                'stroke-linejoin="round" stroke-linecap="round"/>'
            )
        if markers or len(points) == 1:
            for px, py in points:
                parts.append(
                    f'<circle cx="{_n(x(px))}" cy="{_n(y(py))}" r="3" fill="{colour}">'
                    f"<title>{_esc(f'{name}: ({format_tick(round(px, 6))}, {format_tick(round(py, 6))})')}</title>"
                    "</circle>"
                )
        parts.append("</g>")
    parts.append("</svg>")
    return "\n".join(parts)


def range_chart(
    rows: list[tuple[str, float, float, float | None]],
    *,
    title: str,
    x_label: str = "",
    marker: float | None = None,
    marker_label: str = "",
    width: int = 720,
) -> str:
    """A "football field": one horizontal bar from low to high per row, an optional point value, and a marker line.

    ``rows`` are ``(label, low, high, value)``; the marker (e.g. the current price) is a dashed vertical line
    across all rows, labelled ``marker_label`` at the top. The height grows with the number of rows.
    """
    clean = [
        (label, min(float(lo), float(hi)), max(float(lo), float(hi)), float(v) if _finite(v) else None)
        for label, lo, hi, v in rows
        if _finite(lo) and _finite(hi)
    ]
    row_h = 32.0
    has_marker = marker is not None and _finite(marker)
    top = 48.0 + (16 if has_marker else 0)
    height = int(top + max(1, len(clean)) * row_h + (52 if x_label else 36))
    if not clean:
        return _empty(title, width, height)
    data = [x for _, lo, hi, v in clean for x in (lo, hi, v) if x is not None]
    if has_marker and marker is not None:
        data.append(float(marker))
    ticks = nice_ticks(min(data), max(data))
    label_w = min(220.0, max(_text_width(label) for label, *_ in clean) + 12)
    left = 16 + label_w
    right = width - 24.0
    bottom = height - (52.0 if x_label else 36.0)
    x = _Scale(ticks[0], ticks[-1], left, right)
    parts = _open(width, height, title)
    parts += _x_axis(ticks, x, top, bottom, x_label, (left + right) / 2)
    step = (bottom - top) / len(clean)
    parts.append('<g class="rows">')
    for i, (label, lo, hi, v) in enumerate(clean):
        cy = top + (i + 0.5) * step
        colour = _colour(i)
        tip = f"{label}: {format_tick(round(lo, 4))} - {format_tick(round(hi, 4))}"
        if v is not None:
            tip += f" (value {format_tick(round(v, 4))})"
        parts.append(
            f'<text x="{_n(left - 8)}" y="{_n(cy + 4)}" text-anchor="end">{_esc(_truncate(label, label_w - 8))}'
            f"<title>{_esc(label)}</title></text>"
        )
        parts.append(
            f'<rect x="{_n(x(lo))}" y="{_n(cy - 9)}" width="{_n(max(2.0, x(hi) - x(lo)))}" height="18" rx="2" '
            f'fill="{colour}" fill-opacity="0.75"><title>{_esc(tip)}</title></rect>'
        )
        if v is not None:
            parts.append(
                f'<circle cx="{_n(x(v))}" cy="{_n(cy)}" r="4.5" fill="#ffffff" stroke="{_TEXT}" stroke-width="1.5"/>'
            )
    parts.append("</g>")
    if has_marker and marker is not None:
        mx = x(float(marker))
        parts.append(
            f'<line x1="{_n(mx)}" y1="{_n(top - 6)}" x2="{_n(mx)}" y2="{_n(bottom)}" stroke="#b42318" '
            'stroke-width="1.5" stroke-dasharray="5 3"/>'
        )
        text = marker_label or format_tick(round(float(marker), 4))
        anchor = "end" if mx > width - 120 else ("start" if mx < 120 else "middle")
        parts.append(
            f'<text x="{_n(mx)}" y="{_n(top - 10)}" text-anchor="{anchor}" fill="#b42318" font-size="11">'
            f"{_esc(text)}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
