"""Financial analysis: profitability, returns, leverage, cash generation and quality of earnings, growth.

Every ratio is the finance engine's; the year-on-year comparison sets the latest fiscal year's reported
figures beside the prior year's, in words ("rose", "lower") and with the engine's growth rates. Labels such
as "high" or "thin" come from fixed judgement bands that are never written as figures.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from equitune.data.blocks import condition_shifts, money, mult, pct, price, rating_word
from equitune.data.context import ExampleContext
from equitune.data.families.common import Family, bullets, disclaimer, pick, shuffled

INSTRUCTIONS = (
    "Write a financial analysis of {name} ({ticker}): profitability, returns, leverage and cash generation.",
    "Analyse {ticker}'s latest fiscal year against the prior year, with a ratio table.",
    "Prepare the financial analysis section of a research report on {name} ({ticker}).",
    "How healthy are {name}'s financials? Cover margins, returns on capital, leverage and free cash flow.",
    "Give me a ratio analysis of {ticker}: margins, ROE, ROA, ROIC, net debt/EBITDA, interest coverage, FCF.",
    "Assess the quality of earnings and cash conversion of {name} ({ticker}).",
    "Review {name}'s income statement, balance sheet and cash flow using the figures provided.",
    "Write an institutional-style financial analysis of {ticker} for a portfolio manager.",
    "Break down the profitability and balance-sheet strength of {name} ({ticker}).",
    "What do {ticker}'s margins, returns and leverage say about the business? Include a ratio table.",
    "Compare {name}'s latest fiscal year with the prior year: growth, margins, cash flow and debt.",
    "Draft a fundamentals review of {name} ({ticker}): profitability, efficiency, leverage and growth.",
    "As an equity analyst, evaluate the financial performance of {name} in its latest fiscal year.",
    "Produce a financial health check on {ticker}, using only the data below.",
    "Summarise {name}'s key financial ratios and what they imply for investors.",
    "Is {ticker} earning its cost of capital? Write a financial analysis with ROIC, margins and leverage.",
    "Analyse the financial statements of {name} ({ticker}), a {sector} company.",
    "Write the financial analysis of {ticker}: profitability, returns, leverage, cash flow and growth.",
    "Using the data block, assess {name}'s profitability, capital efficiency and balance sheet.",
    "Give a structured review of {ticker}'s financial performance with a table of key ratios.",
    "How strong is {name}'s free cash flow, and how much debt does it carry? Full financial analysis please.",
    "Evaluate {name} ({ticker}) on margins, returns on capital, leverage, cash conversion and growth.",
)

SECTIONS = ("header", "fiscal", "ratios", "wacc", "estimates", "condition")

# Section headers by key: every response has each key of ``REQUIRED_SECTIONS`` (and "condition" when the
# market condition is not the base case) under one of these titles.
HEADERS: dict[str, tuple[str, ...]] = {
    "takeaways": ("Key Takeaways", "Summary", "Financial Snapshot"),
    "ratios": ("Key Ratios", "Ratio Table", "Ratio Summary"),
    "profitability": ("Profitability", "Margins and Profitability", "Profitability and Margins"),
    "returns": ("Returns on Capital", "Efficiency and Returns", "Capital Efficiency"),
    "leverage": ("Leverage and Liquidity", "Balance Sheet and Leverage", "Leverage"),
    "cash": ("Cash Generation and Quality of Earnings", "Cash Flow and Earnings Quality", "Cash Generation"),
    "growth": ("Growth", "Growth and Year-on-Year Comparison", "Growth Versus the Prior Year"),
    "condition": ("Market Condition", "Scenario Overlay", "Market Condition Impact"),
}
REQUIRED_SECTIONS: tuple[str, ...] = (
    "takeaways",
    "ratios",
    "profitability",
    "returns",
    "leverage",
    "cash",
    "growth",
)

_THIN_MARGIN_MODELS = {
    "Consumer Staples Merchandise Retail": "typical of a high-volume retailer",
    "Oil & Gas Refining & Marketing": "typical of a refiner, whose margins track crack spreads",
    "Aerospace & Defense": "typical of government contracting",
}

_PACE = {
    "strong": "That is a strong pace.",
    "moderate": "That is a moderate pace.",
    "low": "That is a low pace.",
    "negative": "That is a contraction.",
    "n/a": "",
}

Fmt = Callable[[float], str]


def _signed(value: float) -> str:
    return pct(value, signed=True)


def _direction(now: float, before: float, fmt: Fmt) -> int:
    """+1 / -1 / 0 for higher / lower / the same as written, so prose never contradicts the figures."""
    if fmt(now) == fmt(before):
        return 0
    return 1 if now > before else -1


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _trend(
    label: str,
    now: float,
    before: float,
    fmt: Fmt,
    rng: random.Random,
    since: int | None = None,
    change: str | None = None,
) -> str:
    """'Revenue rose to $X from $Y in FY2023 (+2.0%).' with the verb chosen from the figures as written."""
    tail = f" in FY{since}" if since is not None else ""
    tail += f" ({change})" if change else ""
    d = _direction(now, before, fmt)
    if d == 0:
        return f"{label} was unchanged at {fmt(now)}{tail}."
    if now < 0 < before:
        return f"{label} swung to {fmt(now)} from {fmt(before)}{tail}."
    if before < 0 < now:
        return f"{label} turned positive at {fmt(now)}, from {fmt(before)}{tail}."
    verb = pick(rng, ["rose", "increased", "grew"]) if d > 0 else pick(rng, ["fell", "declined", "decreased"])
    return f"{label} {verb} to {fmt(now)} from {fmt(before)}{tail}."


def _change_word(now: float | None, before: float | None, fmt: Fmt) -> str:
    if now is None or before is None:
        return "n/a"
    return {1: "higher", -1: "lower", 0: "flat"}[_direction(now, before, fmt)]


# --- qualitative labels (judgement bands, never written as figures) ------------------------------------


def _margin_label(margin: float | None) -> str:
    if margin is None:
        return "not meaningful"
    if margin >= 0.25:
        return "high"
    if margin >= 0.12:
        return "healthy"
    if margin >= 0.05:
        return "modest"
    return "thin" if margin >= 0 else "negative"


def _roe_label(roe: float | None, equity: float | None) -> str:
    if roe is None:
        return "not meaningful: negative equity" if equity is not None and equity <= 0 else "not meaningful"
    if roe >= 1:
        return "very high, flattered by a small equity base"
    if roe >= 0.15:
        return "high"
    if roe >= 0.08:
        return "moderate"
    return "low" if roe >= 0 else "negative"


def _roa_label(roa: float | None) -> str:
    if roa is None:
        return "not meaningful"
    if roa >= 0.10:
        return "high"
    if roa >= 0.04:
        return "moderate"
    return "low" if roa >= 0 else "negative"


def _roic_label(roic: float | None, wacc: float) -> str:
    if roic is None:
        return "not meaningful"
    d = _direction(roic, wacc, pct)
    if d > 0:
        return "above the WACC: value-creating"
    return "below the WACC" if d < 0 else "in line with the WACC"


def _leverage_label(ctx: ExampleContext) -> str:
    x, sector = ctx.analysis.ratios.net_debt_to_ebitda, ctx.company.sector
    if x is None:
        ebitda = ctx.company.latest.ebitda
        return "not meaningful: EBITDA not positive" if ebitda is not None and ebitda <= 0 else "n/a"
    if x < 0:
        return "net cash"
    label = "low" if x < 1 else "moderate" if x < 2.5 else "elevated" if x < 4 else "high"
    if label in ("elevated", "high") and sector == "Utilities":
        label += ", typical of a regulated utility"
    elif label in ("elevated", "high") and sector == "Real Estate":
        label += ", common for a REIT"
    return label


def _coverage_label(ctx: ExampleContext) -> str:
    ic = ctx.analysis.ratios.interest_coverage
    if ic is None:
        return "interest expense not reported" if ctx.company.latest.interest_expense is None else "n/a"
    if ic < 0:
        return "negative: operating loss"
    return "comfortable" if ic >= 10 else "adequate" if ic >= 5 else "thin" if ic >= 2 else "tight"


def _conversion_label(ctx: ExampleContext) -> str:
    r, fy = ctx.analysis.ratios, ctx.company.latest
    if r.fcf_conversion is None:
        return "not meaningful: net income not positive"
    if r.fcf_conversion < 0:
        return "negative free cash flow"
    if fy.free_cash_flow is not None and fy.net_income is not None and fy.free_cash_flow > fy.net_income:
        return "strong, FCF above net income"
    return "solid" if r.fcf_conversion >= 0.8 else "weak"


def _growth_label(g: float | None) -> str:
    if g is None:
        return "n/a"
    if g >= 0.10:
        return "strong"
    if g >= 0.03:
        return "moderate"
    return "low" if g >= 0 else "negative"


def _net_debt_label(net_debt: float | None) -> str:
    if net_debt is None:
        return "n/a"
    return "net cash position" if net_debt < 0 else "net debt position"


# --- sections ------------------------------------------------------------------------------------------


def _ratio_table(ctx: ExampleContext, rng: random.Random) -> str:
    r, fy, wacc = ctx.analysis.ratios, ctx.company.latest, ctx.analysis.wacc.wacc
    rows = [
        ("Gross margin", pct(r.gross_margin), _margin_label(r.gross_margin)),
        ("Operating margin", pct(r.operating_margin), _margin_label(r.operating_margin)),
        ("EBITDA margin", pct(r.ebitda_margin), _margin_label(r.ebitda_margin)),
        ("Net margin", pct(r.net_margin), _margin_label(r.net_margin)),
        ("FCF margin", pct(r.fcf_margin), _margin_label(r.fcf_margin)),
        ("ROE", pct(r.roe), _roe_label(r.roe, fy.total_equity)),
        ("ROA", pct(r.roa), _roa_label(r.roa)),
        ("ROIC", pct(r.roic), _roic_label(r.roic, wacc)),
        ("Net debt", money(r.net_debt), _net_debt_label(r.net_debt)),
        ("Net debt/EBITDA", mult(r.net_debt_to_ebitda), _leverage_label(ctx)),
        ("Interest coverage (EBIT/interest)", mult(r.interest_coverage), _coverage_label(ctx)),
        ("FCF conversion (FCF/net income)", pct(r.fcf_conversion), _conversion_label(ctx)),
        ("Revenue growth", pct(r.revenue_growth, signed=True), _growth_label(r.revenue_growth)),
        ("EBITDA growth", pct(r.ebitda_growth, signed=True), _growth_label(r.ebitda_growth)),
        ("EPS growth", pct(r.eps_growth, signed=True), _growth_label(r.eps_growth)),
    ]
    last = pick(rng, ["Assessment", "Read-across", "Comment"])
    lines = [f"| Metric | FY{r.fiscal_year} | {last} |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {comment} |" for name, value, comment in rows]
    return "\n".join(lines)


def _comparison_table(ctx: ExampleContext) -> str | None:
    fy, prior, r = ctx.company.latest, ctx.company.prior, ctx.analysis.ratios
    if prior is None:
        return None
    growth = {"revenue": r.revenue_growth, "ebitda": r.ebitda_growth, "eps_diluted": r.eps_growth}
    items: list[tuple[str, str, Fmt]] = [
        ("Revenue", "revenue", money),
        ("Gross profit", "gross_profit", money),
        ("Operating income", "operating_income", money),
        ("EBITDA", "ebitda", money),
        ("Net income", "net_income", money),
        ("Diluted EPS", "eps_diluted", price),
        ("Operating cash flow", "operating_cash_flow", money),
        ("Capex", "capex", money),
        ("Free cash flow", "free_cash_flow", money),
        ("Cash", "cash", money),
        ("Total debt", "total_debt", money),
        ("Shareholders' equity", "total_equity", money),
        ("Dividends/share", "dividends_per_share", price),
    ]
    lines = [f"| | FY{fy.fiscal_year} | FY{prior.fiscal_year} | Change |", "|---|---:|---:|---|"]
    for label, name, fmt in items:
        now, before = getattr(fy, name), getattr(prior, name)
        if now is None and before is None:
            continue
        g = growth.get(name)
        change = _signed(g) if g is not None else _change_word(now, before, fmt)
        now_text = fmt(now) if now is not None else "n/a"
        before_text = fmt(before) if before is not None else "n/a"
        lines.append(f"| {label} | {now_text} | {before_text} | {change} |")
    return "\n".join(lines)


def _profitability(ctx: ExampleContext, rng: random.Random) -> list[str]:
    r, c = ctx.analysis.ratios, ctx.company
    fy, prior = c.latest, c.prior
    out = [
        pick(
            rng,
            [
                f"FY{fy.fiscal_year} gross margin was {pct(r.gross_margin)}, operating margin "
                f"{pct(r.operating_margin)}, EBITDA margin {pct(r.ebitda_margin)} and net margin "
                f"{pct(r.net_margin)}.",
                f"Margins in FY{fy.fiscal_year}: gross {pct(r.gross_margin)}, operating "
                f"{pct(r.operating_margin)}, EBITDA {pct(r.ebitda_margin)}, net {pct(r.net_margin)}.",
            ],
        )
    ]
    label = _margin_label(r.operating_margin)
    if r.operating_margin is not None and label == "negative":
        out.append(
            f"The operating margin of {pct(r.operating_margin)} is negative: operating income was "
            f"{money(fy.operating_income)} in FY{fy.fiscal_year}."
        )
    elif r.operating_margin is not None:
        note = ""
        if label in ("thin", "modest") and c.sub_industry in _THIN_MARGIN_MODELS:
            note = f", {_THIN_MARGIN_MODELS[c.sub_industry]}"
        out.append(f"An operating margin of {pct(r.operating_margin)} is {label}{note}.")
    if r.ebitda_growth is not None and r.revenue_growth is not None:
        eg, rg = _signed(r.ebitda_growth), _signed(r.revenue_growth)
        d = _direction(r.ebitda_growth, r.revenue_growth, _signed)
        if d > 0:
            out.append(
                f"EBITDA growth of {eg} outpaced revenue growth of {rg}, so the EBITDA margin expanded: "
                + pick(rng, ["operating leverage worked in the company's favour.", "costs grew more slowly."])
            )
        elif d < 0:
            out.append(f"EBITDA growth of {eg} lagged revenue growth of {rg}, so the EBITDA margin contracted.")
        else:
            out.append(f"EBITDA and revenue both changed {rg}, leaving the EBITDA margin broadly stable.")
    if prior is not None and fy.operating_income is not None and prior.operating_income is not None:
        out.append(
            _trend("Operating income", fy.operating_income, prior.operating_income, money, rng, prior.fiscal_year)
        )
    if prior is not None and fy.net_income is not None and prior.net_income is not None:
        out.append(_trend("Net income", fy.net_income, prior.net_income, money, rng))
    return out


def _returns(ctx: ExampleContext, rng: random.Random) -> list[str]:
    r, fy, w = ctx.analysis.ratios, ctx.company.latest, ctx.analysis.wacc
    out = []
    if r.roe is not None and r.roe >= 1 and fy.total_equity is not None and fy.net_income is not None:
        out.append(
            f"ROE of {pct(r.roe)} is flattered by a small equity base: shareholders' equity of "
            f"{money(fy.total_equity)} sits below net income of {money(fy.net_income)}, often the result of "
            "buybacks and dividends, so ROA and ROIC are the better gauges."
        )
    elif r.roe is not None:
        out.append(f"ROE was {pct(r.roe)}, which we read as {_roe_label(r.roe, fy.total_equity)}.")
    elif fy.total_equity is not None and fy.total_equity <= 0:
        out.append(
            f"ROE is not meaningful: shareholders' equity is {money(fy.total_equity)}, so returns are better "
            "judged on ROA and ROIC."
        )
    if r.roa is not None:
        out.append(
            pick(
                rng,
                [
                    f"ROA of {pct(r.roa)} ({_roa_label(r.roa)}) measures the return on the whole asset base.",
                    f"Return on assets was {pct(r.roa)}, {_roa_label(r.roa)} on our reading.",
                ],
            )
        )
    if r.roic is not None:
        d = _direction(r.roic, w.wacc, pct)
        if d > 0 and r.roic >= 2 * w.wacc:
            verdict = pick(
                rng,
                [
                    "comfortably above the cost of capital, so growth invested at these returns creates value",
                    "well clear of the cost of capital: the business creates value on the capital it employs",
                ],
            )
        elif d > 0:
            verdict = "above the cost of capital, so the business creates value, if with a modest spread"
        elif d < 0:
            verdict = "below the cost of capital, so the business is not yet earning its WACC"
        else:
            verdict = "in line with the cost of capital"
        out.append(f"ROIC of {pct(r.roic)} against a WACC of {pct(w.wacc)} is {verdict}.")
    if not out:
        out.append("Return ratios are not meaningful for this record.")
    return out


def _leverage(ctx: ExampleContext, rng: random.Random) -> list[str]:
    r, c = ctx.analysis.ratios, ctx.company
    fy, prior = c.latest, c.prior
    out = []
    if r.net_debt is not None and r.net_debt < 0:
        out.append(
            f"{c.ticker} holds a net cash position: net debt is {money(r.net_debt)}, with cash of "
            f"{money(fy.cash)} above total debt of {money(fy.total_debt)}."
        )
    elif r.net_debt is not None:
        out.append(
            f"Net debt stood at {money(r.net_debt)} (total debt {money(fy.total_debt)} less cash {money(fy.cash)})."
        )
    x = r.net_debt_to_ebitda
    if x is not None and x >= 0:
        out.append(f"Net debt/EBITDA of {mult(x)} is {_leverage_label(ctx)}.")
    elif x is None and fy.ebitda is not None and fy.ebitda <= 0:
        out.append(f"Net debt/EBITDA is not meaningful because EBITDA was {money(fy.ebitda)}.")
    ic = r.interest_coverage
    if ic is not None and ic < 0:
        out.append(
            f"Interest coverage was {mult(ic)}: with operating income of {money(fy.operating_income)}, "
            "operations did not cover the interest bill."
        )
    elif ic is not None:
        out.append(
            f"Interest coverage (operating income over interest expense) was {mult(ic)}, {_coverage_label(ctx)}."
        )
    elif fy.interest_expense is None:
        out.append("Interest coverage cannot be computed: interest expense is not reported separately.")
    if prior is not None and fy.total_debt is not None and prior.total_debt is not None:
        out.append(_trend("Total debt", fy.total_debt, prior.total_debt, money, rng, prior.fiscal_year))
    if c.sector == "Financials":
        out.append(
            "For a financial company, debt and cash can be operating items, so balance-sheet leverage "
            "ratios are a rough guide."
        )
    return out


def _cash(ctx: ExampleContext, rng: random.Random) -> list[str]:
    r, fy, prior = ctx.analysis.ratios, ctx.company.latest, ctx.company.prior
    ocf, ni, fcf = fy.operating_cash_flow, fy.net_income, fy.free_cash_flow
    out = []
    if ocf is not None and ni is not None:
        d = _direction(ocf, ni, money)
        if ni < 0 < ocf:
            out.append(
                f"Operating cash flow stayed positive at {money(ocf)} despite net income of {money(ni)}: "
                "the loss is driven by non-cash charges rather than cash operations."
            )
        elif d > 0:
            out.append(
                f"Operating cash flow of {money(ocf)} exceeded net income of {money(ni)}: "
                + pick(
                    rng,
                    [
                        "reported earnings are well backed by cash.",
                        "a sign of good earnings quality, with non-cash charges adding to cash.",
                    ],
                )
            )
        elif d < 0:
            out.append(
                f"Operating cash flow of {money(ocf)} was below net income of {money(ni)}: accruals or "
                "working capital absorbed cash, which warrants a closer look at earnings quality."
            )
        else:
            out.append(f"Operating cash flow of {money(ocf)} matched net income of {money(ni)}.")
    if fcf is not None and fcf < 0:
        out.append(
            f"Free cash flow was {money(fcf)} ({pct(r.fcf_margin)} of revenue): capex of {money(fy.capex)} "
            f"exceeded operating cash flow of {money(ocf)}, so investment leans on external funding."
        )
    elif fcf is not None:
        out.append(
            f"Free cash flow was {money(fcf)}, an FCF margin of {pct(r.fcf_margin)}, after capex of {money(fy.capex)}."
        )
    if fcf is not None and ctx.company.sector == "Utilities" and _margin_label(r.fcf_margin) in ("thin", "negative"):
        out.append("Thin or negative free cash flow is typical of a utility investing heavily in its rate base.")
    if r.fcf_conversion is not None and r.fcf_conversion >= 0:
        out.append(
            f"FCF conversion (free cash flow over net income) was {pct(r.fcf_conversion)}: {_conversion_label(ctx)}."
        )
    if prior is not None and fy.capex is not None and prior.capex is not None:
        out.append(_trend("Capex", fy.capex, prior.capex, money, rng))
    if prior is not None and fcf is not None and prior.free_cash_flow is not None:
        out.append(_trend("Free cash flow", fcf, prior.free_cash_flow, money, rng, prior.fiscal_year))
    dps = fy.dividends_per_share
    prior_dps = prior.dividends_per_share if prior is not None else None
    if dps is not None and dps > 0 and prior_dps is not None:
        d = _direction(dps, prior_dps, price)
        if d > 0:
            out.append(f"The dividend was raised to {price(dps)} per share from {price(prior_dps)}.")
        elif d < 0:
            out.append(f"The dividend was cut to {price(dps)} per share from {price(prior_dps)}.")
        else:
            out.append(f"The dividend was held at {price(dps)} per share.")
    return out


def _growth(ctx: ExampleContext, rng: random.Random) -> list[str]:
    r, fy, prior = ctx.analysis.ratios, ctx.company.latest, ctx.company.prior
    out = []
    if r.revenue_growth is not None and prior is not None and fy.revenue is not None and prior.revenue:
        out.append(
            _trend("Revenue", fy.revenue, prior.revenue, money, rng, change=_signed(r.revenue_growth))
            + f" {_PACE[_growth_label(r.revenue_growth)]}"
        )
    if r.ebitda_growth is not None:
        out.append(f"EBITDA growth was {_signed(r.ebitda_growth)} ({_growth_label(r.ebitda_growth)}).")
    if r.eps_growth is not None and prior is not None and fy.eps_diluted is not None and prior.eps_diluted:
        out.append(_trend("Diluted EPS", fy.eps_diluted, prior.eps_diluted, price, rng, change=_signed(r.eps_growth)))
    n = ctx.estimates.next_year
    if n.revenue_growth is not None:
        out.append(
            pick(
                rng,
                [
                    f"The engine's next-year estimate puts FY{n.fiscal_year}E revenue at {money(n.revenue)} "
                    f"({_signed(n.revenue_growth)}) and EPS at {price(n.eps)}, holding margins at the latest "
                    "year's level.",
                    f"Looking ahead, FY{n.fiscal_year}E revenue of {money(n.revenue)} "
                    f"({_signed(n.revenue_growth)}) and EPS of {price(n.eps)} assume margins hold at the "
                    "latest year's level.",
                ],
            )
        )
    return out


def _takeaways(ctx: ExampleContext, rng: random.Random) -> list[str]:
    r, w, fy = ctx.analysis.ratios, ctx.analysis.wacc, ctx.company.latest
    points = [
        f"**Profitability:** operating margin of {pct(r.operating_margin)} "
        f"({_margin_label(r.operating_margin)}) and net margin of {pct(r.net_margin)}."
    ]
    if r.roic is not None:
        points.append(
            f"**Returns:** ROIC of {pct(r.roic)} against a WACC of {pct(w.wacc)}, {_roic_label(r.roic, w.wacc)}."
        )
    if r.net_debt is not None and r.net_debt_to_ebitda is not None:
        points.append(
            f"**Balance sheet:** net debt of {money(r.net_debt)}, {mult(r.net_debt_to_ebitda)} EBITDA "
            f"({_leverage_label(ctx)})."
        )
    elif r.net_debt is not None:
        points.append(
            f"**Balance sheet:** net debt of {money(r.net_debt)}; leverage on EBITDA is not meaningful with "
            f"EBITDA of {money(fy.ebitda)}."
        )
    if r.fcf_conversion is not None and r.fcf_conversion >= 0:
        points.append(
            f"**Cash:** FCF margin of {pct(r.fcf_margin)} and FCF conversion of {pct(r.fcf_conversion)} "
            f"({_conversion_label(ctx)})."
        )
    elif r.fcf_margin is not None:
        points.append(f"**Cash:** free cash flow of {money(fy.free_cash_flow)}, an FCF margin of {pct(r.fcf_margin)}.")
    if r.revenue_growth is not None:
        eps = f", EPS {_signed(r.eps_growth)}" if r.eps_growth is not None else ""
        points.append(f"**Growth:** revenue {_signed(r.revenue_growth)}{eps}.")
    return shuffled(rng, points, keep_first=1)


def _verdict(ctx: ExampleContext) -> str:
    r, w = ctx.analysis.ratios, ctx.analysis.wacc
    strengths: list[str] = []
    watch: list[str] = []
    (strengths if _margin_label(r.operating_margin) in ("high", "healthy") else watch).append("profitability")
    if r.roic is not None:
        (strengths if _direction(r.roic, w.wacc, pct) > 0 else watch).append("returns on capital")
    if r.net_debt_to_ebitda is not None:
        (strengths if r.net_debt_to_ebitda < 2.5 else watch).append("leverage")
    if r.fcf_conversion is not None:
        (strengths if r.fcf_conversion >= 0.8 else watch).append("cash conversion")
    if r.revenue_growth is not None:
        (strengths if r.revenue_growth >= 0.03 else watch).append("growth")
    tone = "strong" if len(strengths) >= 4 else "mixed" if strengths else "weak"
    text = f"Overall, {ctx.company.name}'s financial profile is **{tone}**"
    if strengths:
        text += f", with strengths in {_join(strengths)}"
    if len(watch) == 1:
        text += f"; {watch[0]} is the area to watch"
    elif watch:
        text += f"; {_join(watch)} are the areas to watch"
    return text + "."


def _condition(ctx: ExampleContext, rng: random.Random) -> str | None:
    if ctx.is_base:
        return None
    cond, base, now = ctx.condition, ctx.base, ctx.analysis
    shifts = condition_shifts(ctx, moves=True)
    lines = [
        pick(
            rng,
            [
                f"Under the **{cond.title}** condition the reported figures and ratios above do not change; "
                "the forward view does.",
                f"The **{cond.title}** condition leaves the historical ratios untouched and changes the "
                "valuation inputs.",
            ],
        )
    ]
    if shifts:
        lines.append("What changes: " + "; ".join(shifts) + ".")
    lines.append(
        f"Computed effect: {_versus('WACC', now.wacc.wacc, base.wacc.wacc, pct)}; "
        f"{_versus('price target', now.target.price_target, base.target.price_target, price)}; "
        f"rating {rating_word(ctx)}."
    )
    r = now.ratios
    if r.roic is not None:
        d = _direction(r.roic, now.wacc.wacc, pct)
        rel = "above" if d > 0 else "below" if d < 0 else "in line with"
        lines.append(f"ROIC of {pct(r.roic)} is {rel} the condition's WACC of {pct(now.wacc.wacc)}.")
    n = ctx.estimates.next_year
    if (cond.revenue_growth_shift or cond.fcf_margin_shift) and n.revenue_growth is not None:
        lines.append(
            f"The next-year estimate carries the shift: FY{n.fiscal_year}E revenue of {money(n.revenue)} "
            f"({_signed(n.revenue_growth)})."
        )
    return bullets(lines)


def _versus(label: str, now: float | None, before: float | None, fmt: Fmt) -> str:
    """'WACC 5.7% against 5.2% in the base case', or 'WACC unchanged at 5.2%'."""
    if now is None or before is None:
        now_text = fmt(now) if now is not None else "n/a"
        before_text = fmt(before) if before is not None else "n/a"
        return f"{label} {now_text} against {before_text} in the base case"
    if _direction(now, before, fmt) == 0:
        return f"{label} unchanged at {fmt(now)}"
    return f"{label} {fmt(now)} against {fmt(before)} in the base case"


# --- banks and insurers ------------------------------------------------------------------------------------
# A lender's or underwriter's statements have no gross profit, EBITDA or capex that mean anything, so the same
# sections read the lines its economics run on: net interest income, credit costs, ROE against the cost of
# equity, and capital.


def _bank_roa_label(roa: float | None) -> str:
    """Banks earn on a thin slice of a large balance sheet: 1% ROA is the usual mark of a good bank."""
    if roa is None:
        return "not meaningful"
    if roa >= 0.012:
        return "high for a bank"
    if roa >= 0.008:
        return "solid for a bank"
    return "low for a bank" if roa >= 0 else "negative"


def _roe_vs_ke(ctx: ExampleContext) -> str:
    r, ke = ctx.analysis.ratios, ctx.analysis.wacc.cost_of_equity
    if r.roe is None:
        return "not meaningful"
    d = _direction(r.roe, ke, pct)
    return "above the cost of equity" if d > 0 else "below the cost of equity" if d < 0 else "at the cost of equity"


def _institution_sections(ctx: ExampleContext, rng: random.Random) -> dict[str, list[str]]:
    r, c, ke = ctx.analysis.ratios, ctx.company, ctx.analysis.wacc.cost_of_equity
    fy, prior = c.latest, c.prior
    bank = c.institution == "bank"
    takeaways = [
        f"**Profitability:** pretax margin of {pct(r.pretax_margin)} and net margin of {pct(r.net_margin)}.",
        f"**Returns:** ROE of {pct(r.roe)} against a {pct(ke)} cost of equity, {_roe_vs_ke(ctx)}.",
    ]
    if fy.cet1_ratio is not None:
        takeaways.append(f"**Capital:** CET1 ratio of {pct(fy.cet1_ratio)}.")
    if r.revenue_growth is not None:
        eps = f", EPS {_signed(r.eps_growth)}" if r.eps_growth is not None else ""
        takeaways.append(f"**Growth:** revenue {_signed(r.revenue_growth)}{eps}.")
    profitability = [f"FY{fy.fiscal_year} pretax margin was {pct(r.pretax_margin)} and net margin {pct(r.net_margin)}."]
    if bank and r.nii_share is not None:
        profitability.append(
            f"Net interest income of {money(fy.net_interest_income)} is {pct(r.nii_share)} of revenue"
            + (
                f", {_signed(r.nii_growth)} on the year."
                if r.nii_growth is not None and pct(r.nii_growth) != pct(0.0)
                else "."
            )
            + " The rest is fees, trading and other noninterest revenue."
        )
    if prior is not None and fy.net_income is not None and prior.net_income is not None:
        profitability.append(_trend("Net income", fy.net_income, prior.net_income, money, rng))
    returns = [
        f"ROE was {pct(r.roe)} against a {pct(ke)} cost of equity: "
        + (
            "each dollar of book value earns more than shareholders require, which is what a price above book rests on."
            if _roe_vs_ke(ctx) == "above the cost of equity"
            else "the return does not cover what shareholders require, which argues for a price below book."
            if _roe_vs_ke(ctx) == "below the cost of equity"
            else "the return just covers what shareholders require."
        ),
        f"ROA of {pct(r.roa)} ({_bank_roa_label(r.roa) if bank else _roa_label(r.roa)}) measures the return on the "
        "whole balance sheet.",
    ]
    leverage = [
        f"Equity is {pct(r.equity_to_assets)} of total assets of {money(fy.total_assets)}"
        + (", a balance sheet geared like a bank's." if bank else ".")
    ]
    if fy.cet1_ratio is not None:
        move = ""
        if prior is not None and prior.cet1_ratio is not None:
            d = _direction(fy.cet1_ratio, prior.cet1_ratio, pct)
            move = (
                f", up from {pct(prior.cet1_ratio)}"
                if d > 0
                else f", down from {pct(prior.cet1_ratio)}"
                if d < 0
                else ", unchanged on the year"
            )
        leverage.append(
            f"The CET1 ratio of {pct(fy.cet1_ratio)}{move + ',' if move else ''} is the capital regulators measure; "
            "the surplus over "
            "the requirement is what can go to buybacks."
        )
    cash = [
        "Operating cash flow of a lender mixes deposits, loans and trading positions, so free cash flow says "
        "little about earnings quality; credit costs do."
    ]
    if bank and r.provision_to_nii is not None:
        cash.append(
            f"The provision for credit losses of {money(fy.provision_for_credit_losses)} takes "
            f"{pct(r.provision_to_nii)} "
            "of net interest income."
        )
    if prior is not None and fy.dividends_per_share is not None and prior.dividends_per_share is not None:
        d = _direction(fy.dividends_per_share, prior.dividends_per_share, price)
        cash.append(
            f"The dividend was {'raised to' if d > 0 else 'cut to' if d < 0 else 'held at'} "
            f"{price(fy.dividends_per_share)} "
            f"per share (FY{prior.fiscal_year}: {price(prior.dividends_per_share)}), a payout of "
            f"{pct(r.dividend_payout)} of EPS."
        )
    return {
        "takeaways": takeaways,
        "profitability": profitability,
        "returns": returns,
        "leverage": leverage,
        "cash": cash,
    }


def _institution_verdict(ctx: ExampleContext) -> str:
    r, fy, ke = ctx.analysis.ratios, ctx.company.latest, ctx.analysis.wacc.cost_of_equity
    strengths: list[str] = []
    watch: list[str] = []
    if r.roe is not None:
        (strengths if _direction(r.roe, ke, pct) > 0 else watch).append("returns on equity")
    if fy.cet1_ratio is not None:
        (strengths if fy.cet1_ratio >= 0.11 else watch).append("capital")
    if r.provision_to_nii is not None:
        (strengths if r.provision_to_nii < 0.15 else watch).append("credit costs")
    if r.revenue_growth is not None:
        (strengths if r.revenue_growth >= 0.03 else watch).append("growth")
    tone = "strong" if len(strengths) >= 3 and not watch else "mixed" if strengths else "weak"
    text = f"Overall, {ctx.company.name}'s financial profile is **{tone}**"
    if strengths:
        text += f", with strengths in {_join(strengths)}"
    if len(watch) == 1:
        text += f"; {watch[0]} is the area to watch"
    elif watch:
        text += f"; {_join(watch)} are the areas to watch"
    return text + "."


def _institution_ratio_table(ctx: ExampleContext, rng: random.Random) -> str:
    r, fy = ctx.analysis.ratios, ctx.company.latest
    rows = [
        ("Pretax margin", pct(r.pretax_margin), _margin_label(r.pretax_margin)),
        ("Net margin", pct(r.net_margin), _margin_label(r.net_margin)),
    ]
    if ctx.company.institution == "bank":
        rows += [
            ("Net interest income / revenue", pct(r.nii_share), "the lending share of revenue"),
            ("Provision / net interest income", pct(r.provision_to_nii), "credit cost"),
        ]
    rows += [
        ("ROE", pct(r.roe), _roe_vs_ke(ctx)),
        ("ROA", pct(r.roa), _bank_roa_label(r.roa) if ctx.company.institution == "bank" else _roa_label(r.roa)),
        ("Equity / assets", pct(r.equity_to_assets), "capital on the balance sheet"),
    ]
    if fy.cet1_ratio is not None:
        rows.append(("CET1 ratio", pct(fy.cet1_ratio), "regulatory capital"))
    rows += [
        ("Dividend payout", pct(r.dividend_payout), "share of EPS paid out"),
        ("Revenue growth", pct(r.revenue_growth, signed=True), _growth_label(r.revenue_growth)),
        ("EPS growth", pct(r.eps_growth, signed=True), _growth_label(r.eps_growth)),
    ]
    last = pick(rng, ["Assessment", "Read-across", "Comment"])
    lines = [f"| Metric | FY{r.fiscal_year} | {last} |", "|---|---:|---|"]
    lines += [f"| {name} | {value} | {comment} |" for name, value, comment in rows]
    return "\n".join(lines)


def respond(ctx: ExampleContext, rng: random.Random) -> str:
    """The financial analysis, section order and wording varied by ``rng``."""
    c = ctx.company
    fy = c.latest
    since = f" against FY{c.prior.fiscal_year}" if c.prior is not None else ""

    def head(key: str) -> str:
        return f"## {pick(rng, HEADERS[key])}"

    title = pick(
        rng,
        [
            f"# {c.name} ({c.ticker}): Financial Analysis",
            f"# {c.name} ({c.ticker}) - FY{fy.fiscal_year} Financial Review",
            f"# Financial Analysis: {c.name} ({c.ticker})",
        ],
    )
    intro = pick(
        rng,
        [
            f"{c.name} operates in the {c.sector} sector ({c.sub_industry}). This review covers "
            f"FY{fy.fiscal_year}{since}.",
            f"We review {c.ticker}'s FY{fy.fiscal_year} results{since} ({c.sector}, {c.sub_industry}).",
        ],
    )
    if c.institution is not None:
        parts = _institution_sections(ctx, rng)
        takeaways = (
            f"{head('takeaways')}\n{bullets(shuffled(rng, parts['takeaways'], keep_first=1))}\n\n"
            f"{_institution_verdict(ctx)}"
        )
        ratios = f"{head('ratios')}\n{_institution_ratio_table(ctx, rng)}"
        profitability = f"{head('profitability')}\n{bullets(parts['profitability'])}"
        returns = f"{head('returns')}\n{bullets(parts['returns'])}"
        leverage = f"{head('leverage')}\n{bullets(parts['leverage'])}"
        cash = f"{head('cash')}\n{bullets(parts['cash'])}"
    else:
        takeaways = f"{head('takeaways')}\n{bullets(_takeaways(ctx, rng))}\n\n{_verdict(ctx)}"
        ratios = f"{head('ratios')}\n{_ratio_table(ctx, rng)}"
        profitability = f"{head('profitability')}\n{bullets(_profitability(ctx, rng))}"
        returns = f"{head('returns')}\n{bullets(_returns(ctx, rng))}"
        leverage = f"{head('leverage')}\n{bullets(_leverage(ctx, rng))}"
        cash = f"{head('cash')}\n{bullets(_cash(ctx, rng))}"
    growth_lines = _growth(ctx, rng) or ["Growth rates are not available for this record."]
    growth = f"{head('growth')}\n{bullets(growth_lines)}"
    comparison = _comparison_table(ctx)
    if comparison:
        growth += f"\n\n{comparison}"

    analysis = pick(
        rng,
        [
            [growth, profitability, returns, cash, leverage],
            [profitability, returns, leverage, cash, growth],
            [profitability, growth, cash, returns, leverage],
        ],
    )
    body = [takeaways, *analysis]
    body.insert(1 if rng.random() < 0.5 else len(body), ratios)
    condition = _condition(ctx, rng)
    if condition:
        body.insert(1, f"{head('condition')}\n{condition}")
    return "\n\n".join([title, intro, *body, disclaimer(rng)])


FAMILY = Family(
    name="financial_analysis",
    title="Financial analysis",
    instructions=INSTRUCTIONS,
    sections=SECTIONS,
    respond=respond,
)
