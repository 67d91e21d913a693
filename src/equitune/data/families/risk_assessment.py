"""Risk assessment: business, financial, regulatory and valuation risk, a risk-rating summary, and how the
bear scenario and the WACC sensitivity quantify the downside.

Business and financial risk are tied to the company's own figures (growth, margins, leverage, coverage);
regulatory risk is described in words for the company's sector and sub-industry. Risk levels come from
fixed judgement bands that are never written as figures.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from equitune.data.blocks import (
    condition_shifts,
    discount_rate,
    money,
    mult,
    pct,
    price,
    rating_word,
    sensitivity_table_of,
)
from equitune.data.context import ExampleContext
from equitune.data.families.common import Family, bullets, disclaimer, pick, shuffled
from equitune.finance.target import Scenario

INSTRUCTIONS = (
    "Write a risk assessment for {name} ({ticker}) with a risk-rating summary.",
    "What are the key risks to owning {ticker}? Cover business, financial and regulatory risk.",
    "Prepare the risks section of an equity research report on {name} ({ticker}).",
    "Assess the downside risk in {name}: bear case, WACC sensitivity and balance-sheet risk.",
    "Give me a structured risk review of {ticker}, rating each risk Low, Medium or High.",
    "How risky is {name} ({ticker})? Quantify the downside using the scenarios and sensitivity table.",
    "Identify and rate the business, financial and regulatory risks facing {name}.",
    "Draft an investment-risk assessment on {ticker} for a portfolio manager.",
    "As a risk-focused analyst, review {name} ({ticker}) and summarise the risk profile.",
    "What could go wrong with {ticker}? Tie each risk to the company's figures.",
    "Write the key risks and downside scenarios for {name} ({ticker}), a {sector} company.",
    "Evaluate {name}'s leverage, coverage and earnings risk, and what the bear case implies.",
    "Provide a risk matrix for {ticker} covering business, financial, regulatory and valuation risk.",
    "How much downside does {name} carry? Use the bear scenario and the WACC sensitivity.",
    "Summarise the risks to our view on {ticker}, with an overall risk rating.",
    "Using only the data below, write a risk assessment of {name} ({ticker}).",
    "Produce a risk review of {name} in institutional format: risks, ratings, downside.",
    "Rate {ticker}'s business, financial and regulatory risks and explain the drivers.",
    "What are the main financial and regulatory risks for {name} in the {sector} sector?",
    "Stress-test the investment case for {name} ({ticker}): what does the bear case show?",
    "Give a risk assessment of {ticker} with a summary table and the downside scenarios.",
    "Write up the risk profile of {name} ({ticker}) for an investment committee.",
)

SECTIONS = ("header", "fiscal", "ratios", "wacc", "sensitivity", "target", "scenarios", "condition")

# Section headers by key: every response has each key of ``REQUIRED_SECTIONS`` (and "condition" when the
# market condition is not the base case) under one of these titles.
HEADERS: dict[str, tuple[str, ...]] = {
    "summary": ("Risk Rating Summary", "Risk Summary", "Risk Matrix"),
    "business": ("Business Risk", "Business and Operating Risk", "Operating Risk"),
    "financial": ("Financial Risk", "Balance-Sheet and Financial Risk", "Leverage and Financial Risk"),
    "regulatory": ("Regulatory Risk", "Regulatory and Policy Risk", "Policy and Regulatory Risk"),
    "downside": ("Quantifying the Downside", "Downside Scenarios", "Bear Case and Sensitivity"),
    "condition": ("Market Condition", "Market Condition Stress", "Scenario Overlay"),
    "mitigants": ("Mitigants", "What Offsets the Risks", "Risk Mitigants"),
}
REQUIRED_SECTIONS: tuple[str, ...] = ("summary", "business", "financial", "regulatory", "downside")

Fmt = Callable[[float], str]
LEVELS = ("Low", "Medium", "High")

# What drives revenue volatility, by sub-industry (then sector); True marks a cyclical business.
_CYCLE_BY_SUB_INDUSTRY: dict[str, tuple[bool, str]] = {
    "Semiconductors": (True, "semiconductor demand is cyclical, with inventory build-ups and corrections"),
    "Application Software": (
        False,
        "subscription revenue recurs, but growth depends on enterprise IT budgets",
    ),
    "Technology Hardware, Storage & Peripherals": (
        True,
        "demand depends on product cycles and consumers' willingness to upgrade",
    ),
    "Interactive Media & Services": (True, "advertising revenue is sensitive to the economic cycle"),
    "Integrated Telecommunication Services": (
        False,
        "subscription revenue recurs, but the market is mature and price-competitive",
    ),
    "Movies & Entertainment": (False, "results depend on subscriber growth and the return on content spend"),
    "Aerospace & Defense": (False, "revenue depends on government budgets and execution on long programmes"),
    "Rail Transportation": (True, "freight volumes follow industrial production and goods consumption"),
    "Transaction & Payment Processing Services": (
        True,
        "volumes track consumer spending and cross-border travel",
    ),
    "Financial Exchanges & Data": (False, "trading and issuance activity vary with market conditions"),
    "Telecom Tower REITs": (False, "rent comes from a handful of large wireless carriers"),
    "Retail REITs": (True, "rents depend on tenant health and store traffic"),
    "Oil & Gas Refining & Marketing": (True, "earnings track volatile refining margins"),
}
_CYCLE_BY_SECTOR: dict[str, tuple[bool, str]] = {
    "Energy": (True, "earnings track oil and gas prices, which are volatile"),
    "Materials": (True, "demand and pricing follow the industrial and housing cycle"),
    "Industrials": (True, "order books follow the economic cycle"),
    "Consumer Discretionary": (True, "spending is discretionary and sensitive to consumer confidence"),
    "Consumer Staples": (False, "demand is defensive, but input costs and private labels pressure margins"),
    "Health Care": (False, "demand is defensive; patent expiries and pipeline setbacks are the main threats"),
    "Utilities": (False, "regulated demand is stable; the risk sits in capital spending and cost recovery"),
    "Real Estate": (False, "rental income is contracted, but occupancy and tenant health drive growth"),
    "Financials": (True, "activity levels vary with markets and the economy"),
    "Information Technology": (True, "technology spending is cyclical and competition is intense"),
    "Communication Services": (False, "competition for subscribers and advertisers is intense"),
}

# Regulatory level and themes in words, by sub-industry (then sector).
_REGULATION_BY_SUB_INDUSTRY: dict[str, tuple[str, tuple[str, ...]]] = {
    "Semiconductors": (
        "Medium",
        (
            "export controls on advanced chips and China trade tensions",
            "conditions attached to government chip-manufacturing subsidies",
            "antitrust review of acquisitions across several jurisdictions",
        ),
    ),
    "Application Software": (
        "Medium",
        (
            "data-protection and data-residency rules",
            "emerging rules on artificial intelligence in Europe and the US",
            "antitrust scrutiny of bundling and large acquisitions",
        ),
    ),
    "Technology Hardware, Storage & Peripherals": (
        "Medium",
        (
            "app-store and antitrust scrutiny in the US and the EU, including the Digital Markets Act",
            "tariffs and supply-chain concentration in China",
            "privacy rules and government requests for data access",
        ),
    ),
    "Interactive Media & Services": (
        "High",
        (
            "antitrust cases against search and advertising practices",
            "privacy rules that limit ad targeting and data use",
            "content-moderation duties under the EU's Digital Services Act",
        ),
    ),
    "Integrated Telecommunication Services": (
        "Medium",
        (
            "spectrum licensing and the cost of future auctions",
            "net-neutrality and universal-service obligations",
            "approvals to retire legacy copper networks",
        ),
    ),
    "Movies & Entertainment": (
        "Low",
        (
            "local-content and investment obligations in some markets",
            "consumer-protection rules on subscriptions and pricing",
        ),
    ),
    "Broadline Retail": (
        "Medium",
        (
            "antitrust action over marketplace practices",
            "labour and warehouse-safety rules",
            "tariffs on imported goods",
        ),
    ),
    "Home Improvement Retail": (
        "Low",
        ("product-safety and labour rules", "tariffs on imported goods"),
    ),
    "Restaurants": (
        "Medium",
        (
            "minimum-wage increases for restaurant workers",
            "food-safety regulation",
            "franchise and joint-employer rules",
        ),
    ),
    "Consumer Staples Merchandise Retail": (
        "Low",
        ("minimum-wage and labour rules", "tariffs on imported goods", "food-safety regulation"),
    ),
    "Soft Drinks & Non-alcoholic Beverages": (
        "Medium",
        (
            "sugar taxes and front-of-pack labelling rules",
            "plastic-packaging and recycling mandates",
            "water-use permits in stressed regions",
        ),
    ),
    "Personal Care Products": (
        "Low",
        ("ingredient and labelling regulation", "packaging and recycling mandates"),
    ),
    "Oil & Gas Refining & Marketing": (
        "Medium",
        (
            "renewable-fuel blending obligations and the cost of compliance credits",
            "emissions and fuel-specification rules",
            "policy support for electric vehicles that erodes long-term fuel demand",
        ),
    ),
    "Financial Exchanges & Data": (
        "Medium",
        (
            "SEC and CFTC oversight of market structure, clearing and fees",
            "supervision of credit-rating and index businesses",
            "data-licensing and competition scrutiny",
        ),
    ),
    "Transaction & Payment Processing Services": (
        "High",
        (
            "interchange-fee regulation and antitrust litigation",
            "proposals to require alternative routing networks on credit cards",
            "payment rules in Europe and the growth of state-backed instant payment systems",
        ),
    ),
    "Aerospace & Defense": (
        "Medium",
        (
            "defense budgets, appropriations timing and continuing resolutions",
            "export controls on defense articles",
            "fixed-price contract terms that shift cost overruns to the contractor",
        ),
    ),
    "Rail Transportation": (
        "Medium",
        (
            "Surface Transportation Board oversight of rates and service",
            "safety rules, including on crew size and hazardous-materials transport",
        ),
    ),
    "Telecom Tower REITs": (
        "Medium",
        (
            "REIT qualification rules, including the distribution requirement",
            "tower siting and zoning approvals",
            "spectrum policy that shapes carriers' network spending",
        ),
    ),
    "Retail REITs": (
        "Low",
        ("REIT qualification rules, including the distribution requirement", "zoning and permitting"),
    ),
}
_REGULATION_BY_SECTOR: dict[str, tuple[str, tuple[str, ...]]] = {
    "Health Care": (
        "High",
        (
            "drug-pricing reform, including Medicare price negotiation under the Inflation Reduction Act",
            "FDA approval and safety decisions",
            "patent challenges and generic or biosimilar entry",
        ),
    ),
    "Utilities": (
        "High",
        (
            "rate cases and allowed returns set by state regulators",
            "decarbonisation mandates and recovery of the cost of new generation",
            "wildfire and storm liability, and permitting for transmission",
        ),
    ),
    "Energy": (
        "Medium",
        (
            "methane-emission rules and carbon policy",
            "permitting and leasing on federal lands and offshore",
            "windfall taxes in some jurisdictions",
        ),
    ),
    "Materials": (
        "Medium",
        (
            "chemical-safety and emissions rules",
            "trade duties and tariffs",
            "environmental permits for plants",
        ),
    ),
    "Industrials": ("Medium", ("safety and environmental rules", "trade policy and tariffs")),
    "Consumer Discretionary": ("Low", ("consumer-protection and labour rules", "tariffs on imported goods")),
    "Consumer Staples": ("Low", ("labelling and ingredient rules", "tariffs on imported goods")),
    "Financials": ("Medium", ("capital and conduct regulation", "consumer-protection rules")),
    "Real Estate": ("Low", ("REIT qualification rules", "zoning and permitting")),
    "Information Technology": ("Medium", ("data-protection rules", "export controls and trade policy")),
    "Communication Services": ("Medium", ("competition law", "content and privacy rules")),
}


@dataclass(frozen=True)
class _Risk:
    key: str
    name: str
    level: str
    evidence: str


def _direction(now: float, before: float, fmt: Fmt) -> int:
    """+1 / -1 / 0 for higher / lower / the same as written, so prose never contradicts the figures."""
    if fmt(now) == fmt(before):
        return 0
    return 1 if now > before else -1


def _signed(value: float | None) -> str:
    return pct(value, signed=True)


def _join(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _cycle(ctx: ExampleContext) -> tuple[bool, str]:
    c = ctx.company
    return _CYCLE_BY_SUB_INDUSTRY.get(c.sub_industry) or _CYCLE_BY_SECTOR.get(
        c.sector, (True, "competition and the economic cycle drive results")
    )


def _regulation(ctx: ExampleContext) -> tuple[str, tuple[str, ...]]:
    c = ctx.company
    return _REGULATION_BY_SUB_INDUSTRY.get(c.sub_industry) or _REGULATION_BY_SECTOR.get(
        c.sector, ("Medium", ("sector regulation", "trade policy"))
    )


def _scenario(ctx: ExampleContext, name: str) -> Scenario | None:
    return next((s for s in ctx.analysis.scenarios if s.name == name), None)


# --- risk levels ---------------------------------------------------------------------------------------


def _business_level(ctx: ExampleContext) -> str:
    r = ctx.analysis.ratios
    if ctx.company.institution is not None:  # no operating margin or EBITDA: net margin and growth
        if r.net_margin is None:
            return "High"
        score = int(r.net_margin < 0.10) + int(r.revenue_growth is not None and r.revenue_growth < 0)
        score += int(r.eps_growth is not None and r.eps_growth < 0)
        return "High" if score >= 2 else "Medium" if score == 1 else "Low"
    if r.operating_margin is None or r.operating_margin < 0:
        return "High"
    score = int(r.operating_margin < 0.10)
    score += int(r.revenue_growth is not None and r.revenue_growth < 0)
    score += int(r.ebitda_growth is not None and r.ebitda_growth < 0)
    score += int(_cycle(ctx)[0])
    return "High" if score >= 3 else "Medium" if score >= 1 else "Low"


def _financial_level(ctx: ExampleContext) -> str:
    r, fy = ctx.analysis.ratios, ctx.company.latest
    if ctx.company.institution is not None:
        if fy.cet1_ratio is not None:  # banks: regulatory capital (US minimums plus buffers sit near 10%)
            return "High" if fy.cet1_ratio < 0.105 else "Medium" if fy.cet1_ratio < 0.12 else "Low"
        ratio = r.equity_to_assets
        return "High" if ratio is None or ratio < 0.10 else "Medium" if ratio < 0.20 else "Low"
    x, ic = r.net_debt_to_ebitda, r.interest_coverage
    if x is None and (r.net_debt or 0) > 0 and fy.ebitda is not None and fy.ebitda <= 0:
        return "High"
    if (x is not None and x > 4) or (ic is not None and ic < 2.5):
        return "High"
    if (r.net_debt is not None and r.net_debt <= 0) or (x is not None and x < 1.5 and (ic is None or ic >= 8)):
        return "Low"
    return "Medium"


def _valuation_level(ctx: ExampleContext) -> str:
    t, bear = ctx.analysis.target, _scenario(ctx, "bear")
    downside = bear.upside if bear is not None and bear.upside is not None else t.upside
    if downside is None:
        return "High"
    if downside < -0.25 or (t.upside is not None and t.upside < 0 and downside < -0.10):
        return "High"
    return "Low" if downside >= 0 else "Medium"


def _risks(ctx: ExampleContext) -> list[_Risk]:
    r, t = ctx.analysis.ratios, ctx.analysis.target
    bear = _scenario(ctx, "bear")
    reg_level, themes = _regulation(ctx)
    fy = ctx.company.latest
    if ctx.company.institution is not None:
        business = f"revenue growth {_signed(r.revenue_growth)}, net margin {pct(r.net_margin)}"
        financial = (
            f"CET1 ratio {pct(fy.cet1_ratio)}, equity / assets {pct(r.equity_to_assets)}"
            if fy.cet1_ratio is not None
            else f"equity / assets {pct(r.equity_to_assets)}"
        )
    else:
        business = f"revenue growth {_signed(r.revenue_growth)}, operating margin {pct(r.operating_margin)}"
        financial = f"net debt/EBITDA {mult(r.net_debt_to_ebitda)}, interest coverage {mult(r.interest_coverage)}"
    if bear is not None and bear.value_per_share is not None:
        valuation = f"bear case {price(bear.value_per_share)} ({_signed(bear.upside)})"
    else:
        valuation = f"price target {price(t.price_target)} ({_signed(t.upside)})"
    return [
        _Risk("business", "Business", _business_level(ctx), business),
        _Risk("financial", "Financial", _financial_level(ctx), financial),
        _Risk("regulatory", "Regulatory", reg_level, themes[0]),
        _Risk("valuation", "Valuation / downside", _valuation_level(ctx), valuation),
    ]


def _overall(risks: list[_Risk]) -> str:
    highs = sum(r.level == "High" for r in risks)
    lows = sum(r.level == "Low" for r in risks)
    if highs >= 2:
        return "High"
    return "Low" if highs == 0 and lows >= 2 else "Medium"


# --- sections ------------------------------------------------------------------------------------------


def _summary(ctx: ExampleContext, risks: list[_Risk], rng: random.Random) -> str:
    t = ctx.analysis.target
    overall = _overall(risks)
    evidence = pick(rng, ["Key evidence", "What drives it", "Evidence"])
    lines = [f"| Risk | Rating | {evidence} |", "|---|---|---|"]
    lines += [f"| {r.name} | {r.level} | {r.evidence} |" for r in risks]
    highs = [r.name.lower() for r in risks if r.level == "High"]
    drivers = f", driven by {_join(highs)} risk" if highs else ""
    text = f"**Overall risk: {overall}**{drivers}."
    if t.price_target is not None:
        text += (
            f" Our price target of {price(t.price_target)} ({_signed(t.upside)} against {price(t.price)}) "
            f"carries a {rating_word(ctx)} rating."
        )
    else:
        text += " No price target could be formed, so the stock is not rated."
    return "\n".join(lines) + "\n\n" + text


def _business(ctx: ExampleContext, level: str, rng: random.Random) -> list[str]:
    r, fy, c = ctx.analysis.ratios, ctx.company.latest, ctx.company
    cyclical, driver = _cycle(ctx)
    out = [f"**Rating: {level}.** {driver[0].upper()}{driver[1:]}."]
    if r.revenue_growth is not None:
        if abs(r.revenue_growth) < 0.0005:
            out.append(
                f"Revenue was flat at {money(fy.revenue)} ({_signed(r.revenue_growth)}): without growth, "
                "earnings depend on margins and costs."
            )
        elif r.revenue_growth < 0:
            out.append(
                f"Revenue fell to {money(fy.revenue)} ({_signed(r.revenue_growth)}): a shrinking top line is "
                "the first risk to the investment case."
            )
        else:
            out.append(
                f"Revenue grew {_signed(r.revenue_growth)} to {money(fy.revenue)}; "
                + pick(rng, ["sustaining that pace is the key operating risk.", "a slowdown is the main risk."])
            )
    om = r.operating_margin
    if om is not None and om < 0:
        out.append(
            f"The operating margin is negative at {pct(om)}: operating income was "
            f"{money(fy.operating_income)}, so there is no margin cushion against a weaker top line."
        )
    elif om is not None and om < 0.10:
        out.append(
            f"An operating margin of {pct(om)} leaves a thin cushion: a small fall in revenue or a rise in "
            "costs moves earnings sharply."
        )
    elif om is not None:
        out.append(f"An operating margin of {pct(om)} gives a buffer against revenue or cost pressure.")
    if r.ebitda_growth is not None and r.revenue_growth is not None:
        d = _direction(r.ebitda_growth, r.revenue_growth, _signed)
        if d < 0:
            out.append(
                f"EBITDA growth of {_signed(r.ebitda_growth)} trailed revenue growth of "
                f"{_signed(r.revenue_growth)}: margins are under pressure."
            )
        elif d > 0:
            out.append(
                f"EBITDA growth of {_signed(r.ebitda_growth)} ran ahead of revenue growth of "
                f"{_signed(r.revenue_growth)}, which also means operating leverage would work in reverse "
                "if sales fell."
            )
    bear, base = _scenario(ctx, "bear"), _scenario(ctx, "base")
    if (
        bear is not None
        and base is not None
        and bear.growth_kind == "revenue"
        and bear.initial_growth is not None
        and base.initial_growth is not None
    ):
        out.append(
            f"Our bear case tests this with first-year growth of {pct(bear.initial_growth)} instead of "
            f"{pct(base.initial_growth)} and an FCF margin of {pct(bear.fcf_margin)} instead of "
            f"{pct(base.fcf_margin)}."
        )
    if cyclical and c.sector not in ("Financials",):
        out.append("The business is cyclical, so a recession would hit volumes and pricing together.")
    return out


def _financial(ctx: ExampleContext, level: str, rng: random.Random) -> list[str]:
    r, fy, w, c = ctx.analysis.ratios, ctx.company.latest, ctx.analysis.wacc, ctx.company
    out = [f"**Rating: {level}.**"]
    if r.net_debt is not None and r.net_debt < 0:
        out.append(
            f"{c.ticker} has net cash: net debt is {money(r.net_debt)}, with cash of {money(fy.cash)} "
            f"against total debt of {money(fy.total_debt)}, so refinancing risk is low."
        )
    elif r.net_debt is not None:
        x = r.net_debt_to_ebitda
        if x is not None:
            band = "low" if x < 1.5 else "moderate" if x < 3 else "elevated" if x <= 4 else "high"
            out.append(
                f"Net debt of {money(r.net_debt)} is {mult(x)} EBITDA, "
                f"{'an' if band == 'elevated' else 'a'} {band} level of leverage"
                + (
                    ", though typical of a regulated utility"
                    if band in ("elevated", "high") and c.sector == "Utilities"
                    else ""
                )
                + "."
            )
        elif fy.ebitda is not None and fy.ebitda <= 0:
            out.append(
                f"Net debt of {money(r.net_debt)} sits against EBITDA of {money(fy.ebitda)}: with no "
                "positive EBITDA to service it, leverage is the most pressing risk."
            )
    ic = r.interest_coverage
    if ic is not None and ic < 0:
        out.append(f"Interest coverage is {mult(ic)}: operations did not cover interest in the latest year.")
    elif ic is not None and ic < 2.5:
        out.append(
            f"Interest coverage of {mult(ic)} is thin: a fall in operating income or higher rates would "
            "squeeze it further."
        )
    elif ic is not None and ic < 5:
        out.append(
            f"Interest coverage of {mult(ic)} is adequate, but would tighten quickly if operating income "
            "fell or rates rose."
        )
    elif ic is not None:
        out.append(f"Interest coverage of {mult(ic)} gives room to absorb higher interest costs.")
    elif c.institution is None:
        out.append("Interest coverage cannot be assessed: interest expense is not reported separately.")
    if c.institution is None:  # a lender's debt is its raw material, not its capital structure
        out.append(
            pick(
                rng,
                [
                    f"Debt is {pct(w.debt_weight)} of the capital structure in our WACC, at an after-tax cost of "
                    f"{pct(w.after_tax_cost_of_debt)}.",
                    f"In the WACC, debt carries a weight of {pct(w.debt_weight)} and an after-tax cost of "
                    f"{pct(w.after_tax_cost_of_debt)}.",
                ],
            )
        )
    if fy.free_cash_flow is not None and fy.free_cash_flow < 0:
        out.append(
            f"Free cash flow was negative at {money(fy.free_cash_flow)}, so dividends and investment depend "
            "on external funding."
        )
    elif fy.free_cash_flow is not None and r.fcf_margin is not None and r.fcf_margin >= 0.05:
        out.append(
            f"Free cash flow of {money(fy.free_cash_flow)} ({pct(r.fcf_margin)} of revenue) funds debt "
            "service internally."
        )
    elif fy.free_cash_flow is not None and r.fcf_margin is not None:
        out.append(
            f"Free cash flow of {money(fy.free_cash_flow)} ({pct(r.fcf_margin)} of revenue) is thin, so "
            "investment and dividends lean on the debt and equity markets."
        )
    if fy.total_equity is not None and fy.total_equity <= 0:
        out.append(
            f"Shareholders' equity is negative at {money(fy.total_equity)}, which leaves no book-value "
            "cushion for creditors."
        )
    if c.institution is not None:
        out.extend(_institution_risks(ctx))
    elif c.sector == "Financials":
        out.append(
            "For a financial company, debt and cash can be operating items, so these leverage ratios are a rough guide."
        )
    return out


def _institution_risks(ctx: ExampleContext) -> list[str]:
    """A lender's or underwriter's financial risks: capital, credit costs, funding spread, return on equity."""
    fy, prior, c = ctx.company.latest, ctx.company.prior, ctx.company
    out: list[str] = []
    if fy.cet1_ratio is not None:
        out.append(
            f"Capital: a CET1 ratio of {pct(fy.cet1_ratio)} is the buffer that absorbs credit losses before "
            "regulators restrict dividends and buybacks."
        )
    if (
        prior is not None
        and fy.provision_for_credit_losses is not None
        and prior.provision_for_credit_losses is not None
    ):
        d = _direction(fy.provision_for_credit_losses, prior.provision_for_credit_losses, money)
        if d != 0:
            out.append(
                f"Credit: the provision for credit losses {'rose' if d > 0 else 'fell'} to "
                f"{money(fy.provision_for_credit_losses)} from {money(prior.provision_for_credit_losses)}; a "
                "recession would raise it again."
            )
    if prior is not None and fy.net_interest_income is not None and prior.net_interest_income is not None:
        d = _direction(fy.net_interest_income, prior.net_interest_income, money)
        if d != 0:
            out.append(
                f"Rates: net interest income {'grew' if d > 0 else 'fell'} to {money(fy.net_interest_income)} from "
                f"{money(prior.net_interest_income)}; falling rates or dearer deposits would squeeze it."
            )
    e = ctx.analysis.excess_return
    if e is not None:
        out.append(
            f"Returns: the valuation rests on an ROE of {pct(e.roe)} against a {pct(e.cost_of_equity)} cost of "
            "equity; a lower return on the same book value lowers the justified price to book."
        )
    if c.institution == "insurer":
        out.append("Underwriting: claims inflation and catastrophe losses hit earnings before pricing can adjust.")
    return out


def _regulatory(ctx: ExampleContext, level: str, rng: random.Random) -> list[str]:
    c = ctx.company
    _, themes = _regulation(ctx)
    intro = pick(
        rng,
        [
            f"**Rating: {level}.** The themes to monitor in {c.sub_industry}:",
            f"**Rating: {level}.** For {c.ticker}, regulation bears on:",
        ],
    )
    items = [f"{t[0].upper()}{t[1:]}." for t in shuffled(rng, themes)]
    return [intro + "\n" + "\n".join(f"  - {item}" for item in items)]


def _scenario_table(ctx: ExampleContext) -> str:
    t = ctx.analysis.target
    method = ctx.analysis.method
    if method == "dcf":
        cols, rule = "First-year growth | FCF margin | WACC", "|---:|---:|---:|"
    elif method == "ddm":
        cols, rule = "Dividend growth | Cost of equity", "|---:|---:|"
    else:
        cols, rule = "Cost of equity", "|---:|"
    lines = [f"| Scenario | Value per share | vs price {price(t.price)} | {cols} |", "|---|---:|---:" + rule]
    for s in ctx.analysis.scenarios:
        head = f"| {s.name.capitalize()} | {price(s.value_per_share)} | {_signed(s.upside)} | "
        if method == "dcf":
            lines.append(head + f"{pct(s.initial_growth)} | {pct(s.fcf_margin)} | {pct(s.wacc)} |")
        elif method == "ddm":
            lines.append(head + f"{pct(s.initial_growth)} | {pct(s.wacc)} |")
        else:
            lines.append(head + f"{pct(s.wacc)} |")
    return "\n".join(lines)


def _ordering_note(ctx: ExampleContext) -> str | None:
    """Why the scenario values do not run bear < base < bull, when they do not."""
    values = {s.name: s.value_per_share for s in ctx.analysis.scenarios}
    bear, base, bull = values.get("bear"), values.get("base"), values.get("bull")
    if bear is None or base is None or bull is None or bear < base < bull:
        return None
    label = ctx.analysis.target.intrinsic_label
    if len({s.method for s in ctx.analysis.scenarios}) > 1:
        reason = (
            f"the {label} value is meaningful in some scenarios and not in others, which changes how each value is "
            "blended"
        )
    else:
        reason = f"the {label} value responds unevenly to the scenario shifts"
    return (
        f"The scenario values do not run in order from bear to bull: {reason}, so the sensitivity table is "
        "the better gauge of the downside."
    )


def _downside(ctx: ExampleContext, rng: random.Random) -> list[str]:
    t = ctx.analysis.target
    bear, base = _scenario(ctx, "bear"), _scenario(ctx, "base")
    out = []
    if bear is not None and bear.value_per_share is not None:
        text = (
            f"The bear case values {ctx.ticker} at {price(bear.value_per_share)} per share, "
            f"{_signed(bear.upside)} against the current price of {price(t.price)}"
        )
        if bear.value_per_share < t.price:
            text += ": " + pick(
                rng,
                [
                    "that is the downside if growth, margins and the discount rate all move against us."
                    if ctx.analysis.method == "dcf"
                    else "that is the downside if dividend growth slows and the cost of equity rises."
                    if ctx.analysis.method == "ddm"
                    else "that is the downside if the discount rate moves against us.",
                    "the loss an investor takes if lower growth, thinner margins and a higher WACC arrive together."
                    if ctx.analysis.method == "dcf"
                    else "the loss an investor takes if slower dividend growth and a higher cost of equity arrive "
                    "together."
                    if ctx.analysis.method == "ddm"
                    else "the loss an investor takes if the cost of equity rises.",
                ],
            )
        else:
            text += ": even the bear case sits above the current price, which limits the downside."
        out.append(text)
        note = _ordering_note(ctx)
        if note:
            out.append(note)
        elif base is not None and base.value_per_share is not None:
            out.append(
                f"Against the base-case value of {price(base.value_per_share)}, the bear case shows how "
                "much of the target depends on the base assumptions holding."
            )
    else:
        out.append("The bear case gives no value per share, so the downside rests on the sensitivity table.")
    out.extend(_sensitivity(ctx))
    if t.price_target is None:
        out.append("With no price target, the stock is not rated.")
    return out


def _sensitivity(ctx: ExampleContext) -> list[str]:
    a, t = ctx.analysis, ctx.analysis.target
    s, _, _ = sensitivity_table_of(ctx)
    label = t.intrinsic_label
    rate = "WACC" if a.method == "dcf" else "cost of equity"
    if s is None:
        if a.dcf is not None and not a.dcf.meaningful:
            return [
                f"The DCF is not meaningful for {ctx.ticker} and is excluded, so there is no sensitivity grid; the "
                + (
                    f"target rests on the comparables value of {price(t.comps_value_per_share)}."
                    if t.comps_value_per_share is not None
                    else "stock has no price target."
                )
            ]
        return [f"The {rate} sensitivity is not available because the {label} model could not run."]
    br, bc = s.base_row, s.base_column
    w0, g0, v0 = s.wacc_values[br], s.terminal_growth_values[bc], s.values[br][bc]
    out = []
    if not t.dcf_meaningful and not t.comps_meaningful:
        out.append(
            f"Neither the {label} nor the comparables value is meaningful, so the grid is the only quantified "
            "guide to the downside."
        )
    elif not t.dcf_meaningful:
        out.append(
            f"The {label} value is excluded for {ctx.ticker}, so the target rests on the comparables value of "
            f"{price(t.comps_value_per_share)}."
        )
    elif t.method == "blend":
        out.append(
            f"The {label} value feeds the target as part of a {t.blend} blend, so its sensitivity passes through."
        )
    v1 = s.values[br + 1][bc] if br + 1 < len(s.wacc_values) else None
    if v0 is not None and v1 is not None:
        verb = {1: "lifts", -1: "cuts", 0: "leaves"}[_direction(v1, v0, price)]
        change = f"from {price(v0)} to {price(v1)}" if verb != "leaves" else f"at {price(v1)}"
        out.append(
            f"Raising the {rate} from {pct(w0)} to {pct(s.wacc_values[br + 1])} (growth {pct(g0)}) "
            f"{verb} the {label} value per share {change}."
        )
    worst = s.values[-1][0]
    best = s.values[0][-1]
    if worst is not None:
        rel = "below" if worst < t.price else "above"
        out.append(
            f"At the harshest corner of the grid ({rate} {pct(s.wacc_values[-1])}, growth "
            f"{pct(s.terminal_growth_values[0])}) the {label} model gives {price(worst)}, {rel} the {price(t.price)} "
            "share price."
        )
    if best is not None and t.dcf_meaningful and best < t.price:
        out.append(
            f"Even the most generous cell ({rate} {pct(s.wacc_values[0])}, growth "
            f"{pct(s.terminal_growth_values[-1])}) gives only {price(best)}: the share price already "
            "discounts more than our assumptions support."
        )
    return out


def _mitigants(ctx: ExampleContext) -> list[str]:
    r, fy, w = ctx.analysis.ratios, ctx.company.latest, ctx.analysis.wacc
    out = []
    if r.net_debt is not None and r.net_debt < 0:
        out.append(f"A net cash balance sheet (net debt {money(r.net_debt)}).")
    if r.interest_coverage is not None and r.interest_coverage >= 10:
        out.append(f"Interest coverage of {mult(r.interest_coverage)}.")
    if r.roic is not None and _direction(r.roic, w.wacc, pct) > 0:
        out.append(f"ROIC of {pct(r.roic)} above the WACC of {pct(w.wacc)}: the franchise earns its cost of capital.")
    if r.fcf_margin is not None and r.fcf_margin >= 0.15:
        out.append(f"An FCF margin of {pct(r.fcf_margin)}, which funds dividends and debt service internally.")
    bear = _scenario(ctx, "bear")
    if bear is not None and bear.value_per_share is not None and bear.value_per_share >= ctx.analysis.target.price:
        out.append(f"A bear-case value of {price(bear.value_per_share)} above the current share price.")
    if fy.operating_income is not None and fy.operating_income > 0 and (r.operating_margin or 0) >= 0.25:
        out.append(f"A high operating margin of {pct(r.operating_margin)}.")
    e = ctx.analysis.excess_return
    if e is not None and e.roe_spread > 0 and pct(e.roe) != pct(e.cost_of_equity):
        out.append(f"An ROE of {pct(e.roe)} above the {pct(e.cost_of_equity)} cost of equity.")
    if fy.cet1_ratio is not None and fy.cet1_ratio >= 0.12:
        out.append(f"A CET1 ratio of {pct(fy.cet1_ratio)}, well above the regulatory minimum.")
    return out


def _condition(ctx: ExampleContext, rng: random.Random) -> str | None:
    if ctx.is_base:
        return None
    cond, base, now = ctx.condition, ctx.base, ctx.analysis
    shifts = condition_shifts(ctx)
    stresses = []
    if cond.risk_free_shift or cond.equity_risk_premium_shift:
        stresses.append("valuation risk through the discount rate")
        if cond.risk_free_shift > 0 and (now.ratios.net_debt or 0) > 0:
            stresses.append("financial risk through the cost of refinancing debt")
    if cond.revenue_growth_shift or cond.fcf_margin_shift:
        stresses.append("business risk through growth and margins")
    lines = [f"**{cond.title}**" + (f": {'; '.join(shifts)}." if shifts else ".")]
    pt_now, pt_base = now.target.price_target, base.target.price_target
    if pt_now is not None and pt_base is not None:
        d = _direction(pt_now, pt_base, price)
        move = "raises" if d > 0 else "lowers" if d < 0 else "leaves"
        effect = (
            f"It {move} the price target to {price(pt_now)} from {price(pt_base)}"
            if move != "leaves"
            else f"It leaves the price target at {price(pt_now)}"
        )
    else:
        effect = f"The price target is {price(pt_now)} against {price(pt_base)} in the base case"
    label, wacc_base = discount_rate(base)
    _, wacc_now = discount_rate(now)
    if _direction(wacc_now, wacc_base, pct) == 0:
        effect += f", with the {label} unchanged at {pct(wacc_now)}"
    else:
        effect += f", with the {label} at {pct(wacc_now)} against {pct(wacc_base)}"
    base_rating = (base.target.rating or "Not rated").upper()
    lines.append(f"{effect}; the rating is {rating_word(ctx)} (base case {base_rating}).")
    if stresses:
        lines.append(
            pick(rng, ["This condition stresses ", "The condition is a live test of "]) + _join(stresses) + "."
        )
    return bullets(lines)


def respond(ctx: ExampleContext, rng: random.Random) -> str:
    """The risk assessment, section order and wording varied by ``rng``."""
    c = ctx.company

    def head(key: str) -> str:
        return f"## {pick(rng, HEADERS[key])}"

    risks = _risks(ctx)
    level = {r.key: r.level for r in risks}
    title = pick(
        rng,
        [
            f"# {c.name} ({c.ticker}): Risk Assessment",
            f"# Key Risks: {c.name} ({c.ticker})",
            f"# {c.name} ({c.ticker}) - Risk Review",
        ],
    )
    intro = pick(
        rng,
        [
            f"We rate {c.ticker}'s risks by type, tie each to the company's own figures and quantify the "
            f"downside with the bear case and the {'WACC' if ctx.analysis.method == 'dcf' else 'cost-of-equity'} "
            "sensitivity.",
            f"This note sets out the business, financial and regulatory risks to {c.name} ({c.sector}, "
            f"{c.sub_industry}) and what the scenarios say about the downside.",
        ],
    )
    summary = f"{head('summary')}\n{_summary(ctx, risks, rng)}"
    business = f"{head('business')}\n{bullets(_business(ctx, level['business'], rng))}"
    financial = f"{head('financial')}\n{bullets(_financial(ctx, level['financial'], rng))}"
    regulatory = f"{head('regulatory')}\n{bullets(_regulatory(ctx, level['regulatory'], rng))}"
    downside = (
        f"{head('downside')}\n**Rating: {level['valuation']}.**\n\n{_scenario_table(ctx)}\n\n"
        f"{bullets(_downside(ctx, rng))}"
    )
    middle = shuffled(rng, [business, financial, regulatory])
    body = [summary, *middle, downside] if rng.random() < 0.6 else [*middle, downside, summary]
    mitigants = _mitigants(ctx)
    if mitigants:
        body.insert(len(body) - (1 if body[-1] is summary else 0), f"{head('mitigants')}\n{bullets(mitigants)}")
    condition = _condition(ctx, rng)
    if condition:
        body.insert(body.index(downside) + 1, f"{head('condition')}\n{condition}")
    return "\n\n".join([title, intro, *body, disclaimer(rng)])


FAMILY = Family(
    name="risk_assessment",
    title="Risk assessment",
    instructions=INSTRUCTIONS,
    sections=SECTIONS,
    respond=respond,
)
