"""Executive summary: rating, 12-month price target, price and upside, key points, an estimates table."""

from __future__ import annotations

import random

from equitune.data.blocks import discount_rate, money, mult, pct, price, rating_word
from equitune.data.context import ExampleContext
from equitune.data.families.common import Family, bullets, disclaimer, pick, shuffled

INSTRUCTIONS = (
    "Write an executive summary for {name} ({ticker}) with a rating and a 12-month price target.",
    "Draft the front page of an equity research note on {ticker}: rating, price target, upside and key points.",
    "Summarise the investment case for {name} in institutional format, using the data below.",
    "Give me an executive summary on {ticker}: recommendation, target price and the estimates table.",
    "Prepare an initiation-style executive summary for {name} ({ticker}).",
    "What is your rating and 12-month price target on {ticker}? Write it up as an executive summary.",
    "Produce a one-page executive summary of {name} for a portfolio manager.",
    "Write the summary section of a sell-side report on {name} ({ticker}), including estimates.",
    "Provide an executive summary with rating, price target and key financial estimates for {ticker}.",
    "As an equity analyst, summarise your view on {name}: rating, target, upside, key points.",
    "Create an executive summary for {ticker} covering rating, target price, current price and upside.",
    "I need a concise executive summary on {name} ({ticker}) with an estimates table.",
    "Write the key takeaways and recommendation for {name} stock.",
    "Summarise {ticker}'s fundamentals and valuation into a rating and price target.",
    "Draft an executive summary on {name} in the style of an institutional research report.",
    "Give a Buy/Hold/Sell call on {ticker} with a 12-month price target and the supporting points.",
    "Write a research summary for {name} ({ticker}) that a PM can read in two minutes.",
    "Provide the headline view on {ticker}: rating, price target, upside and estimates.",
    "Prepare an executive summary for {name} ({ticker}) using only the figures provided.",
    "Using the data block, write an executive summary on {name} with rating and target.",
    "Put together the executive summary for our {ticker} coverage note.",
    "Summarise the equity story for {name} ({ticker}) with a recommendation.",
)

SECTIONS = ("header", "fiscal", "ratios", "target", "scenarios", "estimates", "condition")


def _estimates_table(ctx: ExampleContext) -> str:
    r, n = ctx.estimates.reported, ctx.estimates.next_year
    rows = [
        f"| | FY{r.fiscal_year} | FY{n.fiscal_year}E |",
        "|---|---:|---:|",
        f"| Revenue | {money(r.revenue)} | {money(n.revenue)} |",
        f"| Revenue growth | {pct(r.revenue_growth, signed=True)} | {pct(n.revenue_growth, signed=True)} |",
        f"| EBITDA margin | {pct(r.ebitda_margin)} | {pct(n.ebitda_margin)} |",
        f"| Diluted EPS | {price(r.eps)} | {price(n.eps)} |",
        f"| P/E | {mult(r.pe)} | {mult(n.pe)} |",
    ]
    if ctx.company.institution is not None:  # a lender's or underwriter's EBITDA is not a figure
        rows = [row for row in rows if not row.startswith("| EBITDA margin")]
    return "\n".join(rows)


def _key_points(ctx: ExampleContext, rng: random.Random) -> list[str]:
    a, fy, r = ctx.analysis, ctx.company.latest, ctx.analysis.ratios
    growth_verb = "grew" if (r.revenue_growth or 0) >= 0 else "declined"
    if ctx.company.institution is not None:
        points = [
            f"**Top line:** FY{fy.fiscal_year} revenue of {money(fy.revenue)} {growth_verb} "
            f"{pct(r.revenue_growth, signed=True)} year on year"
            + (f", with net interest income of {money(fy.net_interest_income)}." if fy.net_interest_income else "."),
            f"**Profitability:** net margin {pct(r.net_margin)} and ROE {pct(r.roe)}.",
        ]
        if fy.cet1_ratio is not None:
            points.append(f"**Capital:** a CET1 ratio of {pct(fy.cet1_ratio)}.")
    else:
        points = [
            f"**Top line:** FY{fy.fiscal_year} revenue of {money(fy.revenue)} {growth_verb} "
            f"{pct(r.revenue_growth, signed=True)} year on year, with an EBITDA margin of {pct(r.ebitda_margin)}.",
            f"**Profitability:** operating margin {pct(r.operating_margin)} and net margin {pct(r.net_margin)}; "
            f"ROIC of {pct(r.roic)}.",
            f"**Cash generation:** free cash flow of {money(fy.free_cash_flow)} ({pct(r.fcf_margin)} of revenue), "
            f"{pct(r.fcf_conversion)} of net income.",
            f"**Balance sheet:** net debt of {money(r.net_debt)}, {mult(r.net_debt_to_ebitda)} EBITDA."
            if r.net_debt is not None and r.net_debt_to_ebitda is not None
            else f"**Balance sheet:** cash of {money(fy.cash)} against total debt of {money(fy.total_debt)}.",
        ]
    points.append(_valuation_point(ctx))
    if a.implied:
        points.append(f"**What the price implies:** {a.implied[a.implied.find(':') + 2 :]}")
    bear = next((s for s in a.scenarios if s.name == "bear"), None)
    bull = next((s for s in a.scenarios if s.name == "bull"), None)
    if bear and bull and bear.value_per_share is not None and bull.value_per_share is not None:
        points.append(
            f"**Scenario range:** bear {price(bear.value_per_share)} ({pct(bear.upside, signed=True)}) to bull "
            f"{price(bull.value_per_share)} ({pct(bull.upside, signed=True)})."
        )
    return shuffled(rng, points, keep_first=1)


def _valuation_point(ctx: ExampleContext) -> str:
    """How the target is formed, in one sentence that never blends a single value or prints an excluded one."""
    t = ctx.analysis.target
    label = t.intrinsic_label
    if t.price_target is None:
        return f"**Valuation:** neither the {label} nor the comparables value is meaningful, so there is no target."
    if t.method == "blend":
        return (
            f"**Valuation:** our {price(t.price_target)} target blends a {label} value of "
            f"{price(t.dcf_value_per_share)} with a comparables value of {price(t.comps_value_per_share)} "
            f"({t.blend})."
        )
    alone = "comparables" if t.method == "comps_only" else label
    other = label if t.method == "comps_only" else "comparables"
    return (
        f"**Valuation:** our {price(t.price_target)} target is the {alone} value alone; the {other} value is "
        "excluded as not meaningful."
    )


def _condition_paragraph(ctx: ExampleContext) -> str | None:
    if ctx.is_base:
        return None
    base, now = ctx.base, ctx.analysis
    label, base_rate = discount_rate(base)
    _, now_rate = discount_rate(now)
    if pct(base_rate) == pct(now_rate):
        rate = f"the {label} is unchanged at {pct(now_rate)}"
    else:
        rate = f"the {label} {'rises' if now_rate > base_rate else 'falls'} from {pct(base_rate)} to {pct(now_rate)}"
    bt, nt = base.target.price_target, now.target.price_target
    if bt is None or nt is None:
        target = f"the price target is {price(nt)}"
    elif price(bt) == price(nt):
        target = f"the price target stays at {price(nt)}"
    else:
        target = f"the price target {'falls' if nt < bt else 'rises'} from {price(bt)} to {price(nt)}"
    return (
        f"**{ctx.condition.title}:** {rate} and {target}, which gives a {rating_word(ctx)} rating under this scenario."
    )


def respond(ctx: ExampleContext, rng: random.Random) -> str:
    """The executive summary, section order and wording varied by ``rng``."""
    c, t = ctx.company, ctx.analysis.target
    rating = rating_word(ctx)
    title = pick(
        rng,
        [
            f"# {c.name} ({c.ticker}): {rating}, price target {price(t.price_target)}",
            f"# {c.name} ({c.ticker}) - Executive Summary",
            f"# Equity Research: {c.name} ({c.ticker})",
        ],
    )
    headline = pick(rng, ["## Rating and Price Target", "## Recommendation", "## Investment Rating"])
    rating_block = (
        f"{headline}\n"
        f"- **Rating:** {rating}\n"
        f"- **12-month price target:** {price(t.price_target)}\n"
        f"- **Current price:** {price(t.price)} (as of {c.price_date})\n"
        f"- **Upside:** {pct(t.upside, signed=True)}"
    )
    a = ctx.analysis.assumptions
    verdict = {
        "BUY": "upside clears our Buy threshold",
        "HOLD": "upside sits inside the Hold band",
        "SELL": "the target sits below the current price"
        if a.sell_threshold == 0
        else "upside falls short of our Sell threshold",
    }.get(rating, "no target could be formed")
    summary = (
        f"{pick(rng, ['## Summary', '## Our View', '## Thesis in Brief'])}\n"
        f"We rate {c.ticker} **{rating}**: {verdict}, with {pct(t.upside, signed=True)} to our "
        f"{price(t.price_target)} target."
    )
    points = f"{pick(rng, ['## Key Points', '## Investment Highlights', '## What Drives Our View'])}\n" + bullets(
        _key_points(ctx, rng)
    )
    condition = _condition_paragraph(ctx)
    estimates = f"{pick(rng, ['## Estimates', '## Financial Summary and Estimates', '## Key Estimates'])}\n"
    estimates += _estimates_table(ctx)
    body = [rating_block, summary, points, estimates]
    if rng.random() < 0.5:
        body[2], body[3] = body[3], body[2]
    if condition:
        body.insert(2, f"## Scenario: {ctx.condition.title}\n{condition}")
    return "\n\n".join([title, *body, disclaimer(rng)])


FAMILY = Family(
    name="executive_summary",
    title="Executive summary",
    instructions=INSTRUCTIONS,
    sections=SECTIONS,
    respond=respond,
)
