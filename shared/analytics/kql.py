"""KQL literals and the parameter preamble zts puts in front of every detection query.

Every value that reaches a query (countries, IP ranges, subscription ids, time bounds) goes
through this module, never through string formatting at the call site: Log Analytics' query API
has no bound parameters, so a quote in a configured value would otherwise change the query.

String literals are double-quoted with ``\\`` and ``"`` escaped. Control characters are refused
rather than escaped: no legitimate value zts passes contains one, Kusto's escape set is narrow,
and refusing is safer than guessing how every engine (Log Analytics, ADX, duckdb-kql) decodes it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")
COLUMN_TYPES: Final = frozenset({"string", "long"})
LONG_MIN, LONG_MAX = -(2**63), 2**63 - 1


class KqlValueError(ValueError):
    """A value that cannot be written into a query safely."""


def string_literal(value: str) -> str:
    """A Kusto string literal for ``value``; refuses control characters (see module doc)."""
    if not isinstance(value, str):
        raise KqlValueError(f"expected a string, got {type(value).__name__}")
    if _CONTROL.search(value):
        raise KqlValueError(f"control characters are not allowed in query values: {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def long_literal(value: int) -> str:
    """A Kusto long literal (plain decimal); booleans and out-of-range integers are refused."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise KqlValueError(f"expected an integer, got {type(value).__name__}")
    if not LONG_MIN <= value <= LONG_MAX:
        raise KqlValueError(f"{value} does not fit in a Kusto long")
    return str(value)  # integer literals are longs in Kusto


def datetime_literal(value: datetime) -> str:
    """``datetime(YYYY-MM-DDTHH:MM:SS.fffffffZ)`` for an aware datetime (converted to UTC)."""
    if value.tzinfo is None:
        raise KqlValueError("datetimes put into queries must be timezone-aware")
    utc = value.astimezone(UTC)
    return f"datetime({utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}0Z)"


def identifier(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise KqlValueError(f"not a KQL identifier: {name!r}")
    return name


def quoted_name(name: str) -> str:
    """``['name']``: any entity name (a table with spaces, dashes, dots ...) as a quoted KQL
    identifier, with ``\\`` and ``'`` escaped; empty names and control characters are refused."""
    if not isinstance(name, str) or not name:
        raise KqlValueError(f"expected a non-empty name, got {name!r}")
    if _CONTROL.search(name):
        raise KqlValueError(f"control characters are not allowed in names: {name!r}")
    return "['" + name.replace("\\", "\\\\").replace("'", "\\'") + "']"


@dataclass(frozen=True, slots=True)
class TableValue:
    """A small table passed into a query as ``datatable(...)[...]``."""

    columns: tuple[tuple[str, str], ...]  # (name, "string" | "long")
    rows: tuple[tuple[str | int, ...], ...] = ()

    def literal(self) -> str:
        header = ", ".join(f"{identifier(name)}:{_column_type(kind)}"
                           for name, kind in self.columns)
        cells = []
        for row in self.rows:
            if len(row) != len(self.columns):
                raise KqlValueError(f"row {row!r} does not have {len(self.columns)} values")
            for (_, kind), value in zip(self.columns, row, strict=True):
                if kind == "string":
                    cells.append(string_literal(str(value)) if isinstance(value, str)
                                 else _refuse(value, "string"))
                else:
                    cells.append(long_literal(value) if isinstance(value, int)
                                 else _refuse(value, "long"))
        return f"datatable({header}) [{', '.join(cells)}]"


def _column_type(kind: str) -> str:
    if kind not in COLUMN_TYPES:
        raise KqlValueError(f"unsupported column type {kind!r}")
    return kind


def _refuse(value: object, kind: str) -> str:
    raise KqlValueError(f"expected a {kind} value, got {value!r}")


ParamValue = datetime | TableValue | int | str


def literal(value: ParamValue) -> str:
    """The literal for any supported parameter value."""
    if isinstance(value, datetime):
        return datetime_literal(value)
    if isinstance(value, TableValue):
        return value.literal()
    if isinstance(value, bool):
        raise KqlValueError("booleans are not supported as query parameters")
    if isinstance(value, int):
        return long_literal(value)
    return string_literal(value)


#: The window as declared query parameters (bound at execution by an engine that can, such as
#: the local DuckDB engine; Log Analytics' query API has no bound parameters).
WINDOW_DECLARATION: Final = "declare query_parameters(WindowStart:datetime, WindowEnd:datetime);\n"


def preamble(params: Sequence[tuple[str, ParamValue]]) -> str:
    """``let Name = <literal>;`` lines, one per parameter, in the order given."""
    return "".join(f"let {identifier(name)} = {literal(value)};\n" for name, value in params)
