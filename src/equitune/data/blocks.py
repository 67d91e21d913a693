"""The compact data block a prompt carries: the company's figures and the engine's outputs, as text.

The same builders serve training prompts and, at inference, the report generator, so the model always
sees its facts written the same way. Every figure is written with ``equitune.formatting``; a missing figure
is written "n/a", never invented.
"""

from __future__ import annotations

from equitune.data.context import ExampleContext
from equitune.formatting import fmt_bp, fmt_money, fmt_multiple, fmt_pct, fmt_price
from equitune.market.models import FiscalYear

NA = "n/a"


def money(value: float | None) -> str:
    """Millions as $391.0B / $850M, or n/a."""
    return NA if value is None else fmt_money(value)


def price(value: float | None) -> str:
    """Per-share amount as $250.42, or n/a."""
    return NA if value is None else fmt_price(value)


def pct(value: float | None, signed: bool = False) -> str:
    """Fraction as 12.3% (or +12.3%), or n/a."""
    return NA if value is None else fmt_pct(value, signed=signed)


def mult(value: float | None) -> str:
    """Ratio as 12.3x, or n/a."""
    return NA if value is None else fmt_multiple(value)


def bp(value: float) -> str:
    """Rate shift as +100 bp."""
    return fmt_bp(value)


def rating_word(ctx: ExampleContext) -> str:
    """BUY / HOLD / SELL (or NOT RATED)."""
    return ctx.rating.upper()


def header_line(ctx: ExampleContext) -> str:
    c = ctx.company
    beta = f"{c.beta:.2f}" if c.beta is not None else NA
    return (
        f"Company: {c.name} ({c.ticker}) | {c.sector} / {c.sub_industry}\n"
        f"Source: {c.source}\n"
        f"Price: {price(ctx.analysis.market.price)} on {c.price_date} | Market cap: "
        f"{money(ctx.analysis.market.market_cap)} | Diluted shares: {ctx.analysis.market.diluted_shares:,.1f}M | "
        f"Beta: {beta}"
    )


def fiscal_line(fy: FiscalYear, growth: float | None = None) -> str:
    growth_text = f" ({pct(growth, signed=True)})" if growth is not None else ""
    return (
        f"FY{fy.fiscal_year}: revenue {money(fy.revenue)}{growth_text}, gross profit {money(fy.gross_profit)}, "
        f"operating income {money(fy.operating_income)}, EBITDA {money(fy.ebitda)}, net income "
        f"{money(fy.net_income)}, diluted EPS {price(fy.eps_diluted)}, operating cash flow "
        f"{money(fy.operating_cash_flow)}, capex {money(fy.capex)}, FCF {money(fy.free_cash_flow)}, cash "
        f"{money(fy.cash)}, total debt {money(fy.total_debt)}, equity {money(fy.total_equity)}, dividends/share "
        f"{price(fy.dividends_per_share)}"
    )


def fiscal_lines(ctx: ExampleContext) -> str:
    latest = fiscal_line(ctx.company.latest, ctx.analysis.ratios.revenue_growth)
    prior = ctx.company.prior
    return latest if prior is None else f"{latest}\n{fiscal_line(prior)}"


def ratios_line(ctx: ExampleContext) -> str:
    r = ctx.analysis.ratios
    return (
        f"Ratios FY{r.fiscal_year}: gross margin {pct(r.gross_margin)}, operating margin {pct(r.operating_margin)}, "
        f"EBITDA margin {pct(r.ebitda_margin)}, net margin {pct(r.net_margin)}, FCF margin {pct(r.fcf_margin)}, "
        f"ROE {pct(r.roe)}, ROA {pct(r.roa)}, ROIC {pct(r.roic)}, net debt {money(r.net_debt)}, "
        f"net debt/EBITDA {mult(r.net_debt_to_ebitda)}, interest coverage {mult(r.interest_coverage)}, "
        f"FCF conversion {pct(r.fcf_conversion)}, EBITDA growth {pct(r.ebitda_growth, signed=True)}, "
        f"EPS growth {pct(r.eps_growth, signed=True)}"
    )


def wacc_line(ctx: ExampleContext) -> str:
    w = ctx.analysis.wacc
    return (
        f"WACC {pct(w.wacc)}: risk-free {pct(w.risk_free_rate)}, equity risk premium "
        f"{pct(w.equity_risk_premium)}, beta {w.beta:.2f}, cost of equity {pct(w.cost_of_equity)}, after-tax "
        f"cost of debt {pct(w.after_tax_cost_of_debt)}, tax rate {pct(w.tax_rate)}, debt weight {pct(w.debt_weight)}"
    )


def dcf_line(ctx: ExampleContext) -> str:
    d = ctx.analysis.dcf
    if d is None:
        return f"DCF: not computed ({ctx.analysis.dcf_error})"
    i = d.inputs
    last = d.projection[-1]
    meaningful = "" if d.meaningful else " (not meaningful: negative value)"
    return (
        f"DCF ({i.projection_years} years): year-1 revenue growth {pct(i.initial_growth)} fading to "
        f"{pct(i.terminal_growth)} by FY{last.fiscal_year}E, FCF margin {pct(i.fcf_margin)}, terminal growth "
        f"{pct(i.terminal_growth)}, PV of FCF {money(d.sum_pv_fcf)}, PV of terminal value "
        f"{money(d.pv_terminal_value)}, enterprise value {money(d.enterprise_value)}, equity value "
        f"{money(d.equity_value)}, value per share {price(d.value_per_share)}{meaningful}; exit-multiple "
        f"cross-check at {mult(i.exit_multiple)} EV/EBITDA gives terminal value {money(d.terminal_value_exit)}"
    )


def sensitivity_block(ctx: ExampleContext) -> str:
    d = ctx.analysis.dcf
    if d is None or d.sensitivity is None:
        return "Sensitivity: n/a"
    s = d.sensitivity
    head = "| WACC \\ g | " + " | ".join(pct(g) for g in s.terminal_growth_values) + " |"
    rule = "|---" * (len(s.terminal_growth_values) + 1) + "|"
    rows = [
        f"| {pct(w)} | " + " | ".join(price(v) for v in s.values[i]) + " |" for i, w in enumerate(s.wacc_values)
    ]
    return "Sensitivity (DCF value per share):\n" + "\n".join([head, rule, *rows])


_MULTIPLE_NAMES = {"ev_ebitda": "EV/EBITDA", "pe": "P/E", "ev_sales": "EV/Sales"}


def comps_block(ctx: ExampleContext, max_peers: int = 6) -> str:
    c = ctx.analysis.comparables
    peers = sorted(c.peers, key=lambda p: -p.market_cap)[:max_peers]
    lines = [f"Peers ({c.group}): " + "; ".join(
        f"{p.ticker} EV/EBITDA {mult(p.ev_ebitda)}, P/E {mult(p.pe)}, EV/Sales {mult(p.ev_sales)}" for p in peers
    )]
    for m in c.multiples:
        lines.append(
            f"{_MULTIPLE_NAMES[m.multiple]}: peer median {mult(m.median)} (Q1 {mult(m.low)}, Q3 {mult(m.high)}), "
            f"{ctx.ticker} {mult(m.company_multiple)}, implied value {price(m.implied_value_per_share)}"
        )
    lines.append(f"Comparables value per share: {price(c.value_per_share)}")
    return "\n".join(lines)


def target_line(ctx: ExampleContext) -> str:
    t = ctx.analysis.target
    a = ctx.analysis.assumptions
    return (
        f"DCF value per share {price(t.dcf_value_per_share)}, comparables value per share "
        f"{price(t.comps_value_per_share)}. "
        f"Price target {price(t.price_target)} ({t.blend}) vs price {price(t.price)}: upside "
        f"{pct(t.upside, signed=True)}; rating {rating_word(ctx)} (Buy at or above {pct(a.buy_threshold, signed=True)}"
        f" upside, Sell below {pct(a.sell_threshold, signed=True)})"
    )


def scenarios_line(ctx: ExampleContext) -> str:
    parts = []
    for s in ctx.analysis.scenarios:
        parts.append(
            f"{s.name} {price(s.value_per_share)} ({pct(s.upside, signed=True)}; growth {pct(s.initial_growth)}, "
            f"FCF margin {pct(s.fcf_margin)}, WACC {pct(s.wacc)})"
        )
    return "Scenarios: " + "; ".join(parts)


def estimates_block(ctx: ExampleContext) -> str:
    e = ctx.estimates
    rows = []
    for y in (e.reported, e.next_year):
        label = f"FY{y.fiscal_year}{'E' if y.estimate else ''}"
        rows.append(
            f"{label}: revenue {money(y.revenue)}, growth {pct(y.revenue_growth, signed=True)}, EBITDA margin "
            f"{pct(y.ebitda_margin)}, EPS {price(y.eps)}, P/E {mult(y.pe)}"
        )
    return "Estimates (" + e.method + "):\n" + "\n".join(rows)


def condition_line(ctx: ExampleContext) -> str | None:
    """What the market condition changed and its computed effect (None in the base case)."""
    if ctx.is_base:
        return None
    cond, base, now = ctx.condition, ctx.base, ctx.analysis
    shifts = []
    if cond.risk_free_shift:
        shifts.append(f"risk-free rate {bp(cond.risk_free_shift)} to {pct(now.wacc.risk_free_rate)}")
    if cond.equity_risk_premium_shift:
        shifts.append(f"equity risk premium {bp(cond.equity_risk_premium_shift)} to {pct(now.wacc.equity_risk_premium)}")
    if cond.revenue_growth_shift and now.dcf is not None:
        shifts.append(f"year-1 revenue growth {bp(cond.revenue_growth_shift)} to {pct(now.dcf.inputs.initial_growth)}")
    if cond.fcf_margin_shift and now.dcf is not None:
        shifts.append(f"FCF margin {bp(cond.fcf_margin_shift)} to {pct(now.dcf.inputs.fcf_margin)}")
    return (
        f"Market condition: {cond.title} ({'; '.join(shifts)}). Base case: WACC {pct(base.wacc.wacc)}, target "
        f"{price(base.target.price_target)}, rating {(base.target.rating or 'Not rated').upper()}. Under this "
        f"condition: WACC {pct(now.wacc.wacc)}, target {price(now.target.price_target)}, rating {rating_word(ctx)}."
    )


def data_block(ctx: ExampleContext, sections: list[str]) -> str:
    """The prompt's data block from named sections (header, fiscal, ratios, wacc, dcf, sensitivity, comps,
    target, scenarios, estimates, condition); unknown names are an error."""
    builders = {
        "header": header_line,
        "fiscal": fiscal_lines,
        "ratios": ratios_line,
        "wacc": wacc_line,
        "dcf": dcf_line,
        "sensitivity": sensitivity_block,
        "comps": comps_block,
        "target": target_line,
        "scenarios": scenarios_line,
        "estimates": estimates_block,
        "condition": condition_line,
    }
    parts = []
    for name in sections:
        text = builders[name](ctx)
        if text:
            parts.append(text)
    return "DATA\n" + "\n".join(parts)
