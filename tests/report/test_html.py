"""HTML and Markdown helpers: escaping, tables, and a page that references nothing outside itself."""

from __future__ import annotations

import re

from equitune.report import charts
from equitune.report.html import Raw, esc, markdown_table, page, pre, section, side_by_side, table

EXTERNAL = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*(?:https?:|//)""", re.IGNORECASE)


def test_esc_escapes_markup_and_quotes() -> None:
    assert esc('<a href="x">&\'') == "&lt;a href=&quot;x&quot;&gt;&amp;&#x27;"
    assert esc(None) == ""
    assert esc(3.5) == "3.5"
    assert esc(Raw("<b>kept</b>")) == "<b>kept</b>"


def test_table_escapes_cells_formats_values_and_aligns_numbers() -> None:
    html = table(["Name", "Score"], [["<m>", 61.234], [None, True]], numeric={1}, caption="A & B")
    assert "<caption>A &amp; B</caption>" in html
    assert '<th class="num">Score</th>' in html
    assert "<td>&lt;m&gt;</td>" in html
    assert '<td class="num">61.23</td>' in html
    assert "<td>n/a</td>" in html and '<td class="num">yes</td>' in html
    assert "<td><i>x</i></td>" in table(["a"], [[Raw("<i>x</i>")]])


def test_markdown_table_escapes_pipes_and_right_aligns_numbers() -> None:
    text = markdown_table(["Name", "Value"], [["a|b", 1.5], ["line\nbreak", None], ["c", 2]])
    assert text.splitlines() == [
        "| Name | Value |",
        "| --- | ---: |",
        "| a\\|b | 1.50 |",
        "| line break | n/a |",
        "| c | 2 |",
    ]


def test_page_is_complete_and_offline() -> None:
    chart = charts.bar_chart(["a", "b"], {"x": [1.0, 2.0], "y": [2.0, 1.0]}, title="Chart")
    body = section("Results <1>", f'<figure class="chart">{chart}</figure>' + pre("<script>alert(1)</script>"))
    html = page("Run <x>", body, subtitle="benchmark & co")
    assert html.startswith("<!DOCTYPE html>")
    assert '<meta charset="utf-8">' in html
    assert "<title>Run &lt;x&gt;</title>" in html
    assert '<p class="subtitle">benchmark &amp; co</p>' in html
    assert "<h2>Results &lt;1&gt;</h2>" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in html
    assert not EXTERNAL.search(html)
    for marker in ("<link", "@import", "url(", "<img"):
        assert marker not in html
    assert "@media print" in html
    assert html.rstrip().endswith("</html>")


def test_section_level_is_clamped_and_side_by_side_escapes_both_texts() -> None:
    assert section("T", "body", level=9).startswith("<section><h6>T</h6>")
    assert section("T", "body", level=0).startswith("<section><h1>T</h1>")
    both = side_by_side("Fine-tuned <v1>", "a < b", "Base", "c & d")
    assert "<h4>Fine-tuned &lt;v1&gt;</h4>" in both
    assert "a &lt; b" in both and "c &amp; d" in both
    assert pre("x\n<y>") == '<pre class="text">x\n&lt;y&gt;</pre>'
