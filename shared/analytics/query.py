"""The port between the analytics service and the engines that run the ``.kql`` files.

An engine (local DuckDB, Log Analytics, Azure Data Explorer) takes the full query text - the
escaped parameter preamble and the detection body - and returns a :class:`QueryResult`. A
result is ``ok``, ``partial`` (the engine returned rows *and* an error, e.g. a Log Analytics
partial result) or ``failed``; only ``ok`` results may ever be reported as "checked and clean".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class QueryStatus(StrEnum):
    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"


Row = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class QueryResult:
    """Rows as ``{column: value}`` with aware UTC datetimes, Python ints, parsed dynamic values
    and ``""`` for empty strings."""

    columns: tuple[str, ...] = ()
    rows: tuple[Row, ...] = ()
    status: QueryStatus = QueryStatus.OK
    error: str | None = None

    @classmethod
    def failed(cls, error: str) -> QueryResult:
        return cls(status=QueryStatus.FAILED, error=error)


@dataclass(frozen=True, slots=True)
class Window:
    """The time range analyzed: ``start <= FlowStartTime < end``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("window bounds must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"empty window: {self.start.isoformat()} .. {self.end.isoformat()}")


class QueryEngine(Protocol):
    """Runs one KQL query. ``window`` is given so that engines which filter by ingestion time
    (Log Analytics' ``timespan``) can widen it; the query itself filters on FlowStartTime."""

    name: str

    def run(self, query: str, window: Window) -> QueryResult: ...
