"""The ``csv`` provider: import a user's fundamentals file through a column mapping.

A mapping says which column holds each of our fields (``{"revenue": "Sales"}``) and in which unit
(``{"revenue": {"column": "Sales", "unit": "dollars"}}`` divides by a million, because equitune keeps money
and share counts in millions). The built-in preset ``"sp500"`` reads the public S&P 500
``constituents-financials.csv`` and joins ``constituents.csv`` for the GICS sector.

Figures the file lacks but can imply are derived and said so in the record's ``notes``: shares = market
cap ÷ price, revenue = market cap ÷ price/sales, book equity = market cap ÷ price/book, net income = EPS ×
shares, dividends per share = dividend yield × price, EBITDA = operating income + D&A, free cash flow =
operating cash flow − capex. A record that still lacks a required figure is kept with ``status="partial"``;
a row that cannot become a record (no symbol, an unparsable number or date, a duplicate) is rejected with
its line number. The import's ``ImportReport`` counts all of this.

A file without a fiscal-year column holds one period of trailing figures. It becomes one ``FiscalYear``
labelled with the year of ``as_of``, with ``period_end=None``, and a note saying so: it is not a reported
fiscal year.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import logging
import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from equitune.errors import ConfigError, DataError
from equitune.market.base import normalise_ticker, unknown_ticker
from equitune.market.models import FISCAL_FIELDS, REQUIRED_FISCAL_FIELDS, Company, FiscalYear

log = logging.getLogger(__name__)

# Fields a mapping may name, by kind. Ratio inputs are not stored: they only feed derivations.
TEXT_FIELDS: tuple[str, ...] = ("ticker", "name", "sector", "sub_industry", "currency", "fiscal_year_end")
DATE_FIELDS: tuple[str, ...] = ("price_date", "as_of", "period_end")
INT_FIELDS: tuple[str, ...] = ("cik", "fiscal_year")
COMPANY_NUMBERS: tuple[str, ...] = ("price", "diluted_shares", "market_cap", "beta")
RATIO_INPUTS: tuple[str, ...] = ("price_to_sales", "price_to_book", "price_to_earnings", "dividend_yield")
NUMBER_FIELDS: tuple[str, ...] = COMPANY_NUMBERS + FISCAL_FIELDS + RATIO_INPUTS
MAPPABLE_FIELDS: tuple[str, ...] = TEXT_FIELDS + DATE_FIELDS + INT_FIELDS + NUMBER_FIELDS
_POSITIVE = frozenset({"price", "diluted_shares", "market_cap"})  # Company requires these > 0

# Multipliers from a column's unit to equitune's unit (millions for money and shares).
UNITS: dict[str, float] = {
    "dollars": 1e-6,
    "thousands": 1e-3,
    "millions": 1.0,
    "billions": 1e3,
    "units": 1.0,
    "fraction": 1.0,
    "percent": 0.01,
}
_BLANK = frozenset({"", "na", "n/a", "nan", "null", "none", "-", "--"})


class ColumnSpec(BaseModel):
    """Where one of our fields lives in the file: the column's header and its unit (or a raw multiplier)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(description="Header of the column, exactly as in the file (surrounding spaces ignored).")
    unit: Literal["dollars", "thousands", "millions", "billions", "units", "fraction", "percent"] | None = Field(
        default=None,
        description="Unit of the column's numbers; converted to millions (money, shares) or fractions.",
    )
    scale: float | None = Field(default=None, description="Explicit multiplier to equitune's unit, instead of 'unit'.")

    @model_validator(mode="after")
    def _one_scale(self) -> ColumnSpec:
        if self.unit is not None and self.scale is not None:
            raise ValueError(f"column '{self.column}': give 'unit' or 'scale', not both")
        return self

    @property
    def factor(self) -> float:
        """The multiplier that turns the column's numbers into equitune's units."""
        if self.scale is not None:
            return self.scale
        return UNITS[self.unit] if self.unit else 1.0


class JoinSpec(BaseModel):
    """A second file joined on the ticker, supplying company fields the main file lacks (e.g. GICS sector)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str = Field(description="Column of the second file holding the ticker.")
    columns: dict[Literal["name", "sector", "sub_industry", "cik"], str] = Field(
        description="Our company field -> column of the second file."
    )
    infer_sector: bool = Field(
        default=True,
        description="For a ticker missing from the second file, use the sector it gives the sub-industry.",
    )
    default_file: str | None = Field(default=None, description="File name looked for beside the main file.")


class CsvMapping(BaseModel):
    """How to read one kind of fundamentals file: columns and units, an optional join, notes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    columns: dict[str, ColumnSpec] = Field(description="Our field name -> the file's column and unit.")
    join: JoinSpec | None = Field(default=None, description="A second file joined on the ticker.")
    label: str = Field(default="CSV file", description="What the file is, for the records' 'source'.")
    currency: str = Field(default="USD", description="Currency of the file's money columns, when no column says.")
    notes: list[str] = Field(default_factory=list, description="Caveats added to every record's notes.")

    @field_validator("columns", mode="before")
    @classmethod
    def _expand_shorthand(cls, value: Any) -> Any:
        # {"revenue": "Sales"} is shorthand for {"revenue": {"column": "Sales"}}.
        if isinstance(value, dict):
            return {k: {"column": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("columns")
    @classmethod
    def _known_fields(cls, value: dict[str, ColumnSpec]) -> dict[str, ColumnSpec]:
        unknown = sorted(set(value) - set(MAPPABLE_FIELDS))
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(unknown)}; mappable fields: {', '.join(MAPPABLE_FIELDS)}")
        if "ticker" not in value:
            raise ValueError("the mapping must name the column that holds the ticker ('ticker')")
        return value

    @classmethod
    def resolve(cls, mapping: str | os.PathLike[str] | dict[str, Any] | CsvMapping | None) -> CsvMapping:
        """A mapping from a preset name, a JSON/YAML file, a dict (full, or ``field -> column``) or None.

        ``None`` maps every field to a column of the same name (``ticker``, ``revenue``, ...), numbers
        already in equitune's units; ``load_csv`` keeps only the columns the file has."""
        if isinstance(mapping, CsvMapping):
            return mapping
        if mapping is None:
            return cls.identity(MAPPABLE_FIELDS)
        if isinstance(mapping, str) and mapping.casefold() in PRESETS:
            return PRESETS[mapping.casefold()]
        where = "CSV mapping"
        if isinstance(mapping, (str, os.PathLike)):
            path = Path(mapping).expanduser()
            if path.suffix.lower() not in {".json", ".yaml", ".yml"} or not path.is_file():
                raise ConfigError(
                    f"Unknown CSV mapping '{mapping}': give a preset ({', '.join(PRESETS)}) "
                    "or an existing .json/.yaml mapping file."
                )
            where = f"CSV mapping file {path}"
            try:
                text = path.read_text(encoding="utf-8")
                mapping = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                raise ConfigError(f"{where}: cannot be read ({exc})") from exc
            if not isinstance(mapping, dict):
                raise ConfigError(f"{where}: expected a mapping of field names to columns")
        data = mapping if "columns" in mapping else {"columns": mapping}
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise ConfigError(f"{where}: {problems}") from None

    @classmethod
    def identity(cls, header: tuple[str, ...] | list[str]) -> CsvMapping:
        """Each of our fields found in ``header`` read from the column of the same name, without scaling."""
        found = {name: ColumnSpec(column=name) for name in MAPPABLE_FIELDS if name in header}
        if "ticker" not in found:
            raise ConfigError("CSV mapping: the file has no 'ticker' column; give a mapping naming it")
        return cls(columns=found)


SP500_MAPPING = CsvMapping(
    label="S&P 500 constituents financials",
    columns={
        "ticker": ColumnSpec(column="Symbol"),
        "name": ColumnSpec(column="Name"),
        # The file's "Sector" column holds the GICS sub-industry; the sector comes from constituents.csv.
        "sub_industry": ColumnSpec(column="Sector"),
        "price": ColumnSpec(column="Price", unit="units"),
        "eps_diluted": ColumnSpec(column="Earnings/Share", unit="units"),
        "market_cap": ColumnSpec(column="Market Cap", unit="dollars"),
        "ebitda": ColumnSpec(column="EBITDA", unit="dollars"),
        "price_to_sales": ColumnSpec(column="Price/Sales"),
        "price_to_book": ColumnSpec(column="Price/Book"),
        "price_to_earnings": ColumnSpec(column="Price/Earnings"),
        "dividend_yield": ColumnSpec(column="Dividend Yield", unit="fraction"),
    },
    join=JoinSpec(
        key="Symbol",
        columns={
            "sector": "GICS Sector",
            "sub_industry": "GICS Sub-Industry",
            "cik": "CIK",
            "name": "Security",
        },
        default_file="constituents.csv",
    ),
    notes=[
        "sub_industry from the file's 'Sector' column, which holds the GICS sub-industry.",
        "eps_diluted from 'Earnings/Share'; the file does not say whether it is basic or diluted.",
    ],
)

PRESETS: dict[str, CsvMapping] = {"sp500": SP500_MAPPING}


@dataclass(frozen=True)
class RejectedRow:
    """A data row that could not become a record: its line in the file, the ticker if known, and why."""

    line: int
    reason: str
    ticker: str | None = None


@dataclass
class ImportReport:
    """What an import produced: counts of complete, partial and rejected, and the reasons, aggregated.

    ``missing`` counts, per cause ("EBITDA blank"), the records in which it leaves a required figure
    missing, and ``missing_fields`` names those figures; ``not_provided`` lists the required figures no
    mapped column supplies, which every record lacks; ``as_complete_as_file`` counts the partial records
    missing nothing else. ``blank_cells`` counts blank cells per mapped column.
    """

    file: Path
    rows: int = 0
    complete: int = 0
    partial: int = 0
    as_complete_as_file: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    missing: Counter[str] = field(default_factory=Counter)
    missing_fields: dict[str, list[str]] = field(default_factory=dict)
    not_provided: list[str] = field(default_factory=list)
    blank_cells: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    @property
    def records(self) -> int:
        """Records produced (complete plus partial)."""
        return self.complete + self.partial

    def rejected_reasons(self) -> Counter[str]:
        """Rejections counted by kind of reason (the text before any ':')."""
        return Counter(r.reason.split(":")[0] for r in self.rejected)

    def format(self, max_lines: int = 12) -> str:
        """A short human summary: counts first, then why records are partial and rows were rejected."""
        lines = [
            f"{self.file.name}: {self.rows} rows -> {self.complete} complete, {self.partial} partial, "
            f"{len(self.rejected)} rejected."
        ]
        if self.not_provided:
            lines.append(f"Not in the file, so missing from every record: {', '.join(self.not_provided)}.")
            lines.append(f"Records with everything else the file can give: {self.as_complete_as_file}.")
        if self.missing:
            lines.append("Missing in some rows:")
            for cause, count in self.missing.most_common(max_lines):
                fields = self.missing_fields.get(cause)
                lines.append(f"  {cause}: {count}" + (f" (no {', '.join(fields)})" if fields else ""))
            if len(self.missing) > max_lines:
                lines.append(f"  ... and {len(self.missing) - max_lines} more kinds")
        if self.blank_cells:
            cells = ", ".join(f"{column} {count}" for column, count in self.blank_cells.most_common())
            lines.append(f"Blank cells: {cells}.")
        if self.rejected:
            lines.append("Rejected:")
            lines.extend(f"  line {r.line}: {r.reason}" for r in self.rejected[:max_lines])
            if len(self.rejected) > max_lines:
                lines.append(f"  ... and {len(self.rejected) - max_lines} more")
        lines.extend(self.notes)
        return "\n".join(lines)


@dataclass(frozen=True)
class _Derivation:
    target: str
    inputs: tuple[str, ...]
    compute: Callable[..., float | None]
    formula: str  # with {input} placeholders replaced by the source's column names
    caveat: str = ""


def _ratio(a: float, b: float) -> float | None:
    return a / b if b != 0 else None


# Order matters: later rules may use what earlier ones derived (shares before net income).
_DERIVATIONS: tuple[_Derivation, ...] = (
    _Derivation(
        "diluted_shares",
        ("market_cap", "price"),
        _ratio,
        "{market_cap} ÷ {price}",
        " (shares implied by market value, not a reported diluted count)",
    ),
    _Derivation("market_cap", ("price", "diluted_shares"), lambda p, s: p * s, "{price} × {diluted_shares}"),
    _Derivation("eps_diluted", ("price", "price_to_earnings"), _ratio, "{price} ÷ {price_to_earnings}"),
    _Derivation("revenue", ("market_cap", "price_to_sales"), _ratio, "{market_cap} ÷ {price_to_sales}"),
    _Derivation("total_equity", ("market_cap", "price_to_book"), _ratio, "{market_cap} ÷ {price_to_book}"),
    _Derivation("net_income", ("eps_diluted", "diluted_shares"), lambda e, s: e * s, "{eps_diluted} × shares"),
    _Derivation("dividends_per_share", ("dividend_yield", "price"), lambda y, p: y * p, "{dividend_yield} × {price}"),
    _Derivation(
        "ebitda",
        ("operating_income", "depreciation_amortization"),
        lambda o, d: o + d,
        "{operating_income} + {depreciation_amortization}",
    ),
    _Derivation(
        "free_cash_flow",
        ("operating_cash_flow", "capex"),
        lambda o, c: o - c,
        "{operating_cash_flow} − {capex}",
    ),
)
_DERIVED_BY = {d.target: d for d in _DERIVATIONS}


@dataclass
class _Row:
    line: int
    values: dict[str, Any]
    blank: set[str]  # our fields whose column is blank in this row
    problems: dict[str, str]  # our field -> why its cell could not be used (e.g. "Price not positive")


class _Reject(Exception):
    """A row that cannot become a record; the message is the reason."""


@dataclass
class _Table:
    path: Path
    header: list[str]
    rows: list[tuple[int, list[str]]]

    def index_of(self, column: str, used_for: str) -> int:
        positions = [i for i, name in enumerate(self.header) if name == column.strip()]
        if not positions:
            raise DataError(
                f"{self.path}, line 1: column '{column}' (mapped to {used_for}) is not in the header; "
                f"columns are: {', '.join(self.header)}"
            )
        if len(positions) > 1:
            raise DataError(f"{self.path}, line 1: column '{column}' appears {len(positions)} times in the header")
        return positions[0]


def _read_table(path: Path) -> _Table:
    """Read a CSV file strictly: UTF-8 text, a header row, the same number of cells in every row."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror})") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    try:
        header = [name.strip() for name in next(reader, [])]
        if not any(header):
            raise DataError(f"{path}, line 1: no header row")
        start = reader.line_num + 1
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(header):
                where = (
                    f"no cell for column '{header[len(cells)]}'"
                    if len(cells) < len(header)
                    else f"extra cell after column '{header[-1]}'"
                )
                raise DataError(f"{path}, line {line}: {len(cells)} cells but the header has {len(header)} ({where})")
            rows.append((line, cells))
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None
    return _Table(path, header, rows)


def _parse_number(raw: str) -> float:
    text = raw.replace(",", "").replace("$", "").replace("%", "").strip()
    negative = text.startswith("(") and text.endswith(")")  # accounting style (123) = -123
    value = float(text[1:-1] if negative else text)
    if not math.isfinite(value):
        raise ValueError(raw)
    return -value if negative else value


def _parse_date(raw: str) -> dt.date:
    for fmt in ("%Y-%m-%d", "%m/%d/%Y", "%Y/%m/%d"):
        try:
            return dt.datetime.strptime(raw, fmt).date()
        except ValueError:
            continue
    raise ValueError(raw)


def _clean(value: float) -> float:
    # Twelve significant digits drop binary noise from unit scaling (92293693440 * 1e-6).
    return float(f"{value:.12g}")


def _parse_row(line: int, cells: list[str], columns: dict[str, tuple[int, ColumnSpec]]) -> _Row:
    values: dict[str, Any] = {}
    blank: set[str] = set()
    problems: dict[str, str] = {}
    for name, (index, spec) in columns.items():
        raw = cells[index].strip()
        if raw.casefold() in _BLANK:
            values[name] = None
            blank.add(name)
            continue
        try:
            if name in TEXT_FIELDS:
                values[name] = raw
            elif name in DATE_FIELDS:
                values[name] = _parse_date(raw)
            elif name in INT_FIELDS:
                number = _parse_number(raw.upper().removeprefix("FY"))
                if number != int(number):
                    raise ValueError(raw)
                values[name] = int(number)
            else:
                values[name] = _clean(_parse_number(raw) * spec.factor)
        except ValueError:
            kind = "date" if name in DATE_FIELDS else "whole number" if name in INT_FIELDS else "number"
            raise _Reject(f"unparsable {kind} in column '{spec.column}': {raw!r}") from None
        if name in _POSITIVE and values[name] <= 0:
            problems[name] = f"{spec.column} not positive ({raw})"
            values[name] = None
    if not values.get("ticker"):
        raise _Reject("no symbol")
    values["ticker"] = normalise_ticker(values["ticker"])
    return _Row(line, values, blank, problems)


@dataclass
class _Join:
    path: Path
    spec: JoinSpec
    rows: dict[str, dict[str, Any]]
    sector_of_sub_industry: dict[str, str]


def _read_join(path: Path, spec: JoinSpec) -> _Join:
    table = _read_table(path)
    key = table.index_of(spec.key, "the join key")
    columns = {name: table.index_of(column, name) for name, column in spec.columns.items()}
    rows: dict[str, dict[str, Any]] = {}
    sectors: dict[str, set[str]] = {}
    for line, cells in table.rows:
        ticker = normalise_ticker(cells[key])
        if not ticker:
            raise DataError(f"{path}, line {line}: column '{spec.key}' is blank")
        record: dict[str, Any] = {}
        for name, index in columns.items():
            raw = cells[index].strip()
            if not raw:
                continue
            if name == "cik":
                try:
                    record[name] = int(raw)
                except ValueError:
                    raise DataError(
                        f"{path}, line {line}, column '{spec.columns['cik']}': not a CIK: {raw!r}"
                    ) from None
            else:
                record[name] = raw
        rows[ticker] = record
        if record.get("sub_industry") and record.get("sector"):
            sectors.setdefault(record["sub_industry"], set()).add(record["sector"])
    # Only unambiguous sub-industry -> sector pairs are usable for inference.
    unique = {sub: next(iter(found)) for sub, found in sectors.items() if len(found) == 1}
    return _Join(path, spec, rows, unique)


def _sources(name: str, mapped: set[str], seen: frozenset[str] = frozenset()) -> set[str] | None:
    """Mapped fields that feed ``name`` (itself, or its derivation's inputs); None if none can."""
    if name in mapped:
        return {name}
    rule = _DERIVED_BY.get(name)
    if rule is None or name in seen:
        return None
    found: set[str] = set()
    for item in rule.inputs:
        sub = _sources(item, mapped, seen | {name})
        if sub is None:
            return None
        found |= sub
    return found


class _Builder:
    """Turns parsed rows into Company records and fills in the import report."""

    def __init__(self, table: _Table, mapping: CsvMapping, join: _Join | None, as_of: dt.date, as_of_note: str):
        self.table = table
        self.mapping = mapping
        self.join = join
        self.as_of = as_of
        self.as_of_note = as_of_note
        self.mapped = set(mapping.columns)
        self.multi_year = "fiscal_year" in self.mapped
        self.report = ImportReport(file=table.path)
        self.join_stats: Counter[str] = Counter()
        self.unknown_sector: list[str] = []
        # Required line items of the kinds of company seen (banks and insurers promise other lines).
        self.required_seen: list[str] = []

    def column(self, name: str) -> str:
        return self.mapping.columns[name].column

    def describe(self, formula: str) -> str:
        return formula.format(**{name: f"'{spec.column}'" for name, spec in self.mapping.columns.items()})

    def build(self) -> dict[str, Company]:
        columns = {name: (self.table.index_of(spec.column, name), spec) for name, spec in self.mapping.columns.items()}
        groups: dict[str, list[_Row]] = {}
        seen: dict[tuple[str, int | None], int] = {}
        for line, cells in self.table.rows:
            self.report.rows += 1
            ticker = None
            try:
                row = _parse_row(line, cells, columns)
                ticker = row.values["ticker"]
                year = row.values.get("fiscal_year") if self.multi_year else None
                if self.multi_year and year is None:
                    raise _Reject(f"fiscal year blank in column '{self.column('fiscal_year')}'")
                if (ticker, year) in seen:
                    what = f"{ticker} FY{year}" if year is not None else ticker
                    raise _Reject(f"duplicate symbol: {what} (first on line {seen[ticker, year]})")
            except _Reject as exc:
                self.report.rejected.append(RejectedRow(line, str(exc), ticker))
                continue
            seen[ticker, year] = line
            for name in row.blank:
                self.report.blank_cells[self.column(name)] += 1
            groups.setdefault(ticker, []).append(row)
        companies: dict[str, Company] = {}
        for ticker, rows in groups.items():
            rows.sort(key=lambda r: r.values.get("fiscal_year") or 0, reverse=True)
            try:
                companies[ticker] = self.company(ticker, rows)
            except ValidationError as exc:
                reason = _first_error(exc)
                for row in rows:
                    self.report.rejected.append(RejectedRow(row.line, f"invalid record: {reason}", ticker))
        self.report.rejected.sort(key=lambda r: r.line)
        self.finish_report()
        return companies

    def derive(self, row: _Row) -> tuple[dict[str, Any], list[str], dict[str, list[str]]]:
        """Values with derivations applied, notes on what was derived, the causes of each missing field."""
        values = dict(row.values)
        notes: list[str] = []
        for rule in _DERIVATIONS:
            if values.get(rule.target) is not None:
                continue
            inputs = [values.get(name) for name in rule.inputs]
            if any(v is None for v in inputs):
                continue
            result = rule.compute(*inputs)
            if result is None:
                continue
            if rule.target in _POSITIVE and result <= 0:
                continue
            values[rule.target] = _clean(result)
            sign = ""
            if rule.target == "total_equity" and result < 0:
                sign = " (negative: the price-to-book ratio is negative, i.e. negative book equity)"
            notes.append(f"{rule.target} derived: {self.describe(rule.formula)}{rule.caveat}{sign}.")
        causes: dict[str, list[str]] = {}
        for name in (*COMPANY_NUMBERS, *FISCAL_FIELDS):
            if values.get(name) is not None:
                continue
            sources = _sources(name, self.mapped)
            if sources is None:
                continue  # not provided by the file at all; reported once, not per row
            found = [f"{self.column(s)} blank" for s in sorted(sources, key=MAPPABLE_FIELDS.index) if s in row.blank]
            found += [row.problems[s] for s in sorted(sources) if s in row.problems]
            if not found:
                formula = _DERIVED_BY[name].formula if name in _DERIVED_BY else ""
                found.append(f"{self.describe(formula)} undefined" if formula else "unusable")
            causes[name] = found
        return values, notes, causes

    def company_fields(self, ticker: str, first: dict[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
        """Identity fields from the row, then the join; returns (fields, notes, partial reasons)."""
        fields: dict[str, Any] = {k: first.get(k) for k in ("name", "sector", "sub_industry", "cik")}
        notes: list[str] = []
        reasons: list[str] = []
        if self.join is not None:
            joined = self.join.rows.get(ticker)
            if joined is None:
                self.join_stats["unmatched"] += 1
            else:
                self.join_stats["matched"] += 1
                for key, value in joined.items():
                    if fields.get(key) is None:
                        fields[key] = value
            if fields.get("sector") and joined is not None:
                notes.append(f"sector from {self.join.path.name} ('{self.join.spec.columns.get('sector')}').")
            elif not fields.get("sector"):
                inferred = self.join.sector_of_sub_industry.get(fields.get("sub_industry") or "")
                if inferred and self.join.spec.infer_sector:
                    fields["sector"] = inferred
                    self.join_stats["inferred"] += 1
                    notes.append(
                        f"sector inferred: {ticker} is not in {self.join.path.name}; "
                        f"its sub-industry '{fields['sub_industry']}' belongs to {inferred} there."
                    )
        if not fields.get("sector"):
            fields["sector"] = "Unknown"
            self.unknown_sector.append(ticker)
            why = f"not in {self.join.path.name}" if self.join else "no sector column"
            reasons.append(f"sector unknown ({why})")
        if not fields.get("sub_industry"):
            fields["sub_industry"] = "Unknown"
        if not fields.get("name"):
            fields["name"] = ticker
            notes.append("name not in the file; the ticker stands in for it.")
        return fields, notes, reasons

    def company(self, ticker: str, rows: list[_Row]) -> Company:
        derived = [self.derive(row) for row in rows]
        newest = derived[0][0]  # company-level market data comes from the newest year's row

        def first(name: str) -> Any:
            return next((values[name] for values, _, _ in derived if values.get(name) is not None), None)

        identity, notes, partial_reasons = self.company_fields(ticker, {k: first(k) for k in MAPPABLE_FIELDS})
        as_of = first("as_of") or self.as_of
        years: list[FiscalYear] = []
        for values, row_notes, _ in derived:
            label: int = values["fiscal_year"] if self.multi_year else as_of.year
            years.append(
                FiscalYear(
                    fiscal_year=label,
                    period_end=values.get("period_end"),
                    **{name: values.get(name) for name in FISCAL_FIELDS},
                )
            )
            prefix = f"FY{label}: " if self.multi_year and len(rows) > 1 else ""
            notes.extend(prefix + note for note in row_notes)
        if not self.multi_year:
            notes.insert(
                0,
                f"FY{as_of.year} holds the file's trailing figures as of {as_of.isoformat()}, "
                "not a reported fiscal year; its period end is unknown.",
            )
        notes[:0] = list(self.mapping.notes)
        if self.as_of_note and first("as_of") is None:
            notes.append(self.as_of_note)
        source = f"{self.mapping.label}: {self.table.path.name}"
        if not self.multi_year:
            source += f" (trailing figures as of {as_of.isoformat()})"
        if self.join is not None:
            source += f"; sectors from {self.join.path.name}"
        company = Company(
            ticker=ticker,
            name=identity["name"],
            sector=identity["sector"],
            sub_industry=identity["sub_industry"],
            currency=first("currency") or self.mapping.currency,
            fiscal_year_end=first("fiscal_year_end") or "Unknown",
            cik=identity["cik"],
            price=newest.get("price"),
            price_date=first("price_date") or (as_of if newest.get("price") is not None else None),
            diluted_shares=newest.get("diluted_shares"),
            market_cap=newest.get("market_cap"),
            beta=newest.get("beta"),
            source=source,
            as_of=as_of,
            financials=years,
            status="complete",
            notes=notes,
        )
        return self.classify(company, derived, partial_reasons)

    def classify(
        self,
        company: Company,
        derived: list[tuple[dict[str, Any], list[str], dict[str, list[str]]]],
        extra: list[str],
    ) -> Company:
        """Mark the record complete or partial, note what is missing and why, and count the causes."""
        missing = company.missing_fields()
        for name in company.required_fiscal_fields:
            if name not in self.required_seen:
                self.required_seen.append(name)
        causes: dict[str, list[str]] = {cause: [] for cause in extra}  # cause -> fields it leaves missing
        for item in missing:
            year, _, name = item.rpartition(".")
            if item.startswith("financials"):
                if self.multi_year:
                    causes.setdefault(f"only {len(company.financials)} fiscal year(s) in the file", [])
                continue
            index = next((i for i, fy in enumerate(company.financials) if f"FY{fy.fiscal_year}" == year), 0)
            for cause in derived[index][2].get(name, []):
                if name not in causes.setdefault(cause, []):
                    causes[cause].append(name)
        for cause, fields in causes.items():
            self.report.missing[cause] += 1
            known = self.report.missing_fields.setdefault(cause, [])
            known.extend(f for f in fields if f not in known)
        if not missing and not extra:
            self.report.complete += 1
            return company
        self.report.partial += 1
        if not causes:
            self.report.as_complete_as_file += 1
        # Extra causes concern identity fields, named by their first word ("sector unknown ...").
        notes = [*company.notes, "Missing: " + ", ".join(missing + [c.split()[0] for c in extra]) + "."]
        if causes:
            notes.append("In this row: " + "; ".join(causes) + ".")
        return company.model_copy(update={"status": "partial", "notes": notes})

    def finish_report(self) -> None:
        not_provided = [
            name
            for name in (*COMPANY_NUMBERS, *(self.required_seen or REQUIRED_FISCAL_FIELDS))
            if _sources(name, self.mapped) is None
        ]
        if not self.multi_year:
            not_provided.append("a second fiscal year")
        if self.report.records:
            self.report.not_provided = not_provided
        else:
            self.report.not_provided = []
        if self.join is not None:
            matched, unmatched = self.join_stats["matched"], self.join_stats["unmatched"]
            line = f"Sector join with {self.join.path.name}: {matched} of {matched + unmatched} symbols matched"
            if unmatched:
                line += f"; {self.join_stats['inferred']} sectors inferred from the sub-industry"
                line += f"; {len(self.unknown_sector)} unknown"
                if self.unknown_sector:
                    line += f" ({', '.join(sorted(self.unknown_sector))})"
            self.report.notes.append(line + ".")
        if "price_to_book" in self.mapped:
            negative = sum(
                1 for _, cells in self.table.rows if _is_negative(cells, self.table, self.column("price_to_book"))
            )
            if negative:
                self.report.notes.append(
                    f"Negative {self.column('price_to_book')} (negative book equity, kept as a negative "
                    f"total_equity): {negative}."
                )


def _is_negative(cells: list[str], table: _Table, column: str) -> bool:
    raw = cells[table.header.index(column)].strip()
    try:
        return _parse_number(raw) < 0
    except ValueError:
        return False


def _first_error(exc: ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}"


def load_csv(
    path: str | os.PathLike[str],
    mapping: str | os.PathLike[str] | dict[str, Any] | CsvMapping | None = None,
    constituents: str | os.PathLike[str] | None = None,
    as_of: dt.date | None = None,
) -> tuple[dict[str, Company], ImportReport]:
    """Import a fundamentals file: the records by ticker and the import report.

    Raises ``DataError`` (naming file, line and column) for a malformed file or a mapped column missing
    from the header, and ``ConfigError`` for a bad mapping."""
    file = Path(path).expanduser()
    spec = CsvMapping.resolve(mapping)
    table = _read_table(file)
    if mapping is None:
        spec = CsvMapping.identity(table.header)  # only the same-named columns this file has
    join: _Join | None = None
    if spec.join is not None:
        join_path = Path(constituents).expanduser() if constituents is not None else None
        if join_path is None and spec.join.default_file:
            candidate = file.parent / spec.join.default_file
            join_path = candidate if candidate.is_file() else None
        if join_path is not None:
            join = _read_join(join_path, spec.join)
    elif constituents is not None:
        raise ConfigError("a constituents file was given but the CSV mapping has no 'join' section")
    as_of_note = ""
    if as_of is None:
        as_of = dt.date.fromtimestamp(file.stat().st_mtime)
        as_of_note = f"as_of not given: the file's modification date ({as_of.isoformat()}) stands in for it."
    builder = _Builder(table, spec, join, as_of, as_of_note)
    companies = builder.build()
    if spec.join is not None and join is None:
        builder.report.notes.append(f"No {spec.join.default_file or 'join file'} found: sectors unknown.")
    return companies, builder.report


class CsvProvider:
    """Fundamentals imported from a CSV file through a column mapping (see the module docstring).

    ``mapping`` is a preset name (``"sp500"``), a .json/.yaml mapping file, a dict, or None for columns
    named like our fields. ``constituents`` is the file joined for sectors (default: the preset's file
    beside ``path``). ``as_of`` dates the records (default: the file's modification date). The import
    happens here, once; ``report`` says what it produced.
    """

    name = "csv"

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        mapping: str | os.PathLike[str] | dict[str, Any] | CsvMapping | None = None,
        constituents: str | os.PathLike[str] | None = None,
        as_of: dt.date | str | None = None,
    ):
        if path is None:
            raise ConfigError("The 'csv' provider needs a file: set market.csv_file (or --csv-file).")
        if isinstance(as_of, str):
            try:
                as_of = dt.date.fromisoformat(as_of)
            except ValueError:
                raise ConfigError(f"csv provider: as_of must be a date (YYYY-MM-DD), got {as_of!r}") from None
        self.path = Path(path).expanduser()
        self._companies, self.report = load_csv(self.path, mapping, constituents, as_of)
        log.info("%s", self.report.format().splitlines()[0])

    def get(self, ticker: str) -> Company:
        """The imported record for ``ticker`` (BRK-B and brk.b both find BRK.B)."""
        key = normalise_ticker(ticker)
        try:
            return self._companies[key]
        except KeyError:
            raise unknown_ticker(ticker, self.name, self._companies) from None

    def tickers(self) -> list[str]:
        """Every imported ticker, sorted."""
        return sorted(self._companies)

    def companies(self, status: Literal["complete", "partial"] | None = None) -> list[Company]:
        """Imported records sorted by ticker, optionally only the complete or only the partial ones."""
        return [c for _, c in sorted(self._companies.items()) if status is None or c.status == status]
