"""Investment thesis: bull, base and bear cases with their values and the assumptions behind them, and
three to five catalysts tied to the company's own figures (margins, growth, cash returns, balance sheet)."""

from __future__ import annotations

import random
from collections.abc import Callable

from equitune.data.blocks import condition_shifts, discount_rate, money, mult, pct, price, rating_word
from equitune.data.context import ExampleContext
from equitune.data.families.common import Family, bullets, disclaimer, pick, shuffled
from equitune.finance.target import Scenario

INSTRUCTIONS = (
    "Write the investment thesis for {name} ({ticker}): bull, base and bear cases and the catalysts.",
    "What are the bull and bear cases for {ticker}? Include scenario values and the key catalysts.",
    "Lay out the investment thesis on {name}, with scenario analysis and specific catalysts.",
    "Give me the bull case, base case and bear case for {ticker}, with what each assumes.",
    "Draft the thesis section of our {name} ({ticker}) research note, including catalysts.",
    "Why own (or avoid) {ticker}? Set out the scenarios and the catalysts that matter.",
    "Build a bull/base/bear framework for {name} and name the catalysts to watch.",
    "As a {sector} analyst, write the investment thesis for {name} ({ticker}).",
    "Summarise the upside and downside scenarios for {ticker} and the assumptions behind them.",
    "What has to go right, and what could go wrong, for {name}? Quantify the scenarios.",
    "Write an investment case for {ticker} with scenario values and three to five catalysts.",
    "Prepare a thesis page on {name} ({ticker}) for the investment committee.",
    "Explain the risk/reward on {ticker} using the bull, base and bear scenarios.",
    "Set out the key debates on {name}: scenario values, assumption shifts and catalysts.",
    "Using only the figures provided, write the investment thesis for {ticker}.",
    "Give the investment thesis for {name}: where could the stock go, and what would move it?",
    "Describe the scenario range for {ticker} and the company-specific catalysts behind our view.",
    "Write the bull vs bear debate on {name} ({ticker}) in institutional research format.",
    "I need a thesis on {ticker} with scenario values and catalysts tied to its financials.",
    "What is the investment thesis on {name}? Cover the base case, the bull and bear cases, and catalysts.",
    "Draft a scenario analysis and catalyst list for {name} ({ticker}).",
    "Make the case for and against {ticker}, with the values each scenario implies.",
)

SECTIONS = ("header", "fiscal", "ratios", "target", "scenarios", "estimates", "condition")

# Header variants of each required section (a test checks one of each is present).
REQUIRED_SECTIONS: dict[str, tuple[str, ...]] = {
    "thesis": ("## Investment Thesis", "## Our Thesis", "## Thesis Summary"),
    "base": ("## Base Case", "## Base Case: Our Price Target", "## Base Scenario"),
    "bull": ("## Bull Case", "## Upside Scenario (Bull Case)", "## Bull Scenario"),
    "bear": ("## Bear Case", "## Downside Scenario (Bear Case)", "## Bear Scenario"),
    "catalysts": ("## Catalysts", "## Key Catalysts", "## Catalysts to Watch"),
}

_WORDS = {3: "three", 4: "four", 5: "five"}


def _scenario(ctx: ExampleContext, name: str) -> Scenario | None:
    return next((s for s in ctx.analysis.scenarios if s.name == name), None)


def _vs(
    value: float,
    reference: float,
    more: str,
    less: str,
    same: str = "in line with",
    fmt: Callable[[float], str] = pct,
) -> str:
    """``more`` / ``less`` / ``same`` as ``value`` compares with ``reference``; figures that read the same
    when written (``fmt``) are the same."""
    if fmt(value) == fmt(reference):
        return same
    return more if value > reference else less


# ----------------------------------------------------------------------------------------------- scenarios


def _scenario_table(ctx: ExampleContext) -> str:
    method = ctx.analysis.method
    if method == "dcf":
        rows = [
            "| Scenario | Value per share | Upside | First-year growth | FCF margin | WACC |",
            "|---|---:|---:|---:|---:|---:|",
        ]
    elif method == "ddm":
        rows = [
            "| Scenario | Value per share | Upside | Dividend growth | Cost of equity |",
            "|---|---:|---:|---:|---:|",
        ]
    else:
        rows = ["| Scenario | Value per share | Upside | Cost of equity |", "|---|---:|---:|---:|"]
    for name in ("bull", "base", "bear"):
        s = _scenario(ctx, name)
        if s is None:
            continue
        head = f"| {name.capitalize()} | {price(s.value_per_share)} | {pct(s.upside, signed=True)} | "
        if method == "dcf":
            rows.append(head + f"{pct(s.initial_growth)} | {pct(s.fcf_margin)} | {pct(s.wacc)} |")
        elif method == "ddm":
            rows.append(head + f"{pct(s.initial_growth)} | {pct(s.wacc)} |")
        else:
            rows.append(head + f"{pct(s.wacc)} |")
    return "\n".join(rows)


def _shifts(s: Scenario, base: Scenario) -> list[str]:
    """The scenario's assumptions against the base case, in words with the given figures."""
    out: list[str] = []
    growth = "first-year revenue growth" if s.growth_kind == "revenue" else "dividend growth"
    rate = "WACC" if s.rate_kind == "wacc" else "cost of equity"
    if s.initial_growth is not None and base.initial_growth is not None:
        out.append(
            f"{growth} of {pct(s.initial_growth)} "
            f"({_vs(s.initial_growth, base.initial_growth, 'above', 'below', 'in line with')} the "
            f"{pct(base.initial_growth)} base case)"
        )
    if s.fcf_margin is not None and base.fcf_margin is not None:
        out.append(
            f"an FCF margin of {pct(s.fcf_margin)} "
            f"({_vs(s.fcf_margin, base.fcf_margin, 'up', 'down', 'unchanged')} from {pct(base.fcf_margin)})"
        )
    if s.wacc is not None and base.wacc is not None:
        out.append(
            f"a {_vs(s.wacc, base.wacc, 'higher', 'lower', 'unchanged')} {rate} of {pct(s.wacc)} (base "
            f"{pct(base.wacc)})"
        )
    if s.shift.exit_multiple and s.rate_kind == "wacc":
        out.append(f"a {'higher' if s.shift.exit_multiple > 0 else 'lower'} peer EV/EBITDA multiple")
    return out


def _case(ctx: ExampleContext, rng: random.Random, name: str) -> str:
    header = pick(rng, REQUIRED_SECTIONS[name])
    s, base = _scenario(ctx, name), _scenario(ctx, "base")
    r = ctx.analysis.ratios
    p = ctx.analysis.market.price
    if s is None or base is None or s.value_per_share is None:
        return f"{header}\nThe {name} case gives no meaningful value per share for {ctx.ticker}."
    lines = [header]
    opening = pick(
        rng,
        [
            f"The {name} case values {ctx.ticker} at **{price(s.value_per_share)}** per share "
            f"({pct(s.upside, signed=True)} from {price(p)}).",
            f"Our {name} scenario gives **{price(s.value_per_share)}** per share, an implied return of "
            f"{pct(s.upside, signed=True)}.",
        ],
    )
    shifts = _shifts(s, base)
    if shifts:
        opening += " It assumes " + ", ".join(shifts[:-1]) + (", and " if len(shifts) > 1 else "") + shifts[-1] + "."
    lines.append(opening)
    points: list[str] = []
    if s.initial_growth is not None and r.revenue_growth is not None and s.growth_kind == "revenue":
        rel = _vs(s.initial_growth, r.revenue_growth, "above", "below")
        points.append(
            f"**Growth:** {pct(s.initial_growth)} would be {rel} the {pct(r.revenue_growth, signed=True)} "
            f"revenue growth reported in FY{r.fiscal_year}."
        )
    if s.fcf_margin is not None and r.fcf_margin is not None:
        rel = _vs(s.fcf_margin, r.fcf_margin, "above", "below")
        points.append(
            f"**Cash generation:** an FCF margin of {pct(s.fcf_margin)} sits {rel} the reported {pct(r.fcf_margin)}."
        )
    if s.upside is not None and s.value_per_share is not None:
        if price(s.value_per_share) == price(p):
            points.append(f"**Read-across:** the {name} value matches the {price(p)} share price.")
        elif name == "bull" and s.upside < 0:
            points.append(f"**Read-across:** even the bull case sits below the {price(p)} share price.")
        elif name == "bear" and s.upside > 0:
            points.append(f"**Read-across:** even the bear case sits above the {price(p)} share price.")
        elif name == "bull":
            points.append(f"**Read-across:** the bull value is above the {price(p)} share price.")
        else:
            points.append(f"**Read-across:** the bear value is below the {price(p)} share price.")
    if points:
        lines.append(bullets(points))
    return "\n".join(lines)


def _base_case(ctx: ExampleContext, rng: random.Random) -> str:
    header = pick(rng, REQUIRED_SECTIONS["base"])
    t, base = ctx.analysis.target, _scenario(ctx, "base")
    rating = rating_word(ctx)
    if t.price_target is None:
        return f"{header}\nNo base-case value is meaningful, so we set no price target ({rating})."
    text = (
        f"Our base case is the {price(t.price_target)} price target ({t.blend}), an implied return of "
        f"{pct(t.upside, signed=True)} from {price(t.price)}, which supports a **{rating}** rating."
    )
    if base is not None and base.initial_growth is not None and base.fcf_margin is not None and base.wacc:
        text += (
            f" It rests on first-year revenue growth of {pct(base.initial_growth)}, an FCF margin of "
            f"{pct(base.fcf_margin)} and a WACC of {pct(base.wacc)}."
        )
    elif base is not None and base.rate_kind == "cost_of_equity" and base.wacc is not None:
        growth = f"dividend growth of {pct(base.initial_growth)} and " if base.initial_growth is not None else ""
        text += (
            f" It values the shareholders' claim with the {t.intrinsic_label} model, on {growth}a cost of equity of "
            f"{pct(base.wacc)}."
        )
    if t.method == "comps_only":
        text += f" The {t.intrinsic_label} value is excluded, so the target rests on peer multiples alone."
    elif t.comps_value_per_share is None and t.price_target is not None:
        text += f" The comparables value is excluded, so the target rests on the {t.intrinsic_label} value alone."
    return f"{header}\n{text}"


# ----------------------------------------------------------------------------------------------- catalysts


def _margin_catalyst(ctx: ExampleContext) -> str | None:
    r = ctx.analysis.ratios
    if r.operating_margin is None:
        return None
    if r.operating_margin <= 0:
        return (
            f"**Return to operating profit:** the operating margin is {pct(r.operating_margin)}; any move "
            "toward break-even would change the earnings base."
        )
    if r.ebitda_growth is not None and r.revenue_growth is not None and r.ebitda_growth > r.revenue_growth:
        return (
            f"**Margin expansion:** EBITDA grew {pct(r.ebitda_growth, signed=True)} against revenue growth "
            "of "
            f"{pct(r.revenue_growth, signed=True)}, so operating leverage is already lifting margins from an "
            f"operating margin of {pct(r.operating_margin)}."
        )
    gross = f" on a {pct(r.gross_margin)} gross margin" if r.gross_margin is not None else ""
    return (
        f"**Margin expansion:** the operating margin stands at {pct(r.operating_margin)}{gross}; expansion "
        "from "
        "this level through mix and cost discipline would flow straight to earnings."
    )


def _growth_catalyst(ctx: ExampleContext) -> str | None:
    e = ctx.estimates
    rep, nxt = e.reported, e.next_year
    if nxt.revenue_growth is None:
        return None
    eps = ""
    if nxt.eps is not None and rep.eps is not None:
        eps = f", with EPS of {price(nxt.eps)} against {price(rep.eps)} reported in FY{rep.fiscal_year}"
    if nxt.revenue_growth >= 0:
        return (
            f"**Top-line growth:** we estimate FY{nxt.fiscal_year}E revenue of {money(nxt.revenue)} "
            f"({pct(nxt.revenue_growth, signed=True)}){eps}; delivery at or above that pace is the first "
            "test "
            "of the thesis."
        )
    return (
        f"**Revenue stabilisation:** our FY{nxt.fiscal_year}E revenue of {money(nxt.revenue)} "
        f"({pct(nxt.revenue_growth, signed=True)}){eps}; evidence that the decline is bottoming would be a "
        "positive catalyst."
    )


def _cash_return_catalyst(ctx: ExampleContext) -> str | None:
    fy, prior, r = ctx.company.latest, ctx.company.prior, ctx.analysis.ratios
    if fy.free_cash_flow is None:
        return None
    if fy.free_cash_flow <= 0:
        return (
            f"**Free cash flow inflection:** free cash flow was {money(fy.free_cash_flow)} in "
            f"FY{fy.fiscal_year}; a turn to positive cash generation would remove the funding overhang."
        )
    margin = f" ({pct(r.fcf_margin)} of revenue)" if r.fcf_margin is not None else ""
    text = f"**Capital returns:** free cash flow of {money(fy.free_cash_flow)}{margin}"
    if r.fcf_conversion is not None:
        text += f", {pct(r.fcf_conversion)} of net income,"
    text += " funds buybacks"
    dps, old = fy.dividends_per_share, prior.dividends_per_share if prior is not None else None
    if dps and old and dps > old:
        text += f" and a dividend raised to {price(dps)} per share from {price(old)}"
    elif dps and old and dps < old:
        text += f"; the dividend was cut to {price(dps)} per share from {price(old)}, so its restoration is a lever"
    elif dps:
        text += f" and the {price(dps)} per-share dividend"
    return text + "."


def _balance_sheet_catalyst(ctx: ExampleContext) -> str | None:
    fy, r = ctx.company.latest, ctx.analysis.ratios
    if fy.cash is None or fy.total_debt is None:
        return None
    if fy.cash > fy.total_debt:
        return (
            f"**Balance-sheet capacity:** cash of {money(fy.cash)} exceeds total debt of "
            f"{money(fy.total_debt)}, "
            "leaving room for larger buybacks or acquisitions."
        )
    coverage = ""
    if r.interest_coverage is not None:
        coverage = (
            f", with interest coverage of {mult(r.interest_coverage)}"
            if r.interest_coverage >= 1
            else f", with operating income short of interest expense (coverage {mult(r.interest_coverage)})"
        )
    if r.net_debt_to_ebitda is None or r.net_debt is None:
        return (
            f"**Balance sheet:** total debt of {money(fy.total_debt)} against cash of "
            f"{money(fy.cash)}{coverage}; "
            "deleveraging would lower the equity's risk."
        )
    if r.net_debt_to_ebitda <= 1.5:
        return (
            f"**Balance-sheet capacity:** net debt of {money(r.net_debt)} is only "
            f"{mult(r.net_debt_to_ebitda)} "
            f"EBITDA{coverage}, so there is room to add leverage for buybacks or acquisitions."
        )
    if r.net_debt_to_ebitda >= 3.0:
        return (
            f"**Deleveraging:** net debt of {money(r.net_debt)} stands at {mult(r.net_debt_to_ebitda)} EBITDA"
            f"{coverage}; paying it down would shift value from creditors to shareholders."
        )
    return (
        f"**Balance sheet:** net debt of {money(r.net_debt)} at {mult(r.net_debt_to_ebitda)} "
        f"EBITDA{coverage} "
        "is manageable, leaving flexibility for capital returns."
    )


def _returns_catalyst(ctx: ExampleContext) -> str | None:
    r, base = ctx.analysis.ratios, _scenario(ctx, "base")
    if base is not None and base.rate_kind == "cost_of_equity":
        if r.roe is None or base.wacc is None or r.roe <= 0:
            return None
        if pct(r.roe) == pct(base.wacc):
            return None
        if r.roe > base.wacc:
            return (
                f"**Returns above the cost of equity:** ROE of {pct(r.roe)} against a {pct(base.wacc)} cost of "
                "equity; holding that spread is what justifies a price above book value."
            )
        return (
            f"**Returns recovery:** ROE of {pct(r.roe)} is below the {pct(base.wacc)} cost of equity; closing the "
            "gap would lift the value of each dollar of book."
        )
    if r.roic is None or base is None or base.wacc is None:
        return None
    if r.roic > base.wacc:
        return (
            f"**Value-creating reinvestment:** ROIC of {pct(r.roic)} is above the {pct(base.wacc)} WACC, so "
            "growth investment compounds value."
        )
    return (
        f"**Returns recovery:** ROIC of {pct(r.roic)} is below the {pct(base.wacc)} WACC; lifting returns "
        "above the cost of capital would support a re-rating."
    )


def _earnings_catalyst(ctx: ExampleContext) -> str | None:
    r, fy = ctx.analysis.ratios, ctx.company.latest
    if r.eps_growth is None or fy.eps_diluted is None:
        return None
    if fy.eps_diluted <= 0:
        return (
            f"**Return to profit:** diluted EPS was {price(fy.eps_diluted)} in FY{fy.fiscal_year}; a return "
            "to positive earnings would reset the valuation debate."
        )
    if r.eps_growth >= 0:
        return (
            f"**Earnings momentum:** diluted EPS of {price(fy.eps_diluted)} in FY{fy.fiscal_year}, "
            f"{pct(r.eps_growth, signed=True)} year on year; sustaining that pace keeps estimates moving up."
        )
    return (
        f"**Earnings recovery:** diluted EPS of {price(fy.eps_diluted)} in FY{fy.fiscal_year}, "
        f"{pct(r.eps_growth, signed=True)} year on year; a return to EPS growth would be a catalyst."
    )


def _bank_catalysts(ctx: ExampleContext) -> list[str]:
    """Net interest income, credit costs and capital, when the record is a bank's."""
    fy, prior = ctx.company.latest, ctx.company.prior
    if ctx.company.institution != "bank" or prior is None:
        return []
    out: list[str] = []
    nii, old = fy.net_interest_income, prior.net_interest_income
    if nii is not None and old is not None and money(nii) != money(old):
        trend = "grew" if nii > old else "fell"
        out.append(
            f"**Net interest income:** {money(nii)} in FY{fy.fiscal_year}, which {trend} from {money(old)}; the "
            "path of deposit costs against loan yields decides the next move."
        )
    prov, old_prov = fy.provision_for_credit_losses, prior.provision_for_credit_losses
    if prov is not None and old_prov is not None and money(prov) != money(old_prov):
        trend = "rose" if prov > old_prov else "fell"
        out.append(
            f"**Credit costs:** the provision for credit losses {trend} to {money(prov)} from {money(old_prov)}; "
            + (
                "stabilising charge-offs would release earnings."
                if prov > old_prov
                else "a benign credit cycle is already helping earnings."
            )
        )
    cet1, old_cet1 = fy.cet1_ratio, prior.cet1_ratio
    if cet1 is not None and old_cet1 is not None:
        move = (
            "unchanged"
            if pct(cet1) == pct(old_cet1)
            else f"up from {pct(old_cet1)}"
            if cet1 > old_cet1
            else f"down from {pct(old_cet1)}"
        )
        out.append(
            f"**Capital return:** a CET1 ratio of {pct(cet1)} ({move}) sets how much capital can go to buybacks and "
            "dividends."
        )
    return out


CATALYSTS: tuple[Callable[[ExampleContext], str | None], ...] = (
    _margin_catalyst,
    _growth_catalyst,
    _cash_return_catalyst,
    _balance_sheet_catalyst,
    _returns_catalyst,
    _earnings_catalyst,
)


def catalysts(ctx: ExampleContext, rng: random.Random) -> list[str]:
    """Three to five catalysts from those the company's figures support, in a random order."""
    found = [text for make in CATALYSTS if (text := make(ctx))] + _bank_catalysts(ctx)
    count = rng.randint(3, min(5, len(found))) if len(found) >= 3 else len(found)
    return shuffled(rng, found)[:count]


def _catalysts(ctx: ExampleContext, rng: random.Random) -> str:
    header = pick(rng, REQUIRED_SECTIONS["catalysts"])
    items = catalysts(ctx, rng)
    n = _WORDS.get(len(items), "several")
    intro = pick(
        rng,
        [
            f"We see {n} catalysts, each tied to {ctx.company.name}'s own figures.",
            f"{n.capitalize()} company-specific catalysts could move the shares.",
            f"These are the {n} catalysts we track.",
        ],
    )
    rating = rating_word(ctx)
    if rating == "SELL":
        intro += " They would have to run well ahead of our base case to challenge the Sell rating:"
    elif rating == "HOLD":
        intro += " Delivery on them is what would move us from Hold to Buy:"
    elif rating == "BUY":
        intro += " They are the path to our price target:"
    else:
        intro += ":"
    return "\n".join([header, intro, bullets(items)])


# ----------------------------------------------------------------------------------------------- response


def _thesis(ctx: ExampleContext, rng: random.Random) -> str:
    header = pick(rng, REQUIRED_SECTIONS["thesis"])
    t, rating = ctx.analysis.target, rating_word(ctx)
    bull, bear = _scenario(ctx, "bull"), _scenario(ctx, "bear")
    if t.price_target is None:
        return f"{header}\nWith no meaningful valuation, {ctx.ticker} is {rating}; the scenarios below frame the range."
    text = pick(
        rng,
        [
            f"We rate {ctx.company.name} **{rating}** with a {price(t.price_target)} price target "
            f"({pct(t.upside, signed=True)}).",
            f"**{rating}**, price target {price(t.price_target)}: an implied return of "
            f"{pct(t.upside, signed=True)} "
            f"from {price(t.price)}.",
        ],
    )
    if bull and bear and bull.value_per_share is not None and bear.value_per_share is not None:
        text += (
            f" The scenario range runs from {price(bear.value_per_share)} in the bear case to "
            f"{price(bull.value_per_share)} in the bull case"
        )
        p = t.price
        if bull.value_per_share < p:
            text += ", and the whole range sits below the current price."
        elif bear.value_per_share > p:
            text += ", and the whole range sits above the current price."
        else:
            text += ", which brackets the current price."
    return f"{header}\n{text}"


def _condition(ctx: ExampleContext) -> str | None:
    if ctx.is_base:
        return None
    cond, base, now = ctx.condition, ctx.base, ctx.analysis
    shifts = condition_shifts(ctx)
    text = f"## Market Condition: {cond.title}\n"
    if shifts:
        text += "This scenario shifts our assumptions: " + "; ".join(shifts) + ". "
    text += "Every scenario value in this note is computed under it. "
    label, base_rate = discount_rate(base)
    _, now_rate = discount_rate(now)
    text += (
        f"The {label} moves from {pct(base_rate)} to {pct(now_rate)}"
        if pct(now_rate) != pct(base_rate)
        else f"The {label} is unchanged at {pct(now_rate)}"
    )
    bt, nt = base.target.price_target, now.target.price_target
    if bt is not None and nt is not None:
        text += (
            f", and the price target stays at {price(nt)}"
            if price(bt) == price(nt)
            else f", and the price target {'falls' if nt < bt else 'rises'} from {price(bt)} to {price(nt)}"
        )
    base_rating = (base.target.rating or "Not rated").upper()
    rating = rating_word(ctx)
    text += (
        f"; the rating stays {rating}."
        if rating == base_rating
        else f"; the rating moves from {base_rating} to {rating}."
    )
    return text


def respond(ctx: ExampleContext, rng: random.Random) -> str:
    """The investment thesis, section order and wording varied by ``rng``."""
    c = ctx.company
    title = pick(
        rng,
        [
            f"# {c.name} ({c.ticker}): Investment Thesis",
            f"# {c.ticker}: Bull, Base and Bear Cases",
            f"# Investment Thesis: {c.name} ({c.ticker})",
            f"# {c.name} ({c.ticker}) - Scenarios and Catalysts",
        ],
    )
    table = f"{pick(rng, ['## Scenario Summary', '## Scenario Analysis', '## Scenario Values'])}\n"
    table += _scenario_table(ctx)
    cases = [_base_case(ctx, rng), _case(ctx, rng, "bull"), _case(ctx, rng, "bear")]
    if rng.random() < 0.5:
        cases = [cases[1], cases[0], cases[2]]
    body = [table, *cases, _catalysts(ctx, rng)]
    if rng.random() < 0.3:
        body = [body[-1], *body[:-1]]
    parts = [title, _thesis(ctx, rng), *body]
    condition = _condition(ctx)
    if condition:
        parts.insert(2, condition)
    return "\n\n".join([*parts, disclaimer(rng)])


FAMILY = Family(
    name="investment_thesis",
    title="Investment thesis",
    instructions=INSTRUCTIONS,
    sections=SECTIONS,
    respond=respond,
)
