"""Offline HTML and Markdown building blocks: escaping, tables, sections and a complete self-contained page.

Everything here returns plain strings built with the standard library. A page carries its CSS inline and refers
to no script, font, stylesheet or image outside itself, so a report opens the same way with or without a network.
"""

from __future__ import annotations

import html as _html
import math
import re
from numbers import Real

__all__ = ["Raw", "esc", "markdown_table", "page", "pre", "section", "side_by_side", "table"]


class Raw(str):
    """A string of trusted HTML that ``esc`` and ``table`` insert unchanged (e.g. a chart or a link in a cell)."""

    __slots__ = ()


def esc(text: object) -> str:
    """HTML-escape ``text`` (converted with ``str``; ``None`` becomes the empty string), quotes included.

    A ``Raw`` value is returned unchanged, so already-built markup can pass through helpers that escape.
    """
    if text is None:
        return ""
    if isinstance(text, Raw):
        return str(text)
    return _html.escape(str(text), quote=True)


def _cell_text(value: object) -> str:
    """The text of one table cell: ``None`` and non-finite numbers as "n/a", floats with two decimals."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:,.2f}"
    return str(value)


def table(
    headers: list[str], rows: list[list[object]], *, numeric: set[int] | None = None, caption: str | None = None
) -> str:
    """An HTML table of ``rows`` under ``headers``, every cell escaped (``Raw`` cells are inserted as they are).

    Columns whose indices are in ``numeric`` are right-aligned with tabular figures. ``None`` cells read "n/a",
    floats are shown with two decimals and booleans as yes/no; format a value yourself for any other style.
    """
    numeric = numeric or set()
    parts = ['<table class="data">']
    if caption:
        parts.append(f"<caption>{esc(caption)}</caption>")
    head = "".join(
        f'<th class="num">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>" for i, h in enumerate(headers)
    )
    parts.append(f"<thead><tr>{head}</tr></thead><tbody>")
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            content = str(value) if isinstance(value, Raw) else esc(_cell_text(value))
            cells.append(f'<td class="num">{content}</td>' if i in numeric else f"<td>{content}</td>")
        parts.append(f"<tr>{''.join(cells)}</tr>")
    parts.append("</tbody></table>")
    return "".join(parts)


def _md_cell(value: object) -> str:
    # A pipe would end the cell and a newline the row; both are neutralised.
    return _cell_text(value).replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


# A formatted number as a cell holds it: "70.6", "-1,234", "+18.8", "12.5%", "72.5 (3)".
_NUMBER_TEXT = re.compile(r"^[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?%?(?: \(\d+\))?$")


def _is_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, Real) or (isinstance(value, str) and bool(_NUMBER_TEXT.match(value)))


def markdown_table(headers: list[str], rows: list[list[object]]) -> str:
    """A GitHub-flavoured Markdown table, pipes in cells escaped; columns of numbers are right-aligned.

    A column counts as numeric when every cell that is not ``None`` or "n/a" is a number or a formatted number
    (such as "70.6", "+18.8" or "12.5%").

    Cells follow the same formatting as ``table`` (``None`` as "n/a", floats with two decimals). The result ends
    with a newline.
    """
    align = []
    for i in range(len(headers)):
        values = [row[i] for row in rows if i < len(row) and row[i] is not None and row[i] != "n/a"]
        is_number = bool(values) and all(_is_number(v) for v in values)
        align.append("---:" if is_number else "---")
    lines = [
        "| " + " | ".join(_md_cell(h) for h in headers) + " |",
        "| " + " | ".join(align) + " |",
    ]
    for row in rows:
        cells = [_md_cell(v) for v in row] + [""] * (len(headers) - len(row))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def section(title: str, body: str, *, level: int = 2) -> str:
    """A ``<section>`` with an escaped heading of ``level`` (clamped to 1-6) followed by ``body`` (trusted HTML)."""
    level = min(6, max(1, level))
    return f"<section><h{level}>{esc(title)}</h{level}>\n{body}\n</section>\n"


def pre(text: str) -> str:
    """An escaped, wrapped preformatted block, for model outputs and other verbatim text."""
    return f'<pre class="text">{esc(text)}</pre>'


def side_by_side(left_title: str, left: str, right_title: str, right: str) -> str:
    """Two escaped texts in columns under their titles (stacked on narrow screens and in print)."""
    return (
        '<div class="side-by-side">'
        f'<div class="col"><h4>{esc(left_title)}</h4>{pre(left)}</div>'
        f'<div class="col"><h4>{esc(right_title)}</h4>{pre(right)}</div>'
        "</div>"
    )


_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 1100px; padding: 24px 28px 48px; color: #1f2328; background: #fff;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
h1 { font-size: 1.7em; margin: 0 0 4px; }
h2 { font-size: 1.3em; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid #d0d7de; }
h3 { font-size: 1.1em; margin: 22px 0 8px; }
h4 { font-size: 0.95em; margin: 10px 0 6px; }
p.subtitle { color: #57606a; margin: 0 0 20px; }
table.data { border-collapse: collapse; margin: 10px 0 18px; font-size: 0.92em; }
table.data caption { text-align: left; font-weight: 600; padding: 4px 0; }
table.data th, table.data td { border: 1px solid #d0d7de; padding: 4px 9px; text-align: left; vertical-align: top; }
table.data th { background: #f6f8fa; }
table.data .num { text-align: right; font-variant-numeric: tabular-nums; }
table.data tbody tr:nth-child(even) { background: #fafbfc; }
pre.text { white-space: pre-wrap; word-wrap: break-word; background: #f6f8fa; border: 1px solid #d0d7de;
  border-radius: 4px; padding: 10px 12px; font: 12.5px/1.45 ui-monospace, Menlo, Consolas, monospace; }
.side-by-side { display: flex; gap: 16px; }
.side-by-side .col { flex: 1 1 0; min-width: 0; }
details { border: 1px solid #d0d7de; border-radius: 4px; padding: 6px 10px; margin: 8px 0; }
details > summary { cursor: pointer; font-weight: 600; }
figure.chart { margin: 12px 0 20px; }
figure.chart svg { max-width: 100%; height: auto; }
.muted { color: #57606a; }
.fail { color: #b42318; }
.pass { color: #1a7f37; }
@media (max-width: 760px) { .side-by-side { flex-direction: column; } }
@media print {
  body { max-width: none; padding: 0; font-size: 11pt; }
  h2 { break-after: avoid; }
  table.data, figure.chart, pre.text { break-inside: avoid; }
  details { border: none; padding: 0; }
  details > summary { list-style: none; }
  .side-by-side { flex-direction: column; }
}
"""


def page(title: str, body: str, *, subtitle: str | None = None) -> str:
    """A complete offline HTML5 document: charset, viewport, inline print-friendly CSS, escaped title, ``body``.

    The page references nothing outside itself (no script, font, stylesheet or image URL), so it renders the same
    offline; ``body`` is inserted as trusted HTML.
    """
    sub = f'<p class="subtitle">{esc(subtitle)}</p>\n' if subtitle else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        f"<header><h1>{esc(title)}</h1>\n{sub}</header>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
