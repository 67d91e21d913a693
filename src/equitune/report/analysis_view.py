"""Terminal view of a ``CompanyAnalysis``: every figure the engine computed, with its assumptions."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from equitune.formatting import fmt_money, fmt_multiple, fmt_pct, fmt_price

if TYPE_CHECKING:
    from equitune.finance.analysis import CompanyAnalysis


def _pct(value: float | None, signed: bool = False) -> str:
    return "n/a" if value is None else fmt_pct(value, signed=signed)


def _x(value: float | None) -> str:
    return "n/a" if value is None else fmt_multiple(value)


def _money(value: float | None) -> str:
    return "n/a" if value is None else fmt_money(value)


def _price(value: float | None) -> str:
    return "n/a" if value is None else fmt_price(value)


def _kv_table(title: str, rows: list[tuple[str, str]]) -> Table:
    table = Table(title=title, show_header=False, title_justify="left", expand=False)
    table.add_column("item")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(key, value)
    return table


def ratios_table(a: CompanyAnalysis) -> Table:
    """Profitability, returns, leverage, cash generation and growth for the latest fiscal year."""
    r = a.ratios
    return _kv_table(
        f"Financial ratios, FY{r.fiscal_year}",
        [
            ("Gross margin", _pct(r.gross_margin)),
            ("Operating margin", _pct(r.operating_margin)),
            ("EBITDA margin", _pct(r.ebitda_margin)),
            ("Net margin", _pct(r.net_margin)),
            ("FCF margin", _pct(r.fcf_margin)),
            ("ROE", _pct(r.roe)),
            ("ROA", _pct(r.roa)),
            ("ROIC", _pct(r.roic)),
            ("Net debt", _money(r.net_debt)),
            ("Net debt / EBITDA", _x(r.net_debt_to_ebitda)),
            ("Interest coverage", _x(r.interest_coverage)),
            ("FCF conversion (FCF / net income)", _pct(r.fcf_conversion)),
            (f"Revenue growth vs FY{r.prior_fiscal_year}", _pct(r.revenue_growth, signed=True)),
            ("EBITDA growth", _pct(r.ebitda_growth, signed=True)),
            ("EPS growth", _pct(r.eps_growth, signed=True)),
        ],
    )


def wacc_table(a: CompanyAnalysis) -> Table:
    """CAPM inputs, cost of debt, weights and the WACC, with where each input came from."""
    w = a.wacc
    return _kv_table(
        "WACC",
        [
            ("Risk-free rate", _pct(w.risk_free_rate)),
            ("Equity risk premium", _pct(w.equity_risk_premium)),
            (f"Beta ({w.beta_source})", f"{w.beta:.2f}"),
            ("Cost of equity (CAPM)", _pct(w.cost_of_equity)),
            (f"Pre-tax cost of debt ({w.cost_of_debt_source})", _pct(w.pre_tax_cost_of_debt)),
            (f"Tax rate ({w.tax_rate_source})", _pct(w.tax_rate)),
            ("After-tax cost of debt", _pct(w.after_tax_cost_of_debt)),
            ("Equity weight", _pct(w.equity_weight)),
            ("Debt weight", _pct(w.debt_weight)),
            ("WACC", _pct(w.wacc)),
        ],
    )


def dcf_tables(a: CompanyAnalysis) -> list[Table]:
    """Projection, terminal values, the equity bridge and the WACC x terminal-growth sensitivity table."""
    if a.dcf is None:
        return [_kv_table("DCF", [("not computed", a.dcf_error or "")])]
    d = a.dcf
    projection = Table(title="DCF projection", title_justify="left")
    for column in ("Year", "Revenue growth", "Revenue", "FCF", "Discount factor", "PV of FCF"):
        projection.add_column(column, justify="right")
    for p in d.projection:
        projection.add_row(
            f"FY{p.fiscal_year}E",
            _pct(p.revenue_growth, signed=True),
            _money(p.revenue),
            _money(p.free_cash_flow),
            f"{p.discount_factor:.3f}",
            _money(p.present_value),
        )
    i = d.inputs
    bridge = _kv_table(
        "DCF valuation",
        [
            (f"Year-1 revenue growth ({i.initial_growth_source})", _pct(i.initial_growth)),
            (f"FCF margin ({i.fcf_margin_source})", _pct(i.fcf_margin)),
            ("Terminal growth", _pct(i.terminal_growth)),
            (f"Exit EV/EBITDA ({i.exit_multiple_source})", _x(i.exit_multiple)),
            ("Sum of PV of FCF", _money(d.sum_pv_fcf)),
            ("Terminal value, Gordon growth", _money(d.terminal_value_gordon)),
            ("Terminal value, exit multiple", _money(d.terminal_value_exit)),
            (f"Terminal value used ({d.terminal_value_method})", _money(d.terminal_value)),
            ("PV of terminal value", _money(d.pv_terminal_value)),
            ("Enterprise value", _money(d.enterprise_value)),
            ("less total debt", _money(d.total_debt)),
            ("plus cash", _money(d.cash)),
            ("Equity value", _money(d.equity_value)),
            (
                "DCF value per share",
                _price(d.value_per_share) + ("" if d.meaningful else " (not meaningful)"),
            ),
        ],
    )
    tables = [projection, bridge]
    if d.sensitivity is not None:
        s = d.sensitivity
        grid = Table(
            title="Sensitivity: value per share, WACC (rows) x terminal growth (columns)",
            title_justify="left",
        )
        grid.add_column("WACC \\ g", justify="right")
        for g in s.terminal_growth_values:
            grid.add_column(_pct(g), justify="right")
        for row, w in enumerate(s.wacc_values):
            cells = [
                ("[bold]" + _price(v) + "[/bold]") if (row, col) == (s.base_row, s.base_column) else _price(v)
                for col, v in enumerate(s.values[row])
            ]
            grid.add_row(_pct(w), *cells)
        tables.append(grid)
    return tables


def comparables_table(a: CompanyAnalysis) -> list[Table]:
    """Peers with their multiples, and the peer statistics and implied values per multiple."""
    c = a.comparables
    peers = Table(
        title=f"Comparables: {len(c.peers)} peers ({c.basis.replace('_', '-')}: {c.group})",
        title_justify="left",
    )
    for column in ("Peer", "Mkt cap", "EV", "EV/EBITDA", "P/E", "EV/Sales"):
        peers.add_column(column, justify="right" if column != "Peer" else "left")
    for p in c.peers:
        peers.add_row(
            p.ticker,
            _money(p.market_cap),
            _money(p.enterprise_value),
            _x(p.ev_ebitda),
            _x(p.pe),
            _x(p.ev_sales),
        )
    summary = Table(title="Peer multiples and implied value per share", title_justify="left")
    for column in ("Multiple", "Peers", "Q1", "Median", "Q3", f"{a.ticker}", "Implied value", "Weight"):
        summary.add_column(column, justify="right" if column != "Multiple" else "left")
    names = {"ev_ebitda": "EV/EBITDA", "pe": "P/E", "ev_sales": "EV/Sales", "pb": "P/B"}
    for m in c.multiples:
        summary.add_row(
            names.get(m.multiple, m.multiple),
            str(m.peer_count),
            _x(m.low),
            _x(m.median),
            _x(m.high),
            _x(m.company_multiple),
            _price(m.implied_value_per_share),
            _pct(m.effective_weight),
        )
    summary.caption = f"Comparables value per share: {_price(c.value_per_share)}. {c.combination_method}"
    return [peers, summary]


def target_table(a: CompanyAnalysis) -> Table:
    """Price target, upside, rating and the bear / base / bull scenarios."""
    t = a.target
    table = Table(title="Price target and scenarios", title_justify="left")
    for column in ("", "Value per share", "Upside", "Growth", "FCF margin", "WACC"):
        table.add_column(column, justify="right" if column else "left")
    for s in a.scenarios:
        table.add_row(
            s.name.capitalize(),
            _price(s.value_per_share),
            _pct(s.upside, signed=True),
            _pct(s.initial_growth),
            _pct(s.fcf_margin),
            _pct(s.wacc),
        )
    table.caption = f"{t.blend} Rating bands: {t.rating_bands}"
    return table


def render_analysis(a: CompanyAnalysis, console: Console) -> None:
    """Print the analysis: headline, ratios, WACC, DCF with sensitivity, comparables, target, caveats."""
    t = a.target
    headline = (
        f"[bold]{a.name} ({a.ticker})[/bold] · {a.sector} / {a.sub_industry}\n"
        f"Price {_price(t.price)} on {a.price_date} · market cap {_money(a.market.market_cap)} · "
        f"FY{a.fiscal_year} · source: {a.source}\n"
        f"[bold]Rating {t.rating or 'n/a'}[/bold] · price target {_price(t.price_target)} "
        f"({_pct(t.upside, signed=True)}) · DCF {_price(t.dcf_value_per_share)} · "
        f"comparables {_price(t.comps_value_per_share)} · method {t.method}"
    )
    if a.reverse_dcf is not None:
        headline += f"\n{escape(a.reverse_dcf.statement())}"
    console.print(Panel(headline, title="equitune analyze", expand=False))
    console.print(Group(ratios_table(a), wacc_table(a)))
    for table in dcf_tables(a):
        console.print(table)
    for table in comparables_table(a):
        console.print(table)
    console.print(target_table(a))
    if a.warnings:
        console.print("[yellow]Caveats:[/yellow]")
        for warning in a.warnings:
            console.print(f"  - {warning}", highlight=False)
    if a.data_notes:
        console.print("[dim]Data notes:[/dim]")
        for note in a.data_notes:
            console.print(f"  - {note}", style="dim", highlight=False)
