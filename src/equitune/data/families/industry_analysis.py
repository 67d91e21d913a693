"""Industry analysis: the peer set, benchmarking against it, the company's rank, relative valuation, and the
sector's market dynamics in words.

Every figure comes from the engine's ``IndustrySummary`` (peer figures, medians, ranks, group revenue,
gaps, premiums) and the comparables; ranks are written in words ("second of seven", "the largest").
"""

from __future__ import annotations

import random

from equitune.data.blocks import (
    INDUSTRY_LABELS,
    INSTITUTION_COLUMNS,
    bp,
    count_word,
    discount_rate,
    industry_cell,
    industry_peers,
    money,
    mult,
    pct,
    price,
    rank_superlative,
    rank_words,
    rating_word,
    target_move,
)
from equitune.data.context import ExampleContext
from equitune.data.families.common import Family, bullets, disclaimer, pick, shuffled
from equitune.finance.industry import GroupMetrics, PeerFigures, Rank

INSTRUCTIONS = (
    "Write an industry analysis for {name} ({ticker}): its peers, how it ranks among them and the market dynamics.",
    "How does {ticker} stack up against its peers? Benchmark growth, margins and valuation.",
    "Analyse the competitive landscape around {name} ({ticker}) using the peer figures provided.",
    "Give me a peer benchmarking of {ticker}: revenue, growth, margins, multiples and where it ranks.",
    "Prepare the industry and competition section of a research report on {name}.",
    "Where does {name} ({ticker}) sit in its peer group by size, growth, profitability and valuation?",
    "Write a competitive positioning note on {ticker} against its {sector} peers.",
    "Compare {name} with its peer set and explain what the comparison says about its competitive position.",
    "Draft an industry overview for {ticker}: peer set, peer medians, the company's ranking and sector dynamics.",
    "As a sector analyst, assess {name}'s competitive position relative to its peers.",
    "Is {ticker} a leader or a laggard in its peer group? Use the peer data to answer.",
    "Produce a relative-performance analysis of {name} ({ticker}) versus its comparable companies.",
    "Summarise the market dynamics of the {sector} sector and how {name} is positioned within them.",
    "Benchmark {ticker} against peers on growth, EBITDA margin, ROIC and multiples, and rank it.",
    "Write the peer comparison for our {ticker} coverage, with a table and a conclusion.",
    "Explain the competitive landscape for {name}: who the peers are and how {ticker} compares.",
    "Does {ticker} deserve its multiple relative to peers? Walk through the peer benchmarking.",
    "Provide an institutional-style industry analysis on {name} ({ticker}) using only the figures provided.",
    "Using the data block, rank {name} among its peers and discuss the industry backdrop.",
    "Give an overview of {ticker}'s industry, its peer group and its relative strengths and weaknesses.",
    "How competitive is {name} within the {sector} peer group? Cover scale, growth, margins and valuation.",
    "Write a market-structure and peer-positioning section for a report on {name} ({ticker}).",
)

SECTIONS = ("header", "industry", "comps", "condition")

# Header variants of each required section (the test checks one of each appears).
HEADERS: dict[str, tuple[str, ...]] = {
    "peers": ("## Peer Set", "## Peer Group", "## The Comparable Set", "## Who We Compare Against"),
    "benchmark": ("## Peer Benchmarking", "## Benchmarking Against Peers", "## Operating Metrics vs Peers"),
    "position": ("## Competitive Position", "## Where {ticker} Ranks", "## Relative Positioning"),
    "valuation": ("## Relative Valuation", "## Valuation Versus Peers", "## Multiples Against the Group"),
    "dynamics": ("## Market Dynamics", "## Industry Dynamics", "## Sector Backdrop and Drivers"),
    "takeaway": ("## Takeaway", "## What It Means", "## Conclusion", "## Bottom Line"),
}
REQUIRED = tuple(HEADERS)

# Sector dynamics in words: competitive forces and demand drivers practitioners discuss for each GICS sector.
DYNAMICS: dict[str, tuple[str, ...]] = {
    "Communication Services": (
        "**Advertising cycle:** digital advertising budgets track consumer spending and shift quickly toward "
        "the platforms with the most engaged audiences and the best measurement.",
        "**Scale economics:** content and network costs are largely fixed, so the largest audiences earn the "
        "widest margins and can outspend smaller rivals.",
        "**Subscriber battles:** streaming and telecom compete on price, bundles and churn; pricing power "
        "depends on content that subscribers will not give up.",
        "**Regulation:** antitrust scrutiny, privacy rules and spectrum policy shape what the leaders can do.",
        "**Capital intensity:** networks and data centres demand heavy, recurring investment, which favours "
        "balance sheets that can fund it through the cycle.",
    ),
    "Consumer Discretionary": (
        "**Consumer cycle:** discretionary demand follows real incomes, employment and credit conditions, so "
        "revenue is more cyclical than for staples.",
        "**Channel shift:** e-commerce and omnichannel fulfilment reward scale in logistics and data.",
        "**Housing and big tickets:** home-related and durable spending move with housing turnover and rates.",
        "**Brand and traffic:** restaurants and retailers compete on traffic, value perception and unit "
        "growth; comparable-store trends separate the winners.",
        "**Cost pressure:** wages, freight and input costs squeeze margins unless pricing keeps up.",
    ),
    "Consumer Staples": (
        "**Defensive demand:** volumes are steady through the cycle; growth comes mainly from price and mix.",
        "**Private label:** retailer own brands compete on value whenever consumers trade down.",
        "**Input costs:** commodity, packaging and freight inflation flow through to margins with a lag.",
        "**Retail scale:** the largest merchants use purchasing power and membership models to win share.",
        "**Portfolio reshaping:** brand owners prune slow categories and buy into faster-growing ones.",
    ),
    "Energy": (
        "**Commodity prices:** revenue and margins move with oil, gas and refined-product prices, which no "
        "single company controls.",
        "**Capital discipline:** investors reward returns and distributions over volume growth, so spending "
        "restraint shapes supply.",
        "**Refining spreads:** refiners earn on crack spreads, which swing with product inventories and "
        "capacity outages.",
        "**Integration:** integrated majors balance upstream and downstream exposure, smoothing the cycle.",
        "**Energy transition:** policy and demand uncertainty raise the hurdle rate for long-lived projects.",
    ),
    "Financials": (
        "**Network effects:** payment networks and exchanges grow more valuable as more participants join, "
        "which entrenches the leaders.",
        "**Transaction volumes:** revenue tracks consumer spending, cross-border travel and trading activity.",
        "**Regulatory moats:** licensing, benchmarks and ratings franchises are hard to replicate.",
        "**Fintech competition:** new entrants pressure fees at the edges, while incumbents partner or buy.",
        "**Rate sensitivity:** interest rates move float income, trading activity and valuation multiples.",
    ),
    "Health Care": (
        "**Patent cliffs:** loss of exclusivity on major drugs forces companies to replace revenue through "
        "pipelines and acquisitions.",
        "**Pipeline productivity:** late-stage readouts and approvals drive the growth gap between peers.",
        "**Pricing pressure:** government negotiation and payer consolidation limit list-price increases.",
        "**Therapeutic breakthroughs:** a new drug class can reshape an entire market within a few years.",
        "**Research intensity:** heavy research spending is the entry ticket, which favours scale.",
    ),
    "Industrials": (
        "**Backlog and budgets:** defence and aerospace revenue follows government budgets and multi-year "
        "backlogs, which gives visibility.",
        "**Supply chains:** component shortages and labour constraints cap deliveries and pressure margins.",
        "**Pricing on contracts:** fixed-price programmes shift cost overruns onto the contractor.",
        "**Freight volumes:** railroads track industrial production and consumer goods flows, with "
        "operating-ratio discipline setting margins.",
        "**Consolidation:** scale players win on cost and on the breadth of their programmes.",
    ),
    "Information Technology": (
        "**Platform shifts:** AI infrastructure spending is redistributing growth toward accelerators, data "
        "centres and the software built on them.",
        "**Scale and ecosystems:** installed bases, developer ecosystems and switching costs protect leaders.",
        "**Subscription models:** recurring software revenue rewards retention and upsell over new licences.",
        "**Semiconductor cycle:** chip demand swings with inventory corrections and end-market cycles.",
        "**Hardware maturity:** mature device categories grow with replacement cycles and services attach.",
    ),
    "Materials": (
        "**Commodity exposure:** pricing for fertilisers and chemicals follows agricultural and industrial cycles.",
        "**Contracted models:** industrial gases sell on long-term contracts, which steadies returns.",
        "**Pricing power:** specialty producers pass through raw-material inflation more readily than "
        "commodity producers.",
        "**Volumes:** construction, automotive and industrial activity drive coatings and chemicals demand.",
        "**Energy costs:** feedstock and energy prices set the cost curve and decide who earns through the cycle.",
    ),
    "Real Estate": (
        "**Rates and cap rates:** higher rates lift capitalisation rates and funding costs, which weighs on "
        "property values.",
        "**Tenant demand:** occupancy and leasing spreads decide rent growth; retail landlords depend on "
        "store traffic, tower owners on carrier spending.",
        "**Lease structure:** long leases with escalators give visibility but lag inflation.",
        "**Capital access:** REITs distribute most income, so growth depends on external capital.",
        "**Consolidation:** carrier mergers and tenant bankruptcies concentrate counterparty risk.",
    ),
    "Utilities": (
        "**Regulated returns:** allowed returns on the rate base set earnings; rate cases decide growth.",
        "**Capex super-cycle:** grid hardening, renewables and data-centre load growth expand the rate base.",
        "**Rate sensitivity:** utilities trade as bond proxies, so multiples move with interest rates.",
        "**Load growth:** electricity demand from data centres and electrification is rising after years of "
        "stagnation.",
        "**Regulatory lag:** cost inflation between rate cases can compress earned returns.",
    ),
}
# Lenders and underwriters sit in the Financials sector with card networks and exchanges, but their market
# works differently.
INSTITUTION_DYNAMICS: dict[str, tuple[str, ...]] = {
    "bank": (
        "**Net interest margin:** the spread between loan yields and deposit costs sets most of a bank's "
        "revenue, and it moves with the rate cycle.",
        "**Credit cycle:** provisions rise in a downturn before revenue falls, so credit quality separates "
        "banks in a recession.",
        "**Capital rules:** Basel capital requirements decide how much of earnings can go back to shareholders.",
        "**Deposit competition:** higher rates make customers move cash to money funds, raising funding costs.",
        "**Fee businesses:** investment banking, trading and wealth management add revenue that does not depend "
        "on the balance sheet.",
    ),
    "insurer": (
        "**Pricing cycle:** premium rates harden after loss-heavy years and soften when capital floods in.",
        "**Claims inflation:** repair, medical and legal costs raise claims faster than policies reprice.",
        "**Catastrophe losses:** weather events cause the largest swings in underwriting results.",
        "**Investment income:** float is invested in bonds, so higher yields lift earnings with a lag.",
    ),
}

# The sector bullet that leads for a sub-industry (matched by a word of its name), so a refiner hears about
# crack spreads first and a hardware maker about replacement cycles.
_FOCUS: tuple[tuple[str, str], ...] = (
    ("telecommunication", "**Subscriber battles:**"),
    ("interactive media", "**Advertising cycle:**"),
    ("movies", "**Subscriber battles:**"),
    ("broadline", "**Channel shift:**"),
    ("home improvement", "**Housing and big tickets:**"),
    ("restaurant", "**Brand and traffic:**"),
    ("merchandise retail", "**Retail scale:**"),
    ("personal care", "**Private label:**"),
    ("beverage", "**Portfolio reshaping:**"),
    ("integrated oil", "**Integration:**"),
    ("exploration", "**Capital discipline:**"),
    ("refining", "**Refining spreads:**"),
    ("exchanges", "**Regulatory moats:**"),
    ("payment", "**Network effects:**"),
    ("biotechnology", "**Pipeline productivity:**"),
    ("pharmaceutical", "**Patent cliffs:**"),
    ("aerospace", "**Backlog and budgets:**"),
    ("rail", "**Freight volumes:**"),
    ("software", "**Subscription models:**"),
    ("semiconductor", "**Semiconductor cycle:**"),
    ("hardware", "**Hardware maturity:**"),
    ("fertilizer", "**Commodity exposure:**"),
    ("industrial gases", "**Contracted models:**"),
    ("specialty chemicals", "**Pricing power:**"),
    ("reit", "**Tenant demand:**"),
    ("utilities", "**Regulated returns:**"),
)
GENERIC_DYNAMICS = (
    "**Demand cycle:** revenue follows the end markets the group serves, so relative growth is the cleanest "
    "read on share.",
    "**Scale economics:** larger players spread fixed costs and investment over more revenue.",
    "**Pricing power:** margin differences within a peer group usually reflect differentiation and cost position.",
    "**Capital allocation:** returns on invested capital separate durable franchises from cyclical ones.",
)

_SUPERLATIVES: dict[str, tuple[str, str]] = {
    "revenue": ("largest", "smallest"),
    "market_cap": ("largest", "smallest"),
    "revenue_growth": ("fastest", "slowest"),
}


def _h(ctx: ExampleContext, rng: random.Random, key: str) -> str:
    return pick(rng, HEADERS[key]).format(ticker=ctx.ticker)


def _rank(ctx: ExampleContext, name: str) -> Rank | None:
    rank: Rank | None = getattr(ctx.industry.ranks, name)
    return rank


def _rank_phrase(rank: Rank, name: str, rng: random.Random) -> str:
    """'ranks second of seven on EBITDA margin' or 'has the second-highest EBITDA margin of the seven'."""
    high, low = _SUPERLATIVES.get(name, ("highest", "lowest"))
    label = INDUSTRY_LABELS[name]
    group = f"of the {count_word(rank.out_of)}"
    if name in ("revenue", "market_cap"):
        options = [
            f"ranks {rank_words(rank)} by {label}",
            f"is {rank_superlative(rank, high, low)} {group} by {label}",
        ]
    else:
        options = [
            f"ranks {rank_words(rank)} on {label}",
            f"has {rank_superlative(rank, high, low)} {label} {group}",
        ]
    return pick(rng, options)


def _versus(gap: float | None, fraction: bool = True, written: tuple[str, str] | None = None) -> str:
    """'above' / 'below' / 'in line with' for a company-minus-median gap (in line when it rounds to zero, or
    when the two figures, ``written`` as the text shows them, read the same)."""
    if gap is None:
        return "against"
    if abs(gap) < (0.0005 if fraction else 0.005) or (written is not None and written[0] == written[1]):
        return "in line with"
    return "above" if gap > 0 else "below"


def _leader(ctx: ExampleContext, name: str) -> PeerFigures | None:
    """The peer with the highest value of ``name`` when it beats the company (for 'X leads on ...')."""
    rank = _rank(ctx, name)
    candidates = [p for p in ctx.industry.peers if getattr(p, name) is not None]
    if rank is None or rank.position == 1 or not candidates:
        return None
    return max(candidates, key=lambda p: getattr(p, name))


def _peer_list(ctx: ExampleContext) -> str:
    names = [f"{p.name} ({p.ticker})" for p in industry_peers(ctx)]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def _peers_section(ctx: ExampleContext, rng: random.Random) -> str:
    s, comps, c = ctx.industry, ctx.analysis.comparables, ctx.company
    if s.peer_count == 0:
        return f"{_h(ctx, rng, 'peers')}\nNo covered company shares {c.ticker}'s sector: there is no peer set."
    if comps.basis == "sub_industry":
        basis = pick(
            rng,
            [
                f"the {comps.group} sub-industry, so these are direct competitors",
                f"its own sub-industry ({comps.group}), the closest like-for-like comparison",
            ],
        )
    elif comps.basis == "institutions":
        basis = pick(
            rng,
            [
                f"the other banks and insurers covered, because too few {c.sub_industry} companies are; read the "
                "ranks as positioning among lenders and underwriters rather than head-to-head share",
                f"the lenders and underwriters covered (the {c.sub_industry} sub-industry is too thin to stand alone)",
            ],
        )
    else:
        basis = pick(
            rng,
            [
                f"the wider {comps.group} sector, because too few {c.sub_industry} companies are covered; "
                "the "
                "comparison is therefore against sector peers rather than direct competitors",
                f"the {comps.group} sector as a whole (the {c.sub_industry} sub-industry is too thin to "
                "stand "
                "alone), so read the ranks as sector positioning rather than head-to-head share",
            ],
        )
    lead = pick(
        rng,
        [
            f"We benchmark {c.name} against {count_word(s.peer_count)} peers drawn from {basis}: {_peer_list(ctx)}.",
            f"The peer set comprises {count_word(s.peer_count)} companies from {basis}: {_peer_list(ctx)}.",
        ],
    )
    lines = [lead]
    if s.peer_revenue_total is not None and s.group_revenue_total is not None and s.revenue_share is not None:
        lines.append(
            pick(
                rng,
                [
                    f"Together the peers report {money(s.peer_revenue_total)} of revenue; with {c.ticker} "
                    "the group "
                    f"totals {money(s.group_revenue_total)}, of which {c.ticker} accounts for "
                    f"{pct(s.revenue_share)}.",
                    f"{c.ticker}'s {money(s.company.revenue)} of revenue is {pct(s.revenue_share)} of the "
                    f"{money(s.group_revenue_total)} the group reports (peers "
                    f"{money(s.peer_revenue_total)}).",
                ],
            )
        )
    return f"{_h(ctx, rng, 'peers')}\n" + " ".join(lines)


_TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("Revenue", "revenue"),
    ("Growth", "revenue_growth"),
    ("EBITDA margin", "ebitda_margin"),
    ("Operating margin", "operating_margin"),
    ("ROIC", "roic"),
    ("EV/EBITDA", "ev_ebitda"),
    ("P/E", "pe"),
)


def _benchmark_section(ctx: ExampleContext, rng: random.Random) -> str:
    s = ctx.industry
    if ctx.company.institution is not None:
        columns = [c for c in INSTITUTION_COLUMNS if c[1] != "market_cap"]
    else:
        columns = list(_TABLE_COLUMNS)
        if rng.random() < 0.5:
            columns.insert(2, ("Gross margin", "gross_margin"))
        if rng.random() < 0.5:
            columns.append(("EV/Sales", "ev_sales"))

    def row(label: str, m: GroupMetrics) -> str:
        return f"| {label} | " + " | ".join(industry_cell(m, name) for _, name in columns) + " |"

    lines = [
        "| Company | " + " | ".join(label for label, _ in columns) + " |",
        "|---" + "|---:" * len(columns) + "|",
        row(f"**{ctx.company.name} ({ctx.ticker})**", s.company),
        *(row(f"{p.name} ({p.ticker})", p) for p in industry_peers(ctx)),
        row("*Peer median*", s.peer_median),
    ]
    intro = pick(
        rng,
        [
            "Peers are listed by revenue, largest first; the median excludes the company itself.",
            f"The table sets {ctx.ticker} against each peer and the peer median (the median excludes {ctx.ticker}).",
            "Latest fiscal-year figures; peers ordered by revenue.",
        ],
    )
    return f"{_h(ctx, rng, 'benchmark')}\n{intro}\n\n" + "\n".join(lines)


def _scale_point(ctx: ExampleContext, rng: random.Random) -> str | None:
    s, rank = ctx.industry, _rank(ctx, "revenue")
    if rank is None or s.peer_count == 0:
        return None
    text = f"**Scale:** {ctx.ticker} {_rank_phrase(rank, 'revenue', rng)}, with {money(s.company.revenue)}"
    if s.revenue_to_peer_median is not None:
        text += f", {mult(s.revenue_to_peer_median)} the peer median of {money(s.peer_median.revenue)}"
    leader = _leader(ctx, "revenue")
    if leader is not None:
        text += f"; {leader.name} ({leader.ticker}) is the largest at {money(leader.revenue)}"
    return text + "."


def _growth_point(ctx: ExampleContext, rng: random.Random) -> str | None:
    s, rank = ctx.industry, _rank(ctx, "revenue_growth")
    if rank is None or s.peer_median.revenue_growth is None or s.revenue_growth_gap is None:
        return None
    written = (pct(s.company.revenue_growth, signed=True), pct(s.peer_median.revenue_growth, signed=True))
    text = (
        f"**Growth:** revenue growth of {pct(s.company.revenue_growth, signed=True)} is "
        f"{_versus(s.revenue_growth_gap, written=written)} the peer median of "
        f"{pct(s.peer_median.revenue_growth, signed=True)} "
        f"({bp(s.revenue_growth_gap)}); {ctx.ticker} {_rank_phrase(rank, 'revenue_growth', rng)}"
    )
    leader = _leader(ctx, "revenue_growth")
    if leader is not None:
        text += f", behind {leader.name} ({leader.ticker}) at {pct(leader.revenue_growth, signed=True)}"
    return text + "."


def _institution_points(ctx: ExampleContext, rng: random.Random) -> list[str]:
    """Net margin and ROE against the median lender or underwriter."""
    s, out = ctx.industry, []
    rank = _rank(ctx, "net_margin")
    if rank is not None and s.peer_median.net_margin is not None and s.net_margin_gap is not None:
        out.append(
            f"**Profitability:** a net margin of {pct(s.company.net_margin)} sits "
            f"{_versus(s.net_margin_gap, written=(pct(s.company.net_margin), pct(s.peer_median.net_margin)))} the "
            f"peer median of {pct(s.peer_median.net_margin)} ({bp(s.net_margin_gap)}); {ctx.ticker} "
            f"{_rank_phrase(rank, 'net_margin', rng)}."
        )
    rank = _rank(ctx, "roe")
    if rank is not None and s.peer_median.roe is not None and s.roe_gap is not None:
        verdict = (
            "its book value earns more than the typical peer's"
            if s.roe_gap > 0
            else "its book value earns less than the typical peer's"
            if s.roe_gap < 0
            else "level with the typical peer"
        )
        out.append(
            f"**Returns:** ROE of {pct(s.company.roe)} against a peer median of {pct(s.peer_median.roe)} "
            f"({ctx.ticker} {_rank_phrase(rank, 'roe', rng)}): {verdict}."
        )
    return out


def _margin_point(ctx: ExampleContext, rng: random.Random) -> str | None:
    s, rank = ctx.industry, _rank(ctx, "ebitda_margin")
    if rank is None or s.peer_median.ebitda_margin is None or s.ebitda_margin_gap is None:
        return None
    text = (
        f"**Profitability:** an EBITDA margin of {pct(s.company.ebitda_margin)} sits "
        f"{_versus(s.ebitda_margin_gap, written=(pct(s.company.ebitda_margin), pct(s.peer_median.ebitda_margin)))} "
        f"the peer median of {pct(s.peer_median.ebitda_margin)} "
        f"({bp(s.ebitda_margin_gap)}), so {ctx.ticker} {_rank_phrase(rank, 'ebitda_margin', rng)}"
    )
    op_rank = _rank(ctx, "operating_margin")
    if op_rank is not None and s.peer_median.operating_margin is not None:
        text += (
            f"; its operating margin of {pct(s.company.operating_margin)} compares with a median of "
            f"{pct(s.peer_median.operating_margin)} ({rank_words(op_rank)})"
        )
    return text + "."


def _gross_point(ctx: ExampleContext, rng: random.Random) -> str | None:
    s, rank = ctx.industry, _rank(ctx, "gross_margin")
    if rank is None or s.peer_median.gross_margin is None or s.gross_margin_gap is None:
        return None
    gap = s.gross_margin_gap
    reading = (
        "a sign of pricing power or a richer mix"
        if gap > 0
        else "a business mix with heavier cost of sales than the median peer"
        if gap < 0
        else "level with the median peer"
    )
    return (
        f"**Gross margin:** {pct(s.company.gross_margin)} against a median of "
        f"{pct(s.peer_median.gross_margin)} "
        f"({ctx.ticker} {_rank_phrase(rank, 'gross_margin', rng)}), {reading}."
    )


def _returns_point(ctx: ExampleContext, rng: random.Random) -> str | None:
    s, rank = ctx.industry, _rank(ctx, "roic")
    if rank is None or s.peer_median.roic is None or s.roic_gap is None:
        return None
    verdict = (
        "capital is earning more than at the typical peer"
        if s.roic_gap > 0
        else "each dollar of invested capital earns less than at the typical peer"
        if s.roic_gap < 0
        else "level with the typical peer"
    )
    return (
        f"**Returns:** ROIC of {pct(s.company.roic)} versus a peer median of {pct(s.peer_median.roic)} "
        f"({ctx.ticker} {_rank_phrase(rank, 'roic', rng)}): {verdict}."
    )


def _position_section(ctx: ExampleContext, rng: random.Random) -> str:
    if ctx.company.institution is not None:
        candidates = [_scale_point(ctx, rng), _growth_point(ctx, rng), *_institution_points(ctx, rng)]
    else:
        candidates = [
            _scale_point(ctx, rng),
            _growth_point(ctx, rng),
            _margin_point(ctx, rng),
            _gross_point(ctx, rng),
            _returns_point(ctx, rng),
        ]
    points = [p for p in candidates if p is not None]
    if not points:
        return f"{_h(ctx, rng, 'position')}\nThe peer figures are too sparse to rank {ctx.ticker}."
    return f"{_h(ctx, rng, 'position')}\n" + bullets(shuffled(rng, points, keep_first=1))


_PREMIUMS = (("ev_ebitda", "ev_ebitda_premium"), ("pe", "pe_premium"), ("ev_sales", "ev_sales_premium"))
_INSTITUTION_PREMIUMS = (("pe", "pe_premium"), ("pb", "pb_premium"))


def _valuation_section(ctx: ExampleContext, rng: random.Random) -> str:
    s, comps = ctx.industry, ctx.analysis.comparables
    lines = []
    for name, premium_field in _INSTITUTION_PREMIUMS if ctx.company.institution is not None else _PREMIUMS:
        premium = getattr(s, premium_field)
        own, median = getattr(s.company, name), getattr(s.peer_median, name)
        rank = _rank(ctx, name)
        if premium is None or own is None or median is None or rank is None:
            continue
        word = {"above": "a premium", "below": "a discount", "in line with": "in line"}[
            _versus(premium, False, (mult(own), mult(median)))
        ]
        lines.append(
            f"**{INDUSTRY_LABELS[name]}:** {mult(own)} against a peer median of {mult(median)} "
            f"({pct(premium, signed=True)}, {word}); {rank_words(rank)} in the group."
        )
    body = bullets(lines) if lines else f"{ctx.ticker} has no multiple comparable with its peers' medians."
    implied = None if ctx.company.institution is not None else comps.summary("ev_ebitda").implied_value_per_share
    extra = []
    if implied is not None:
        side = "above" if implied > ctx.analysis.market.price else "below"
        extra.append(
            f"At the peer median EV/EBITDA the shares would be worth {price(implied)}, {side} the current "
            f"{price(ctx.analysis.market.price)}."
        )
    if comps.value_per_share is not None:
        extra.append(f"Blending the multiples, our comparables value is {price(comps.value_per_share)} per share.")
    verdict = _valuation_read(ctx)
    if verdict:
        extra.append(verdict)
    return f"{_h(ctx, rng, 'valuation')}\n{body}" + ("\n\n" + " ".join(extra) if extra else "")


def _headline_premium(ctx: ExampleContext) -> float | None:
    s = ctx.industry
    if ctx.company.institution is not None:
        return s.pb_premium if s.pb_premium is not None else s.pe_premium
    return s.ev_ebitda_premium if s.ev_ebitda_premium is not None else s.pe_premium


def _quality(ctx: ExampleContext) -> tuple[int, int]:
    """Of growth, EBITDA margin and ROIC (banks and insurers: growth, net margin and ROE): how many beat the
    peer median, how many trail it."""
    s = ctx.industry
    if ctx.company.institution is not None:
        candidates = (s.revenue_growth_gap, s.net_margin_gap, s.roe_gap)
    else:
        candidates = (s.revenue_growth_gap, s.ebitda_margin_gap, s.roic_gap)
    gaps = [g for g in candidates if g is not None]
    return sum(1 for g in gaps if g > 0), sum(1 for g in gaps if g < 0)


def _valuation_read(ctx: ExampleContext) -> str | None:
    premium = _headline_premium(ctx)
    ahead, behind = _quality(ctx)
    if premium is None or premium == 0 or ahead == behind:
        return None
    if premium > 0 and ahead > behind:
        return "The premium is backed by above-median operating quality: it looks earned rather than stretched."
    if premium > 0:
        return (
            "The premium is harder to justify on the operating figures, which trail the median on most "
            "measures; the market is paying for something the latest year does not yet show."
        )
    if ahead > behind:
        return (
            "The discount sits oddly with above-median operating quality, which argues for re-rating "
            "potential "
            "if the gap in performance holds."
        )
    return "The discount is consistent with operating figures that trail the peer median on most measures."


def _dynamics_section(ctx: ExampleContext, rng: random.Random) -> str:
    pool = list(
        INSTITUTION_DYNAMICS[ctx.company.institution]
        if ctx.company.institution is not None
        else DYNAMICS.get(ctx.company.sector, GENERIC_DYNAMICS)
    )
    sub = ctx.company.sub_industry.casefold()
    prefix = next((p for word, p in _FOCUS if word in sub), None)
    lead = [b for b in pool if prefix is not None and b.startswith(prefix)][:1]
    rest = [b for b in pool if b not in lead]
    chosen = lead + rng.sample(rest, k=min(3 - len(lead), len(rest)))
    s = ctx.industry
    if s.revenue_growth_gap is None or s.revenue_growth_gap == 0:
        link = None
    elif s.revenue_growth_gap > 0:
        link = pick(
            rng,
            [
                f"Against that backdrop {ctx.ticker} is outgrowing the median peer, so it is gaining ground "
                "within "
                "the group.",
                f"{ctx.ticker}'s above-median growth says it is winning more than its share of the group's demand.",
            ],
        )
    else:
        link = pick(
            rng,
            [
                f"Against that backdrop {ctx.ticker} is growing more slowly than the median peer, so its "
                "weight in "
                "the group is at risk of slipping unless growth re-accelerates.",
                f"{ctx.ticker}'s below-median growth means peers are capturing more of the incremental demand.",
            ],
        )
    text = f"{_h(ctx, rng, 'dynamics')}\n" + bullets(chosen)
    return text + (f"\n\n{link}" if link else "")


def _takeaway_section(ctx: ExampleContext, rng: random.Random) -> str:
    s = ctx.industry
    growth = s.revenue_growth_gap
    # Banks and insurers earn on their balance sheet: their "margin" here is the return on equity.
    margin = s.roe_gap if ctx.company.institution is not None else s.ebitda_margin_gap
    size = _rank(ctx, "revenue")
    if growth is not None and margin is not None:
        if growth > 0 and margin > 0:
            core = "structurally advantaged: it is both outgrowing and out-earning the median peer"
        elif margin > 0:
            core = (
                "a profitable, maturing franchise: it earns more per dollar of sales but does not outgrow "
                "the "
                "median peer"
            )
        elif growth > 0:
            core = "a share-taker still building scale economics: it outgrows the median peer without out-earning it"
        else:
            core = "under competitive pressure: it neither outgrows nor out-earns the median peer"
    elif margin is not None and margin != 0:
        core = "above the median on profitability" if margin > 0 else "below the median on profitability"
    else:
        core = "hard to place: the peers do not report enough of the same figures"
    scale = ""
    if size is not None and s.peer_count > 0:
        scale = f" It is {rank_superlative(size, 'largest', 'smallest')} of the {count_word(size.out_of)} by revenue."
    premium = _headline_premium(ctx)
    valuation = ""
    if premium is not None and premium != 0:
        valuation = (
            " The market already pays a premium for it."
            if premium > 0
            else " The shares trade at a discount to the peer median multiple."
        )
    lead = pick(rng, [f"{ctx.company.name} is {core}.", f"On the peer figures, {ctx.ticker} is {core}."])
    return f"{_h(ctx, rng, 'takeaway')}\n{lead}{scale}{valuation}"


def _condition_section(ctx: ExampleContext, rng: random.Random) -> str | None:
    if ctx.is_base:
        return None
    base, now, cond = ctx.base, ctx.analysis, ctx.condition
    label, base_rate = discount_rate(base)
    _, now_rate = discount_rate(now)
    wacc = (
        f"the {label} is unchanged at {pct(now_rate)}"
        if pct(now_rate) == pct(base_rate)
        else f"the {label} moves from {pct(base_rate)} to {pct(now_rate)}"
    )
    text = pick(
        rng,
        [
            "The peer figures are reported results, so the ranking above does not change in the "
            f"{cond.title} "
            f"scenario; what changes is our valuation: {wacc} and the price target {target_move(base, now)}, "
            f"for a {rating_word(ctx)} rating.",
            f"Reported peer figures, and so {ctx.ticker}'s ranks, are the same under this scenario; our "
            f"valuation may not be: {wacc}, and the target {target_move(base, now)} ({rating_word(ctx)}).",
        ],
    )
    median = ctx.industry.peer_median.revenue_growth
    if cond.revenue_growth_shift and now.dcf is not None and median is not None:
        growth = now.dcf.inputs.initial_growth
        side = "above" if growth > median else "below" if growth < median else "in line with"
        text += (
            f" Our year-one revenue growth assumption moves {bp(cond.revenue_growth_shift)} to "
            f"{pct(growth)}, "
            f"{side} the peer median reported growth of {pct(median, signed=True)}."
        )
    return f"## Scenario: {cond.title}\n{text}"


def respond(ctx: ExampleContext, rng: random.Random) -> str:
    """The industry analysis, section order and wording varied by ``rng``."""
    c = ctx.company
    title = pick(
        rng,
        [
            f"# {c.name} ({c.ticker}): Industry and Competitive Analysis",
            f"# {c.name} ({c.ticker}) - Peer Benchmarking",
            f"# Competitive Landscape: {c.name} ({c.ticker})",
            f"# {c.ticker} Among Its Peers",
        ],
    )
    middle = [_benchmark_section(ctx, rng), _position_section(ctx, rng)]
    if rng.random() < 0.3:
        middle.reverse()
    tail = [_valuation_section(ctx, rng), _dynamics_section(ctx, rng)]
    if rng.random() < 0.5:
        tail.reverse()
    body = [_peers_section(ctx, rng), *middle, *tail]
    condition = _condition_section(ctx, rng)
    if condition:
        body.append(condition)
    body.append(_takeaway_section(ctx, rng))
    return "\n\n".join([title, *body, disclaimer(rng)])


FAMILY = Family(
    name="industry_analysis",
    title="Industry analysis",
    instructions=INSTRUCTIONS,
    sections=SECTIONS,
    respond=respond,
)
