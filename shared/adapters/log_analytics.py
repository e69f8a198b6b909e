"""The detections on Log Analytics: ``LogsQueryClient.query_workspace`` with a time window.

The queries already filter on ``FlowStartTime`` (``WindowStart``/``WindowEnd`` in the
preamble). The API's ``timespan`` filters on ``TimeGenerated`` - ingestion time, which trails
the flows by up to a processing interval plus about an hour of ingestion delay - so the
timespan runs from the window start to the window end plus ``ingestion_slack`` (two hours by
default); narrower would silently drop late-ingested flows of the window.

Results are never optimistic: a ``LogsQueryPartialResult`` becomes a ``partial`` result (its
rows kept, its error recorded), and an HTTP error or anything unexpected a ``failed`` one; the
service reports both as "could not check", never as clean. Every value in the query text comes
from :mod:`shared.analytics.kql` (escaped literals); nothing is formatted in here.
"""

from __future__ import annotations

import contextlib
import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Final

from azure.core.exceptions import AzureError, HttpResponseError
from azure.monitor.query import LogsQueryClient, LogsQueryPartialResult, LogsQueryStatus

from shared.analytics.query import QueryResult, QueryStatus, Window

if TYPE_CHECKING:
    from azure.core.credentials import TokenCredential

ENGINE_NAME: Final = "log_analytics"
DEFAULT_INGESTION_SLACK: Final = timedelta(hours=2)
DEFAULT_SERVER_TIMEOUT_S: Final = 600  # the API's maximum (10 minutes)


class LogAnalyticsEngine:
    """A :class:`shared.analytics.query.QueryEngine` over one Log Analytics workspace."""

    name = ENGINE_NAME

    def __init__(self, client: LogsQueryClient, workspace_id: str, *,
                 ingestion_slack: timedelta = DEFAULT_INGESTION_SLACK,
                 server_timeout: int = DEFAULT_SERVER_TIMEOUT_S) -> None:
        self.client = client
        self.workspace_id = workspace_id
        self.ingestion_slack = ingestion_slack
        self.server_timeout = server_timeout

    @classmethod
    def connect(cls, credential: TokenCredential, workspace_id: str, *,
                endpoint: str | None = None, **client_options: Any) -> LogAnalyticsEngine:
        """A client with ``DefaultAzureCredential`` (or any token credential). ``endpoint``
        overrides the public-cloud query endpoint (sovereign clouds, tests)."""
        if endpoint is not None:
            client_options["endpoint"] = endpoint
        return cls(LogsQueryClient(credential, **client_options), workspace_id)

    def close(self) -> None:
        self.client.close()

    def run(self, query: str, window: Window) -> QueryResult:
        timespan = (window.start, window.end + self.ingestion_slack)
        try:
            response = self.client.query_workspace(
                self.workspace_id, query, timespan=timespan, server_timeout=self.server_timeout)
        except HttpResponseError as err:
            code = getattr(getattr(err, "error", None), "code", None) or err.status_code
            return QueryResult.failed(f"Log Analytics refused the query ({code}): "
                                      f"{_first_line(err.message)}")
        except AzureError as err:
            return QueryResult.failed(f"Log Analytics unreachable: {_first_line(str(err))}")
        if isinstance(response, LogsQueryPartialResult) or (
                getattr(response, "status", None) == LogsQueryStatus.PARTIAL):
            error = getattr(response, "partial_error", None)
            detail = getattr(error, "message", None) or getattr(error, "code", None) or "partial"
            tables = getattr(response, "partial_data", None) or []
            columns, rows = _table(tables)
            return QueryResult(columns, rows, QueryStatus.PARTIAL,
                               f"partial result: {_first_line(str(detail))}")
        columns, rows = _table(getattr(response, "tables", None) or [])
        return QueryResult(columns, rows)


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""


def _table(tables: list[Any]) -> tuple[tuple[str, ...], tuple[dict[str, Any], ...]]:
    """The primary table as rows of ``{column: value}``: ``dynamic`` parsed from its JSON text,
    null strings as ``""`` (Kusto has none), datetimes as the SDK gives them (aware UTC)."""
    if not tables:
        return (), ()
    table = tables[0]
    names = tuple(str(c) for c in table.columns)
    kinds = tuple(str(t) for t in (getattr(table, "columns_types", None) or ["string"] *
                                   len(names)))
    rows = []
    for raw in table.rows:
        row = {}
        for i, name in enumerate(names):
            value = raw[i]
            kind = kinds[i] if i < len(kinds) else "string"
            if kind == "dynamic" and isinstance(value, str):
                with contextlib.suppress(json.JSONDecodeError):
                    value = json.loads(value)
            elif value is None and kind == "string":
                value = ""
            row[name] = value
        rows.append(row)
    return names, tuple(rows)
