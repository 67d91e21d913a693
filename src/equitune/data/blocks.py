"""The compact data block a prompt carries: the company's figures and the engine's outputs, as text.

The same builders serve training prompts and, at inference, the report generator, so the model always
sees its facts written the same way. Every figure is written with ``equitune.formatting``; a missing figure
is written "n/a", never invented.
"""

from __future__ import annotations

import re

from equitune.data.context import ExampleContext
from equitune.finance.analysis import CompanyAnalysis
from equitune.finance.dcf import SensitivityTable
from equitune.finance.industry import GroupMetrics, PeerFigures, Rank
from equitune.formatting import fmt_bp, fmt_money, fmt_multiple, fmt_pct, fmt_price
from equitune.market.models import FiscalYear

NA = "n/a"

_DATA_LINE = re.compile(r"(?m)^DATA\s*$")


def split_prompt(prompt: str) -> tuple[str, str | None]:
    """A prompt built with ``data_block`` cut at its ``DATA`` line: (the instruction before it, the block after
    it); the block is None when the prompt has no DATA line."""
    match = _DATA_LINE.search(prompt)
    if match is None:
        return prompt, None
    return prompt[: match.start()], prompt[match.end() :]


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


def institution_fiscal_line(fy: FiscalYear, growth: float | None = None) -> str:
    """A bank's or insurer's year: the lines its economics run on (no gross profit, EBITDA or capex)."""
    growth_text = f" ({pct(growth, signed=True)})" if growth is not None else ""
    parts = [f"FY{fy.fiscal_year}: revenue {money(fy.revenue)}{growth_text}"]
    if fy.net_interest_income is not None:
        parts.append(f"net interest income {money(fy.net_interest_income)}")
    if fy.provision_for_credit_losses is not None:
        parts.append(f"provision for credit losses {money(fy.provision_for_credit_losses)}")
    parts += [
        f"pretax income {money(fy.pretax_income)}",
        f"net income {money(fy.net_income)}",
        f"diluted EPS {price(fy.eps_diluted)}",
        f"equity {money(fy.total_equity)}",
        f"common equity {money(fy.common_equity)}",
    ]
    if fy.tangible_common_equity is not None:
        parts.append(f"tangible common equity {money(fy.tangible_common_equity)}")
    parts.append(f"total assets {money(fy.total_assets)}")
    if fy.cet1_ratio is not None:
        parts.append(f"CET1 ratio {pct(fy.cet1_ratio)}")
    parts.append(f"dividends/share {price(fy.dividends_per_share)}")
    return ", ".join(parts)


def fiscal_lines(ctx: ExampleContext) -> str:
    line = institution_fiscal_line if ctx.company.institution is not None else fiscal_line
    latest = line(ctx.company.latest, ctx.analysis.ratios.revenue_growth)
    prior = ctx.company.prior
    return latest if prior is None else f"{latest}\n{line(prior)}"


def ratios_line(ctx: ExampleContext) -> str:
    r = ctx.analysis.ratios
    if ctx.company.institution is not None:
        parts = [f"Ratios FY{r.fiscal_year}: pretax margin {pct(r.pretax_margin)}", f"net margin {pct(r.net_margin)}"]
        if ctx.company.institution == "bank":
            parts += [
                f"net interest income / revenue {pct(r.nii_share)}",
                f"net interest income growth {pct(r.nii_growth, signed=True)}",
                f"provision / net interest income {pct(r.provision_to_nii)}",
            ]
        parts += [
            f"ROE {pct(r.roe)}",
            f"ROA {pct(r.roa)}",
            f"equity / assets {pct(r.equity_to_assets)}",
            f"dividend payout {pct(r.dividend_payout)}",
            f"EPS growth {pct(r.eps_growth, signed=True)}",
        ]
        return ", ".join(parts)
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
    an = ctx.analysis
    if an.excess_return is not None:
        e = an.excess_return
        return (
            f"Method: excess-return (justified P/B), {an.method_reason}. Book value per share "
            f"{price(e.book_value_per_share)}, ROE {pct(e.roe)}, cost of equity {pct(e.cost_of_equity)}, ROE less cost "
            f"of equity {pct(e.roe_spread, signed=True)}, growth "
            f"{pct(e.growth)}, justified P/B {mult(e.justified_pb)} against {mult(e.current_pb)} at the price, "
            f"value per share {price(e.value_per_share) if e.meaningful else 'excluded (not positive)'}"
        )
    if an.dividend_discount is not None:
        m = an.dividend_discount
        return (
            f"Method: dividend-discount, {an.method_reason}. Dividend per share {price(m.dividend)}, payout "
            f"{pct(m.payout_ratio)}, growth {pct(m.initial_growth)} for {an.assumptions.high_growth_years} years "
            "fading to "
            f"{pct(m.terminal_growth)} by year {an.assumptions.explicit_years}, cost of equity "
            f"{pct(m.cost_of_equity)}, "
            f"final explicit-year dividend {price(m.projection[-1].dividend)}, PV of explicit-period dividends "
            f"{price(m.pv_dividends)}, PV of terminal value {price(m.pv_terminal_value_per_share)}, "
            f"value per share {price(m.value_per_share) if m.meaningful else 'excluded (not positive)'}"
        )
    d = an.dcf
    if d is None:
        return f"DCF: not computed ({an.dcf_error})"
    i = d.inputs
    last = d.projection[-1]
    if not d.meaningful:
        # A negative or meaningless DCF is excluded with its reason; its values are never printed.
        return (
            f"DCF ({i.projection_years} years): year-1 revenue growth {pct(i.initial_growth)} fading to "
            f"{pct(i.terminal_growth)} by FY{last.fiscal_year}E, FCF margin {pct(i.fcf_margin)}, terminal growth "
            f"{pct(i.terminal_growth)}; excluded from the target: {ctx.analysis.target.excluded[0].split(': ', 1)[-1]}"
        )
    meaningful = ""
    return (
        f"DCF ({i.projection_years} years): year-1 revenue growth {pct(i.initial_growth)} fading to "
        f"{pct(i.terminal_growth)} by FY{last.fiscal_year}E, FCF margin {pct(i.fcf_margin)}, terminal growth "
        f"{pct(i.terminal_growth)}, PV of FCF {money(d.sum_pv_fcf)}, PV of terminal value "
        f"{money(d.pv_terminal_value)}, enterprise value {money(d.enterprise_value)}, equity value "
        f"{money(d.equity_value)}, value per share {price(d.value_per_share)}{meaningful}; exit-multiple "
        f"cross-check at {mult(i.exit_multiple)} EV/EBITDA gives terminal value {money(d.terminal_value_exit)}"
    )


def implied_line(ctx: ExampleContext) -> str:
    """What the share price implies (reverse DCF, or the sector model's implied ROE / dividend growth)."""
    return ctx.analysis.implied or "Implied by the price: n/a"


def sensitivity_table_of(ctx: ExampleContext) -> tuple[SensitivityTable | None, str, str]:
    """The sensitivity table of the method used, its row label and its title."""
    an = ctx.analysis
    model = an.excess_return or an.dividend_discount
    if model is not None:
        return model.sensitivity, "Cost of equity \\ g", f"{an.target.intrinsic_label} value per share"
    d = an.dcf
    if d is None or not d.meaningful:
        return None, "", ""
    return d.sensitivity, "WACC \\ g", "DCF value per share"


def sensitivity_block(ctx: ExampleContext) -> str:
    s, corner, title = sensitivity_table_of(ctx)
    if s is None:
        return "Sensitivity: n/a"
    head = f"| {corner} | " + " | ".join(pct(g) for g in s.terminal_growth_values) + " |"
    rule = "|---" * (len(s.terminal_growth_values) + 1) + "|"
    rows = [f"| {pct(w)} | " + " | ".join(price(v) for v in s.values[i]) + " |" for i, w in enumerate(s.wacc_values)]
    return f"Sensitivity ({title}):\n" + "\n".join([head, rule, *rows])


_MULTIPLE_NAMES = {"ev_ebitda": "EV/EBITDA", "pe": "P/E", "ev_sales": "EV/Sales", "pb": "P/B"}


def comps_block(ctx: ExampleContext, max_peers: int = 6) -> str:
    c = ctx.analysis.comparables
    peers = sorted(c.peers, key=lambda p: -p.market_cap)[:max_peers]
    institution = any(m.multiple == "pb" for m in c.multiples)
    if institution:
        peer_text = "; ".join(f"{p.ticker} P/E {mult(p.pe)}, P/B {mult(p.pb)}" for p in peers)
    else:
        peer_text = "; ".join(
            f"{p.ticker} EV/EBITDA {mult(p.ev_ebitda)}, P/E {mult(p.pe)}, EV/Sales {mult(p.ev_sales)}" for p in peers
        )
    lines = [f"Peers ({c.group}): " + peer_text]
    for m in c.multiples:
        if institution and m.multiple in ("ev_ebitda", "ev_sales"):
            continue
        lines.append(
            f"{_MULTIPLE_NAMES[m.multiple]}: peer median {mult(m.median)} (Q1 {mult(m.low)}, Q3 {mult(m.high)}), "
            f"{ctx.ticker} {mult(m.company_multiple)}, implied value {price(m.implied_value_per_share)}"
        )
    lines.append(f"Comparables value per share: {price(c.value_per_share)}")
    return "\n".join(lines)


def target_line(ctx: ExampleContext) -> str:
    t = ctx.analysis.target
    a = ctx.analysis.assumptions
    values = []
    if t.dcf_value_per_share is not None:
        values.append(f"{t.intrinsic_label} value per share {price(t.dcf_value_per_share)}")
    if t.comps_value_per_share is not None:
        values.append(f"comparables value per share {price(t.comps_value_per_share)}")
    if values:
        values[0] = values[0][0].upper() + values[0][1:]
    excluded = "".join(f" {e[0].upper()}{e[1:]}." for e in t.excluded)
    implied = f"\n{ctx.analysis.implied}" if ctx.analysis.implied else ""
    return (
        f"{', '.join(values) or 'No value'}.{excluded} "
        f"Price target {price(t.price_target)} ({t.blend}) vs price {price(t.price)}: upside "
        f"{pct(t.upside, signed=True)}; rating {rating_word(ctx)} (Buy at or above {pct(a.buy_threshold, signed=True)}"
        f" upside, Sell below {pct(a.sell_threshold, signed=True)})"
    ) + implied


def scenarios_line(ctx: ExampleContext) -> str:
    parts = []
    for s in ctx.analysis.scenarios:
        if s.rate_kind == "cost_of_equity":
            growth = f"dividend growth {pct(s.initial_growth)}, " if s.initial_growth is not None else ""
            parts.append(
                f"{s.name} {price(s.value_per_share)} ({pct(s.upside, signed=True)}; {growth}cost of equity "
                f"{pct(s.wacc)})"
            )
            continue
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


def condition_shifts(ctx: ExampleContext, moves: bool = False) -> list[str]:
    """What the market condition changes, one phrase per assumption: 'risk-free rate +100 bp to 5.5%', or
    with ``moves`` 'the risk-free rate moves +100 bp to 5.5%'. Empty in the base case."""
    cond, now = ctx.condition, ctx.analysis
    items: list[tuple[str, str, float, float | None]] = [
        ("the ", "risk-free rate", cond.risk_free_shift, now.wacc.risk_free_rate),
        ("the ", "equity risk premium", cond.equity_risk_premium_shift, now.wacc.equity_risk_premium),
        (
            "",
            "first-year revenue growth",
            cond.revenue_growth_shift,
            now.dcf.inputs.initial_growth if now.dcf else None,
        ),
        ("the ", "FCF margin", cond.fcf_margin_shift, now.dcf.inputs.fcf_margin if now.dcf else None),
    ]
    return [
        f"{article}{label} moves {bp(shift)} to {pct(value)}" if moves else f"{label} {bp(shift)} to {pct(value)}"
        for article, label, shift, value in items
        if shift and value is not None
    ]


def condition_line(ctx: ExampleContext) -> str | None:
    """What the market condition changed and its computed effect (None in the base case)."""
    if ctx.is_base:
        return None
    cond, base, now = ctx.condition, ctx.base, ctx.analysis
    shifts = condition_shifts(ctx)

    def rates(a: CompanyAnalysis) -> str:
        text = f"WACC {pct(a.wacc.wacc)}"
        if a.method != "dcf":
            text += f", cost of equity {pct(a.wacc.cost_of_equity)}"
        return text

    return (
        f"Market condition: {cond.title} ({'; '.join(shifts)}). Base case: {rates(base)}, target "
        f"{price(base.target.price_target)}, rating {(base.target.rating or 'Not rated').upper()}. Under this "
        f"condition: {rates(now)}, target {price(now.target.price_target)}, rating {rating_word(ctx)}."
    )


def target_move(base: CompanyAnalysis, now: CompanyAnalysis) -> str:
    """'stays at $X', 'falls from $X to $Y' or 'rises from $X to $Y', read from the targets as written: a
    sentence never moves a value to itself."""
    bt, nt = base.target.price_target, now.target.price_target
    if bt is None or nt is None:
        return f"is {price(nt)} (base case {price(bt)})"
    if price(bt) == price(nt):
        return f"stays at {price(nt)}"
    return f"{'falls' if nt < bt else 'rises'} from {price(bt)} to {price(nt)}"


def discount_rate(analysis: CompanyAnalysis) -> tuple[str, float]:
    """The rate the method discounts at, and its name: the WACC (DCF) or the cost of equity (sector models)."""
    if analysis.method == "dcf":
        return "WACC", analysis.wacc.wacc
    return "cost of equity", analysis.wacc.cost_of_equity


_ONES = (
    *("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    *("ten", "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen"),
    "nineteen",
)
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
_ORDINAL_ENDINGS = {
    "one": "first",
    "two": "second",
    "three": "third",
    "five": "fifth",
    "eight": "eighth",
    "nine": "ninth",
    "twelve": "twelfth",
}


def count_word(n: int) -> str:
    """A non-negative whole number in words (7 -> 'seven', 42 -> 'forty-two'), so counts and ranks are never
    written as digits."""
    if n < 0:
        raise ValueError(f"count_word takes a non-negative number, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")
    for size, name in ((1_000_000, "million"), (1_000, "thousand"), (100, "hundred")):
        if n >= size:
            head, rest = divmod(n, size)
            return f"{count_word(head)} {name}" + (f" {count_word(rest)}" if rest else "")
    raise AssertionError("unreachable")


def ordinal_word(n: int) -> str:
    """A positive whole number as an ordinal in words (1 -> 'first', 23 -> 'twenty-third')."""
    if n < 1:
        raise ValueError(f"ordinal_word takes a positive number, got {n}")
    words = count_word(n)
    head, sep, last = words.rpartition("-" if "-" in words.split(" ")[-1] else " ")
    if last in _ORDINAL_ENDINGS:
        last = _ORDINAL_ENDINGS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return head + sep + last


def rank_words(rank: Rank) -> str:
    """A rank as 'second of seven'."""
    return f"{ordinal_word(rank.position)} of {count_word(rank.out_of)}"


def rank_superlative(rank: Rank, high: str, low: str) -> str:
    """A rank as a superlative: 'the largest', 'the third-largest', 'the smallest' (``high`` / ``low`` are
    the superlatives, e.g. 'largest' / 'smallest')."""
    if rank.position == 1:
        return f"the {high}"
    if rank.position == rank.out_of:
        return f"the {low}"
    return f"the {ordinal_word(rank.position)}-{high}"


# The industry block's comparison columns: label and GroupMetrics field.
INDUSTRY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Revenue", "revenue"),
    ("Growth", "revenue_growth"),
    ("Gross margin", "gross_margin"),
    ("Operating margin", "operating_margin"),
    ("EBITDA margin", "ebitda_margin"),
    ("Net margin", "net_margin"),
    ("FCF margin", "fcf_margin"),
    ("ROIC", "roic"),
    ("Market cap", "market_cap"),
    ("EV/EBITDA", "ev_ebitda"),
    ("P/E", "pe"),
    ("EV/Sales", "ev_sales"),
)

# Banks and insurers are compared on the lines their economics run on.
INSTITUTION_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Revenue", "revenue"),
    ("Growth", "revenue_growth"),
    ("Net margin", "net_margin"),
    ("ROE", "roe"),
    ("Market cap", "market_cap"),
    ("P/E", "pe"),
    ("P/B", "pb"),
)
INSTITUTION_METRICS = tuple(name for _, name in INSTITUTION_COLUMNS)


def industry_columns(ctx: ExampleContext) -> tuple[tuple[str, str], ...]:
    """The industry comparison's columns for this company."""
    return INSTITUTION_COLUMNS if ctx.company.institution is not None else INDUSTRY_COLUMNS


# Metric names as the industry block and the industry templates write them.
INDUSTRY_LABELS: dict[str, str] = {
    "revenue": "revenue",
    "market_cap": "market cap",
    "revenue_growth": "revenue growth",
    "gross_margin": "gross margin",
    "operating_margin": "operating margin",
    "ebitda_margin": "EBITDA margin",
    "net_margin": "net margin",
    "fcf_margin": "FCF margin",
    "roic": "ROIC",
    "ev_ebitda": "EV/EBITDA",
    "pe": "P/E",
    "ev_sales": "EV/Sales",
    "roe": "ROE",
    "pb": "P/B",
}


# The figures whose gap to the peer median (company minus median) the industry block writes.
_GAP_FIELDS = (
    "revenue_growth",
    "gross_margin",
    "operating_margin",
    "ebitda_margin",
    "net_margin",
    "fcf_margin",
    "roic",
)


def industry_cell(metrics: GroupMetrics, name: str) -> str:
    """One compared figure as the industry block writes it (money, signed growth, percentage or multiple)."""
    value = getattr(metrics, name)
    if name in ("revenue", "market_cap"):
        return money(value)
    if name == "revenue_growth":
        return pct(value, signed=True)
    if name in ("ev_ebitda", "pe", "ev_sales", "pb"):
        return mult(value)
    return pct(value)


def industry_peers(ctx: ExampleContext) -> list[PeerFigures]:
    """The peers' figures, largest revenue first (peers without revenue last)."""
    return sorted(ctx.industry.peers, key=lambda p: (p.revenue is None, -(p.revenue or 0.0), p.ticker))


def industry_block(ctx: ExampleContext) -> str:
    """The peer group: every peer's figures in a table with the company and the peer median, the company's
    rank on each figure (in words), the group's revenue and the company's share, gaps and premiums."""
    s, comps, t = ctx.industry, ctx.analysis.comparables, ctx.ticker
    basis = (
        f"{comps.group} sub-industry"
        if comps.basis == "sub_industry"
        else f"the other banks and insurers covered; too few {ctx.company.sub_industry} companies covered"
        if comps.basis == "institutions"
        else f"{comps.group} sector; too few {ctx.company.sub_industry} companies covered"
    )
    columns = industry_columns(ctx)
    institution = ctx.company.institution is not None
    head = "| Company | " + " | ".join(label for label, _ in columns) + " |"
    rule = "|---" + "|---:" * len(columns) + "|"

    def row(label: str, m: GroupMetrics) -> str:
        return f"| {label} | " + " | ".join(industry_cell(m, name) for _, name in columns) + " |"

    rows = [row(f"{ctx.company.name} ({t})", s.company)]
    rows += [row(f"{p.name} ({p.ticker})", p) for p in industry_peers(ctx)]
    rows.append(row("Peer median", s.peer_median))
    ranks = []
    for name in INSTITUTION_METRICS if institution else [n for n in INDUSTRY_LABELS if n not in ("roe", "pb")]:
        rank = getattr(s.ranks, name)
        if rank is not None:
            ranks.append(f"{INDUSTRY_LABELS[name]} {rank_words(rank)}")
    gaps = [
        f"{INDUSTRY_LABELS[name]} {bp(value)}"
        for name in (("revenue_growth", "net_margin", "roe") if institution else _GAP_FIELDS)
        if (value := getattr(s, f"{name}_gap")) is not None
    ]
    premiums = [
        f"{INDUSTRY_LABELS[name]} {pct(value, signed=True)}"
        for name in (("pe", "pb") if institution else ("ev_ebitda", "pe", "ev_sales"))
        if (value := getattr(s, f"{name}_premium")) is not None
    ]
    lines = [
        f"Industry peer group ({basis}): {t} and {count_word(s.peer_count)} peers",
        head,
        rule,
        *rows,
        f"Group revenue: peers {money(s.peer_revenue_total)}, with {t} {money(s.group_revenue_total)}; "
        f"{t} share {pct(s.revenue_share)}; {t} revenue {mult(s.revenue_to_peer_median)} the peer median",
    ]
    if s.peer_count and ranks:
        ranked = f"{t} rank among itself and the peers reporting each figure (first = highest): "
        lines.insert(-1, ranked + "; ".join(ranks))
    if gaps:
        lines.append(f"{t} minus peer median: " + ", ".join(gaps))
    if premiums:
        lines.append(f"{t} premium (+) or discount (-) to the peer median multiple: " + ", ".join(premiums))
    return "\n".join(lines)


def data_block(ctx: ExampleContext, sections: list[str]) -> str:
    """The prompt's data block from named sections (header, fiscal, ratios, wacc, dcf, sensitivity, comps,
    target, scenarios, estimates, condition, industry); unknown names are an error."""
    builders = {
        "header": header_line,
        "fiscal": fiscal_lines,
        "ratios": ratios_line,
        "wacc": wacc_line,
        "dcf": dcf_line,
        "sensitivity": sensitivity_block,
        "comps": comps_block,
        "target": target_line,
        "implied": implied_line,
        "scenarios": scenarios_line,
        "estimates": estimates_block,
        "condition": condition_line,
        "industry": industry_block,
    }
    parts = []
    for name in sections:
        text = builders[name](ctx)
        if text:
            parts.append(text)
    return "DATA\n" + "\n".join(parts)
