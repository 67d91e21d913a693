"""Valuation: DCF assumptions and WACC build-up, the EV-to-equity bridge, the WACC x terminal-growth
sensitivity table, comparable-company multiples against the named peers, and the blended price target."""

from __future__ import annotations

import random

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
from equitune.data.families.common import Family, bullets, disclaimer, pick
from equitune.finance.comparables import MultipleSummary

INSTRUCTIONS = (
    "Value {name} ({ticker}) with a DCF and comparable-company multiples, and give a price target.",
    "Build the valuation section of a research report on {ticker}: DCF, sensitivity, comps and target.",
    "What is {name} worth? Walk through the DCF assumptions, the WACC and the peer multiples.",
    "Write a valuation analysis of {ticker} covering WACC, DCF, terminal value and comparables.",
    "Run through a full valuation of {name} ({ticker}) and conclude with a rating and price target.",
    "Explain how you arrive at a price target for {ticker}, using DCF and trading comparables.",
    "Prepare the DCF and comps pages of our {name} coverage note.",
    "Give me an intrinsic valuation of {ticker}: growth, FCF margin, WACC build-up and terminal value.",
    "Present a WACC x terminal-growth sensitivity and peer multiples for {name} ({ticker}).",
    "Show the discounted cash flow valuation of {name}, from enterprise value to value per share.",
    "How does {ticker} screen against its peers on EV/EBITDA, P/E and EV/Sales, and what is it worth?",
    "Write the valuation section for {name} ({ticker}) in institutional research format.",
    "Using only the data provided, value {ticker} and state the upside to your price target.",
    "As a {sector} analyst, lay out your DCF and comparables valuation of {name}.",
    "Detail the assumptions behind your {ticker} DCF and reconcile it with the trading comps.",
    "Produce a valuation summary for {name}: DCF value, comparables value, blended target and rating.",
    "Break down the enterprise-to-equity bridge and the price target for {ticker}.",
    "I need a valuation write-up on {name} ({ticker}) with a sensitivity table and a peer table.",
    "Derive a 12-month price target for {ticker} from a DCF and peer multiples, showing your work.",
    "Assess whether {name} is under- or overvalued using DCF and relative valuation.",
    "Draft a valuation note on {ticker}: cost of capital, cash-flow assumptions, multiples and target.",
    "Write up the DCF, sensitivity analysis and comparable-company analysis for {name}.",
    "Value {ticker} the way a sell-side analyst would and explain the rating.",
)

SECTIONS = ("header", "fiscal", "wacc", "dcf", "sensitivity", "comps", "target", "condition")

# Header variants of each required section (a test checks one of each is present).
REQUIRED_SECTIONS: dict[str, tuple[str, ...]] = {
    "assumptions": ("## DCF Assumptions", "## Key DCF Inputs", "## Cash-Flow and Discount-Rate Assumptions"),
    "dcf": ("## DCF Valuation", "## Discounted Cash Flow", "## From Enterprise Value to Value per Share"),
    "sensitivity": (
        "## Sensitivity Analysis",
        "## WACC and Terminal-Growth Sensitivity",
        "## DCF Sensitivity",
    ),
    "comps": ("## Comparable Companies", "## Trading Comparables", "## Relative Valuation"),
    "target": ("## Price Target and Rating", "## Blended Price Target", "## Valuation Conclusion"),
}

# Headers of the same sections when the company is valued with a sector model (not a DCF); the test of
# REQUIRED_SECTIONS accepts them as well.
SECTOR_SECTIONS: dict[str, tuple[str, ...]] = {
    "assumptions": ("## Valuation Inputs", "## Cost of Equity and Model Inputs"),
    "dcf": ("## Intrinsic Value", "## From the Model to Value per Share"),
    "sensitivity": ("## Sensitivity Analysis", "## Cost-of-Equity and Growth Sensitivity"),
}
for _key, _extra in SECTOR_SECTIONS.items():
    REQUIRED_SECTIONS[_key] = REQUIRED_SECTIONS[_key] + tuple(h for h in _extra if h not in REQUIRED_SECTIONS[_key])

_MULTIPLE_NAMES = {"ev_ebitda": "EV/EBITDA", "pe": "P/E", "ev_sales": "EV/Sales", "pb": "P/B"}
_MAX_PEERS = 6  # as many peers as the data block's comparables section lists
_WORDS = {
    1: "one",
    2: "two",
    3: "three",
    4: "four",
    5: "five",
    6: "six",
    7: "seven",
    8: "eight",
    9: "nine",
    10: "ten",
}


def _words(n: int) -> str:
    return _WORDS.get(n, "several")


def _above_below(value: float, reference: float) -> str:
    """Per-share values that read the same when written are in line."""
    if price(value) == price(reference):
        return "in line with"
    return "above" if value > reference else "below"


def _shares(ctx: ExampleContext) -> str:
    # Written exactly as the data block's header writes the diluted share count.
    return f"{ctx.analysis.market.diluted_shares:,.1f}M"


# ----------------------------------------------------------------------------------------------- sections


def _assumptions(ctx: ExampleContext, rng: random.Random) -> str:
    a = ctx.analysis
    w, d = a.wacc, a.dcf
    header = pick(rng, REQUIRED_SECTIONS["assumptions"][:3])
    wacc_rows = [
        "| Component | Value |",
        "|---|---:|",
        f"| Risk-free rate | {pct(w.risk_free_rate)} |",
        f"| Equity risk premium | {pct(w.equity_risk_premium)} |",
        f"| Beta | {w.beta:.2f} |",
        f"| Cost of equity (CAPM) | {pct(w.cost_of_equity)} |",
        f"| After-tax cost of debt | {pct(w.after_tax_cost_of_debt)} |",
        f"| Tax rate | {pct(w.tax_rate)} |",
        f"| Debt weight | {pct(w.debt_weight)} |",
        f"| **WACC** | **{pct(w.wacc)}** |",
    ]
    debt_light = w.debt_weight < 0.2
    wacc_text = pick(
        rng,
        [
            f"The discount rate is a CAPM build-up: a {pct(w.risk_free_rate)} risk-free rate plus a beta of "
            f"{w.beta:.2f} on a {pct(w.equity_risk_premium)} equity risk premium gives a cost of equity of "
            f"{pct(w.cost_of_equity)}.",
            f"Cost of equity is {pct(w.cost_of_equity)} (risk-free {pct(w.risk_free_rate)}, beta "
            f"{w.beta:.2f}, "
            f"equity risk premium {pct(w.equity_risk_premium)}), against an after-tax cost of debt of "
            f"{pct(w.after_tax_cost_of_debt)}.",
        ],
    )
    wacc_text += (
        f" With debt at only {pct(w.debt_weight)} of capital, the WACC of {pct(w.wacc)} is driven almost "
        "entirely by the cost of equity."
        if debt_light
        else f" Debt makes up {pct(w.debt_weight)} of capital, which pulls the WACC down to {pct(w.wacc)}."
        if w.wacc < w.cost_of_equity
        else f" Debt makes up {pct(w.debt_weight)} of capital; the blended WACC is {pct(w.wacc)}."
    )
    if a.excess_return is not None or a.dividend_discount is not None:
        return _sector_assumptions(ctx, rng, pick(rng, SECTOR_SECTIONS["assumptions"]))
    if d is None:
        return "\n".join(
            [
                header,
                f"The DCF could not be run for {ctx.ticker}, so only the cost of capital is shown.",
                "",
                *wacc_rows,
                "",
                wacc_text,
            ]
        )
    i = d.inputs
    last = d.projection[-1]
    if i.initial_growth > i.terminal_growth:
        path = f"fading linearly to the {pct(i.terminal_growth)} terminal rate"
    elif i.initial_growth < i.terminal_growth:
        path = f"rising linearly to the {pct(i.terminal_growth)} terminal rate"
    else:
        path = "already at the terminal rate and held there"
    points = [
        f"**Revenue growth:** {pct(i.initial_growth)} in the first projected year, {path} by "
        f"FY{last.fiscal_year}E over a {_words(i.projection_years)}-year explicit forecast.",
        f"**FCF margin:** {pct(i.fcf_margin)} of revenue, held flat across the projection"
        + (
            " (unlevered: after-tax interest is added back because the WACC already charges for debt)."
            if i.interest_added_back
            else "."
        ),
        f"**Terminal growth:** {pct(i.terminal_growth)} in perpetuity, "
        + ("comfortably below" if i.wacc - i.terminal_growth > 0.03 else "below")
        + f" the {pct(i.wacc)} WACC.",
        f"**Discount rate:** WACC of {pct(w.wacc)}, built up in the table below.",
    ]
    if i.fcf_margin <= 0:
        points[1] += " A non-positive margin means every projected year consumes cash."
    return "\n".join([header, bullets(points), "", *wacc_rows, "", wacc_text])


def _sector_assumptions(ctx: ExampleContext, rng: random.Random, header: str) -> str:
    """Cost of equity and the sector model's inputs (banks and insurers: book value and ROE; utilities and
    REITs: the dividend and its growth)."""
    an = ctx.analysis
    w = an.wacc
    rows = [
        "| Component | Value |",
        "|---|---:|",
        f"| Risk-free rate | {pct(w.risk_free_rate)} |",
        f"| Equity risk premium | {pct(w.equity_risk_premium)} |",
        f"| Beta | {w.beta:.2f} |",
        f"| **Cost of equity (CAPM)** | **{pct(w.cost_of_equity)}** |",
    ]
    text = (
        f"The discount rate is the cost of equity, not the WACC: the model values the shareholders' claim "
        f"directly. A {pct(w.risk_free_rate)} risk-free rate plus a beta of {w.beta:.2f} on a "
        f"{pct(w.equity_risk_premium)} equity risk premium gives {pct(w.cost_of_equity)}."
    )
    e, m = an.excess_return, an.dividend_discount
    if e is not None:
        spread = e.roe - e.cost_of_equity
        points = [
            f"**Book value per share:** {price(e.book_value_per_share)} of common equity.",
            f"**Return on equity:** {pct(e.roe)}, "
            + (
                f"{pct(e.roe_spread)} above the {pct(e.cost_of_equity)} cost of equity, so each dollar of book value "
                "is "
                "worth more than a dollar."
                if pct(e.roe) != pct(e.cost_of_equity) and spread > 0
                else f"below the {pct(e.cost_of_equity)} cost of equity, so book value is worth less than its "
                "face amount."
                if spread < 0 and pct(e.roe) != pct(e.cost_of_equity)
                else f"level with the {pct(e.cost_of_equity)} cost of equity."
            ),
            f"**Long-run growth:** {pct(e.growth)} a year for book value and earnings.",
        ]
    else:
        assert m is not None
        payout = f", a payout of {pct(m.payout_ratio)} of earnings" if m.payout_ratio is not None else ""
        points = [
            f"**Dividend per share:** {price(m.dividend)} in FY{ctx.company.latest.fiscal_year}{payout}.",
            f"**Dividend growth:** {pct(m.initial_growth)} a year for {_words(an.assumptions.high_growth_years)} "
            f"years, fading to {pct(m.terminal_growth)} by year {_words(an.assumptions.explicit_years)} and held "
            "there.",
        ]
    return "\n".join([header, bullets(points), "", *rows, "", text])


def _sector_value(ctx: ExampleContext, rng: random.Random, header: str) -> str:
    """From the inputs to the value per share under the sector model, and what the price implies."""
    an = ctx.analysis
    e, m = an.excess_return, an.dividend_discount
    p = an.market.price
    if e is not None:
        rows = [
            "| Item | Value |",
            "|---|---:|",
            f"| Book value per share | {price(e.book_value_per_share)} |",
            f"| Return on equity | {pct(e.roe)} |",
            f"| Cost of equity | {pct(e.cost_of_equity)} |",
            f"| Growth | {pct(e.growth)} |",
            f"| Justified P/B = (ROE - g) / (ke - g) | {mult(e.justified_pb)} |",
            f"| **Value per share** | **{price(e.value_per_share) if e.meaningful else 'excluded'}** |",
        ]
        notes = [
            f"The shares trade at {mult(e.current_pb)} book against a justified {mult(e.justified_pb)}"
            + (
                "."
                if mult(e.current_pb) == mult(e.justified_pb)
                else ", so the market pays "
                + ("less" if e.current_pb < e.justified_pb else "more")
                + " for each dollar of equity than its return supports."
            )
        ]
        if not e.meaningful:
            notes.append(
                f"The model gives no positive value ({'; '.join(e.issues)}), so it is excluded from the target."
            )
    else:
        assert m is not None
        rows = [
            "| Item | Value |",
            "|---|---:|",
            f"| Dividend per share, FY{ctx.company.latest.fiscal_year} | {price(m.dividend)} |",
            f"| Dividend in the final explicit year | {price(m.projection[-1].dividend)} |",
            f"| PV of explicit-period dividends | {price(m.pv_dividends)} |",
            f"| PV of terminal value | {price(m.pv_terminal_value_per_share)} |",
            f"| **Value per share** | **{price(m.value_per_share) if m.meaningful else 'excluded'}** |",
        ]
        notes = []
        if m.meaningful:
            notes.append(
                f"Discounting the dividends at the {pct(m.cost_of_equity)} cost of equity gives "
                f"{price(m.value_per_share)} per share, {_above_below(m.value_per_share, p)} the {price(p)} share "
                "price."
            )
    if an.implied:
        notes.append(an.implied)
    return "\n".join([header, *rows, "", bullets(notes)])


def _bridge(ctx: ExampleContext, rng: random.Random) -> str:
    a, fy = ctx.analysis, ctx.company.latest
    d = a.dcf
    header = pick(rng, REQUIRED_SECTIONS["dcf"][:3])
    if a.excess_return is not None or a.dividend_discount is not None:
        return _sector_value(ctx, rng, pick(rng, SECTOR_SECTIONS["dcf"]))
    if d is None:
        return (
            f"{header}\nThe DCF could not be run for {ctx.ticker} with the available figures, so the "
            "valuation "
            "rests on trading comparables."
        )
    if not d.meaningful:
        why = (
            f"with an FCF margin of {pct(d.inputs.fcf_margin)}, projected cash flows destroy value"
            if d.inputs.model == "five_year" and d.inputs.fcf_margin <= 0
            else "debt exceeds enterprise value plus cash"
            if d.enterprise_value > 0
            else "the enterprise value is negative"
        )
        return (
            f"{header}\nThe DCF is not meaningful for {ctx.ticker} ({why}), so it is excluded from the price "
            "target and its value is not used; the valuation rests on the other method."
        )
    rows = [
        "| Item | Value |",
        "|---|---:|",
        f"| PV of projected free cash flow | {money(d.sum_pv_fcf)} |",
        f"| PV of terminal value | {money(d.pv_terminal_value)} |",
        f"| **Enterprise value** | **{money(d.enterprise_value)}** |",
    ]
    bridge_reported = fy.total_debt is not None and fy.cash is not None
    if bridge_reported:
        rows += [f"| Less: total debt | {money(fy.total_debt)} |", f"| Plus: cash | {money(fy.cash)} |"]
    rows += [
        f"| **Equity value** | **{money(d.equity_value)}** |",
        f"| Diluted shares | {_shares(ctx)} |",
        f"| **Value per share** | **{price(d.value_per_share)}** |",
    ]
    notes: list[str] = []
    if d.enterprise_value > 0 and d.pv_terminal_value > 0:
        tv_heavy = d.pv_terminal_value > d.sum_pv_fcf
        notes.append(
            f"The terminal value ({money(d.pv_terminal_value)} discounted) "
            + ("outweighs" if tv_heavy else "is smaller than")
            + f" the {money(d.sum_pv_fcf)} present value of the explicit forecast"
            + (", so the long-run assumptions carry most of the value." if tv_heavy else ".")
        )
    if d.terminal_value_exit is not None and d.inputs.exit_multiple is not None:
        source = "the peer-median" if d.inputs.exit_multiple_source == "peer_median" else "an assumed"
        used_gordon = d.terminal_value_method == "gordon"
        other = d.terminal_value_gordon if used_gordon else d.terminal_value
        relation = (
            "higher than"
            if d.terminal_value_exit > other
            else "lower than"
            if d.terminal_value_exit < other
            else "in line with"
        )
        notes.append(
            f"Cross-check: at {source} {mult(d.inputs.exit_multiple)} EV/EBITDA the exit-multiple terminal "
            "value "
            f"would be {money(d.terminal_value_exit)}, {relation} the "
            + ("Gordon-growth value we use" if used_gordon else "terminal value we use")
            + (
                "; the peers' multiple embeds more growth than our perpetuity assumption."
                if d.terminal_value_exit > other > 0 and used_gordon
                else "."
            )
        )
    notes.append(
        f"Net of {'debt and cash' if bridge_reported else 'the balance sheet'}, equity value is "
        f"{money(d.equity_value)}, or {price(d.value_per_share)} per share, "
        f"{_above_below(d.value_per_share, a.market.price)} the {price(a.market.price)} share price."
    )
    if a.implied:
        notes.append(a.implied)
    return "\n".join([header, *rows, "", bullets(notes)])


def _sensitivity(ctx: ExampleContext, rng: random.Random) -> str:
    sector = ctx.analysis.method != "dcf"
    header = pick(rng, SECTOR_SECTIONS["sensitivity"] if sector else REQUIRED_SECTIONS["sensitivity"][:3])
    s, _, title = sensitivity_table_of(ctx)
    rate = "cost of equity" if sector else "WACC"
    if s is None:
        return f"{header}\nNo sensitivity table: the DCF is excluded from the target, so there is no value to vary."
    head = f"| {rate[0].upper() + rate[1:]} \\ growth | " + " | ".join(pct(g) for g in s.terminal_growth_values) + " |"
    rule = "|---" + "|---:" * len(s.terminal_growth_values) + "|"
    rows = []
    for r, w in enumerate(s.wacc_values):
        cells = []
        for col, v in enumerate(s.values[r]):
            text = price(v)
            cells.append(f"**{text}**" if (r, col) == (s.base_row, s.base_column) and v is not None else text)
        rows.append(f"| {pct(w)} | " + " | ".join(cells) + " |")
    intro = pick(
        rng,
        [
            f"{title[0].upper() + title[1:]} across {rate} (rows) and growth (columns); the base case is in bold.",
            f"Value per share for each pair of {rate} (rows) and growth (columns), base case in bold:",
            f"How the {title} moves with the discount rate and the perpetual growth rate (base case in bold):",
        ],
    )
    notes: list[str] = []
    low_corner, high_corner = s.values[-1][0], s.values[0][-1]
    if low_corner is not None and high_corner is not None:
        notes.append(
            f"At a {pct(s.wacc_values[-1])} {rate} and {pct(s.terminal_growth_values[0])} growth the "
            "value "
            f"is {price(low_corner)}; at {pct(s.wacc_values[0])} and {pct(s.terminal_growth_values[-1])} it "
            "is "
            f"{price(high_corner)}."
        )
    values = [v for row in s.values for v in row if v is not None]
    p = ctx.analysis.market.price
    if values and all(v < p for v in values):
        notes.append(
            f"Every cell sits below the {price(p)} share price: no combination in this range of discount "
            f"rate and growth supports the current price on this model."
        )
    elif values and all(v > p for v in values):
        notes.append(
            f"Every cell sits above the {price(p)} share price, so the model supports the current price even "
            "at the highest discount rate and lowest growth shown."
        )
    elif values:
        notes.append(f"The {price(p)} share price falls inside the grid's range of values.")
    if any(v is None for row in s.values for v in row):
        notes.append(f"Cells marked n/a have a {rate} at or below growth, where the perpetuity has no finite value.")
    return "\n".join([header, intro, "", head, rule, *rows, "", bullets(notes)])


def _multiple_comment(ctx: ExampleContext, m: MultipleSummary) -> str | None:
    if m.company_multiple is None or m.median is None:
        return None
    name = _MULTIPLE_NAMES[m.multiple]
    if mult(m.company_multiple) == mult(m.median):
        stance = "in line with"
    elif m.company_multiple > m.median:
        stance = "a premium to"
    else:
        stance = "a discount to"
    implied = (
        f"; at the median, {name} implies {price(m.implied_value_per_share)} per share"
        if m.implied_value_per_share is not None
        else ""
    )
    return (
        f"On {name}, {ctx.ticker} trades at {mult(m.company_multiple)}, {stance} the {mult(m.median)} peer "
        f"median{implied}."
    )


def _comps(ctx: ExampleContext, rng: random.Random) -> str:
    c = ctx.analysis.comparables
    header = pick(rng, REQUIRED_SECTIONS["comps"])
    peers = sorted(c.peers, key=lambda p: -p.market_cap)[:_MAX_PEERS]
    if c.basis == "sector":
        basis = f"The sub-industry has too few listed peers, so the peer set is drawn from the wider {c.group} sector."
    elif c.basis == "institutions":
        basis = "The sub-industry has too few listed peers, so the peer set is the other banks and insurers covered."
    else:
        basis = f"Peers come from the same sub-industry ({c.group})."
    if len(c.peers) > len(peers):
        basis += f" The {_words(len(peers))} largest peers by market value are shown."
    institution = any(m.multiple == "pb" for m in c.multiples)
    multiples = [m for m in c.multiples if not institution or m.multiple in ("pe", "pb")]
    if institution:
        basis += (
            " Enterprise-value multiples do not apply to lenders and underwriters, so the comparison uses P/E and P/B."
        )
        peer_rows = [
            "| Peer | P/E | P/B |",
            "|---|---:|---:|",
            *(f"| {p.name} ({p.ticker}) | {mult(p.pe)} | {mult(p.pb)} |" for p in peers),
        ]
    else:
        peer_rows = [
            "| Peer | EV/EBITDA | P/E | EV/Sales |",
            "|---|---:|---:|---:|",
            *(f"| {p.name} ({p.ticker}) | {mult(p.ev_ebitda)} | {mult(p.pe)} | {mult(p.ev_sales)} |" for p in peers),
        ]
    summary_rows = [
        f"| Multiple | Peer median | Q1 | Q3 | {ctx.ticker} | Implied value per share |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {_MULTIPLE_NAMES[m.multiple]} | {mult(m.median)} | {mult(m.low)} | {mult(m.high)} | "
            f"{mult(m.company_multiple)} | {price(m.implied_value_per_share)} |"
            for m in multiples
        ),
    ]
    notes = [text for m in multiples if (text := _multiple_comment(ctx, m))]
    implied = [m for m in multiples if m.implied_value_per_share is not None]
    if len(implied) >= 2:
        top = max(implied, key=lambda m: m.implied_value_per_share or 0.0)
        bottom = min(implied, key=lambda m: m.implied_value_per_share or 0.0)
        if top is not bottom:
            notes.append(
                f"{_MULTIPLE_NAMES[top.multiple]} gives the highest implied value "
                f"({price(top.implied_value_per_share)}) and {_MULTIPLE_NAMES[bottom.multiple]} the lowest "
                f"({price(bottom.implied_value_per_share)})."
            )
    if c.value_per_share is not None:
        notes.append(
            f"Weighting the implied values gives a comparables value of {price(c.value_per_share)} per "
            "share, "
            f"{_above_below(c.value_per_share, ctx.analysis.market.price)} the "
            f"{price(ctx.analysis.market.price)} share price."
        )
    else:
        notes.append("No multiple gives a usable implied value, so there is no comparables value.")
    return "\n".join([header, basis, "", *peer_rows, "", *summary_rows, "", bullets(notes)])


def _target(ctx: ExampleContext, rng: random.Random) -> str:
    t, a = ctx.analysis.target, ctx.analysis.assumptions
    header = pick(rng, REQUIRED_SECTIONS["target"])
    rating = rating_word(ctx)
    bands = (
        f"Buy at or above {pct(a.buy_threshold, signed=True)} upside, Sell below {pct(a.sell_threshold, signed=True)}"
    )
    label = t.intrinsic_label
    if t.price_target is None or t.upside is None:
        return (
            f"{header}\nNeither the {label} nor the comparables value is meaningful, so we set no price target "
            f"and {ctx.ticker} is {rating}."
        )
    lines = []
    if t.dcf_value_per_share is not None:
        lines.append(f"- **{label[0].upper() + label[1:]} value per share:** {price(t.dcf_value_per_share)}")
    if t.comps_value_per_share is not None:
        lines.append(f"- **Comparables value per share:** {price(t.comps_value_per_share)}")
    lines.extend(f"- **Excluded:** {e}" for e in t.excluded)
    lines += [
        f"- **Price target:** {price(t.price_target)} ({t.blend})",
        f"- **Current price:** {price(t.price)}",
        f"- **Upside:** {pct(t.upside, signed=True)}",
        f"- **Rating:** {rating}",
    ]
    if t.method == "blend":
        how = (
            f"Our {price(t.price_target)} target weights the {label} and comparables values "
            f"({t.blend}), landing between the {label} value of {price(t.dcf_value_per_share)} and the "
            f"comparables value of {price(t.comps_value_per_share)}."
        )
    elif t.method == "comps_only":
        how = f"The {label} value is excluded, so our {price(t.price_target)} target is the {t.blend}."
    elif t.comps_value_per_share is None:
        how = f"The comparables value is excluded, so our {price(t.price_target)} target is the {t.blend}."
    else:
        how = f"Our {price(t.price_target)} target is the {t.blend}."
    ret = pct(t.upside, signed=True)
    verdict = {
        "BUY": f"The implied return of {ret} clears our Buy threshold, so we rate {ctx.ticker} **BUY**",
        "HOLD": f"The implied return of {ret} sits inside the Hold band, so we rate {ctx.ticker} **HOLD**",
        "SELL": f"The implied return of {ret} falls below our Sell threshold, so we rate {ctx.ticker} **SELL**",
    }.get(rating, f"We rate {ctx.ticker} **{rating}**")
    return "\n".join([header, *lines, "", f"{how} {verdict} ({bands})."])


def _condition(ctx: ExampleContext) -> str | None:
    if ctx.is_base:
        return None
    cond, base, now = ctx.condition, ctx.base, ctx.analysis
    shifts = condition_shifts(ctx, moves=True)
    lines = [f"## Market Condition: {cond.title}"]
    if shifts:
        lines.append("Under this scenario " + "; ".join(shifts) + ".")
    label, base_rate = discount_rate(base)
    _, now_rate = discount_rate(now)
    name = label[0].upper() + label[1:] if label != "WACC" else label
    if pct(now_rate) != pct(base_rate):
        lines.append(
            f"- **{name}:** {pct(now_rate)}, {'up' if now_rate > base_rate else 'down'} from {pct(base_rate)} in the "
            "base case."
        )
    else:
        lines.append(f"- **{name}:** unchanged at {pct(now_rate)}; the condition works through the cash flows.")
    bt, nt = base.target.price_target, now.target.price_target
    if bt is not None and nt is not None:
        move = "the same as" if price(nt) == price(bt) else "lower than" if nt < bt else "higher than"
        lines.append(f"- **Price target:** {price(nt)}, {move} the base-case {price(bt)}.")
    elif nt is not None:
        lines.append(f"- **Price target:** {price(nt)} (no base-case target).")
    base_rating = (base.target.rating or "Not rated").upper()
    rating = rating_word(ctx)
    lines.append(
        f"- **Rating:** {rating}, unchanged from the base case."
        if rating == base_rating
        else f"- **Rating:** {rating}, against {base_rating} in the base case."
    )
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- response


def _overview(ctx: ExampleContext, rng: random.Random) -> str:
    t = ctx.analysis.target
    rating = rating_word(ctx)
    if t.price_target is None:
        return f"We have no price target on {ctx.ticker}: neither valuation method gives a meaningful value."
    return pick(
        rng,
        [
            f"We value {ctx.company.name} at {price(t.price_target)} per share ({t.blend}), an implied "
            "return of "
            f"{pct(t.upside, signed=True)} from the {price(t.price)} share price: **{rating}**.",
            f"Our {price(t.price_target)} price target on {ctx.ticker} implies {pct(t.upside, signed=True)} "
            "from "
            f"{price(t.price)}, and we rate the shares **{rating}**.",
            f"**{rating}**, price target {price(t.price_target)} ({pct(t.upside, signed=True)} vs "
            f"{price(t.price)}), "
            f"based on the {t.blend}.",
        ],
    )


def respond(ctx: ExampleContext, rng: random.Random) -> str:
    """The valuation write-up, section order and wording varied by ``rng``."""
    c = ctx.company
    title = pick(
        rng,
        [
            f"# {c.name} ({c.ticker}): Valuation",
            f"# {c.ticker} Valuation: DCF, Comparables and Price Target",
            f"# Valuation Analysis: {c.name} ({c.ticker})",
            f"# {c.name} ({c.ticker}): {rating_word(ctx)} on DCF and Peer Multiples",
        ],
    )
    summary = f"{pick(rng, ['## Summary', '## Valuation Summary', '## Bottom Line'])}\n{_overview(ctx, rng)}"
    if ctx.analysis.method != "dcf":
        summary += (
            f" We value {c.name} with the {ctx.analysis.target.intrinsic_label} model rather than a DCF: it is "
            f"{ctx.analysis.method_reason}."
        )
    dcf_part = [_assumptions(ctx, rng), _bridge(ctx, rng), _sensitivity(ctx, rng)]
    comps = _comps(ctx, rng)
    body = [*dcf_part, comps] if rng.random() < 0.7 else [comps, *dcf_part]
    target = _target(ctx, rng)
    parts = [title, summary, *body, target] if rng.random() < 0.6 else [title, summary, target, *body]
    condition = _condition(ctx)
    if condition:
        parts.insert(2, condition)
    return "\n\n".join([*parts, disclaimer(rng)])


FAMILY = Family(
    name="valuation",
    title="Valuation",
    instructions=INSTRUCTIONS,
    sections=SECTIONS,
    respond=respond,
)
