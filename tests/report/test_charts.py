"""The SVG charts: well-formed XML, labels and legends present and escaped, round ticks, empty and single values."""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import pytest

from equitune.report import charts

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("viewBox", "").startswith("0 0 ")
    return root


def texts(root: ET.Element) -> list[str]:
    """The text of every <text> element (without its tooltip)."""
    return [(t.text or "") for t in root.iter(f"{NS}text")]


def tooltips(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}title")]


def bars(root: ET.Element) -> list[ET.Element]:
    group = next(g for g in root.iter(f"{NS}g") if g.get("class") == "bars")
    return list(group.iter(f"{NS}rect"))


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        (0, 87, [0, 20, 40, 60, 80, 100]),
        (0, 100, [0, 20, 40, 60, 80, 100]),
        (0.1, 0.93, [0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        (-3.2, 13.0, [-5, 0, 5, 10, 15]),
        (120, 199, [120, 140, 160, 180, 200]),
    ],
)
def test_nice_ticks_are_round_and_cover_the_range(low: float, high: float, expected: list[float]) -> None:
    assert charts.nice_ticks(low, high) == pytest.approx(expected)


def test_nice_ticks_of_a_single_value_and_of_counts() -> None:
    ticks = charts.nice_ticks(5.0, 5.0)
    assert ticks[0] < 5.0 < ticks[-1]
    assert charts.nice_ticks(0.0, 0.0) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert charts.nice_ticks(0, 3, 5, integer=True) == [0, 1, 2, 3]
    assert (
        charts.format_tick(2.5) == "2.5" and charts.format_tick(-0.0) == "0" and charts.format_tick(12000) == "12,000"
    )


def test_bar_chart_has_a_bar_per_value_labels_legend_and_escaped_title() -> None:
    svg = charts.bar_chart(
        ["financial_accuracy", "technical_depth"],
        {"model <a>": [55.0, 48.12], "base & co": [30.2, None]},
        title="Scores <per> model & category",
        y_label="score",
        y_max=100,
    )
    root = parse(svg)
    assert tooltips(root)[0] == "Scores <per> model & category"
    shown = texts(root)
    assert {"model <a>", "base & co", "financial_accuracy", "technical_depth", "score"} <= set(shown)
    assert {"55.0", "48.1", "30.2"} <= set(shown)
    assert len(bars(root)) == 3  # the None value draws no bar
    assert "100" in shown and "120" not in shown  # the explicit maximum is the top tick
    assert svg == charts.bar_chart(
        ["financial_accuracy", "technical_depth"],
        {"model <a>": [55.0, 48.12], "base & co": [30.2, None]},
        title="Scores <per> model & category",
        y_label="score",
        y_max=100,
    )


def test_bar_chart_bar_heights_are_proportional() -> None:
    root = parse(charts.bar_chart(["a", "b"], {"s": [20.0, 40.0]}, title="t", y_max=100))
    heights = [float(r.get("height", "0")) for r in bars(root)]
    assert heights[1] == pytest.approx(2 * heights[0], rel=0.01)


@pytest.mark.parametrize(
    "svg",
    [
        charts.bar_chart([], {}, title="empty"),
        charts.bar_chart(["a"], {"s": [None]}, title="empty"),
        charts.error_bar_chart([], [], [], [], title="empty"),
        charts.histogram({"s": []}, bins=[0, 10, 20], title="empty"),
        charts.histogram({}, bins=[0, 10], title="empty"),
        charts.line_chart({}, title="empty"),
        charts.line_chart({"s": [(math.nan, 1.0)]}, title="empty"),
        charts.range_chart([], title="empty"),
    ],
)
def test_empty_input_says_no_data(svg: str) -> None:
    root = parse(svg)
    assert "no data" in texts(root)


def test_single_values_do_not_divide_by_zero() -> None:
    root = parse(charts.bar_chart(["only"], {"s": [0.0]}, title="zero"))
    assert "0.0" in texts(root)
    parse(charts.bar_chart(["only"], {"s": [7.0]}, title="one"))
    line = parse(charts.line_chart({"one": [(3.0, 3.0)]}, title="one point"))
    assert len(list(line.iter(f"{NS}circle"))) == 1
    parse(charts.histogram({"s": [50.0]}, bins=[0, 50, 100], title="one"))
    parse(charts.range_chart([("x", 10.0, 10.0, None)], title="flat"))
    parse(charts.error_bar_chart(["x"], [1.0], [1.0], [1.0], title="point"))


def test_bar_chart_rejects_a_series_of_the_wrong_length() -> None:
    with pytest.raises(ValueError, match="series 's' has 1 values for 2 categories"):
        charts.bar_chart(["a", "b"], {"s": [1.0]}, title="t")


def test_error_bar_chart_writes_each_interval_and_a_zero_line() -> None:
    svg = charts.error_bar_chart(
        ["Total score", "Technical depth"], [8.2, -2.0], [3.1, -6.5], [13.0, 1.5], title="Deltas", x_label="points"
    )
    root = parse(svg)
    shown = texts(root)
    assert {"Total score", "Technical depth", "points", "8.20 [3.10, 13.00]", "-2.00 [-6.50, 1.50]"} <= set(shown)
    assert "stroke-dasharray" in svg  # the zero line
    circles = list(root.iter(f"{NS}circle"))
    # The first interval excludes zero (filled point), the second does not (hollow).
    assert circles[0].get("fill") != "#ffffff" and circles[1].get("fill") == "#ffffff"
    with pytest.raises(ValueError, match="differ in length"):
        charts.error_bar_chart(["a"], [1.0, 2.0], [0.0], [3.0], title="t")


def test_histogram_counts_per_bin_with_the_last_edge_included() -> None:
    root = parse(
        charts.histogram(
            {"a": [0.0, 5.0, 10.0, 100.0, 150.0], "b": [95.0]},
            bins=[float(b) for b in range(0, 101, 10)],
            title="Distribution",
            x_label="score",
        )
    )
    tips = tooltips(root)
    assert "a: 2 in [0, 10)" in tips
    assert "a: 1 in [10, 20)" in tips
    assert "a: 1 in [90, 100]" in tips  # 100 falls in the last bin; 150 is outside and not counted
    assert "b: 1 in [90, 100]" in tips
    assert len(bars(root)) == 4
    assert {"a", "b", "score", "0", "100"} <= set(texts(root))
    with pytest.raises(ValueError, match="increase"):
        charts.histogram({"a": [1.0]}, bins=[0, 10, 5], title="t")


def test_line_chart_draws_a_polyline_per_series_with_legend_and_axes() -> None:
    series = {
        "train": [(float(step), 3.0 / (step + 1) + 0.5) for step in range(0, 200, 10)],
        "validation": [(0.0, 3.2), (100.0, 0.8), (190.0, 0.7)],
    }
    root = parse(charts.line_chart(series, title="Loss", x_label="step", y_label="loss", markers=True))
    lines = list(root.iter(f"{NS}polyline"))
    assert len(lines) == 2
    assert len(lines[0].get("points", "").split()) == 20
    assert len(list(root.iter(f"{NS}circle"))) == 23
    assert {"train", "validation", "step", "loss", "0", "200"} <= set(texts(root))


def test_range_chart_has_rows_values_and_marker() -> None:
    root = parse(
        charts.range_chart(
            [("DCF", 150.0, 210.0, 180.0), ("P/E peers", 190.0, 140.0, None)],
            title="Football field",
            x_label="price",
            marker=172.5,
            marker_label="current 172.50",
        )
    )
    shown = texts(root)
    assert {"DCF", "P/E peers", "current 172.50", "price"} <= set(shown)
    assert "P/E peers: 140 - 190" in tooltips(root)  # low and high are ordered
    assert len(list(root.iter(f"{NS}circle"))) == 1
