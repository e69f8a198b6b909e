"""The detections on Azure Data Explorer (azure-kusto-data), for estates that outgrow Log Analytics.

The same rendered ``.kql`` text runs here as on Log Analytics and locally. Traffic Analytics
writes NTANetAnalytics / NTAIpDetails into Log Analytics; they reach an ADX database through Log
Analytics data export (Event Hubs / storage -> ADX ingestion) or continuous export, under their
own names or under names of the operator's choosing: when a name differs, the engine prepends
``let NTANetAnalytics = ['<name>'];`` (quoted by :func:`shared.analytics.kql.quoted_name`) so
the queries read the right table without a change.

Time window: the queries filter ``FlowStartTime`` on ``WindowStart``/``WindowEnd`` from the
escaped preamble. ADX has no separate ingestion-time ``timespan`` (Log Analytics' API filters
``TimeGenerated`` as well); the window reaches this engine only for its messages.

Authentication is a token credential (managed identity in Azure, ``DefaultAzureCredential``
locally) through ``KustoConnectionStringBuilder.with_azure_token_credential``: no secret. The
identity needs the **Viewer** role on the database (granted by the ADX administrator).

Results are never optimistic. The query goes through ``execute_streaming_query`` and this module
reads the v2 frames itself (``DataSetHeader``, ``DataTable`` ..., ``DataSetCompletion``), because
the SDK's buffered ``execute_query`` drops the ``DataSetCompletion`` frame and discards every row
when one row is an error object. A result is ``partial`` (rows kept, error recorded) when:

* the ``DataSetCompletion`` frame says ``HasErrors`` or ``Cancelled`` (its ``OneApiErrors`` are
  the reason);
* the primary table carries an inline ``OneApiErrors`` row (the service reports a failure that
  happened after it started streaming, such as ``LimitsExceeded``); the rows before it are kept;
* the ``QueryCompletionInformation`` table has a row of level Error or Critical, or a warning
  that says the result is incomplete (``E_QUERY_RESULT_SET_TOO_LARGE``, truncation, limits).

It is ``failed`` on an HTTP error (4xx/5xx with the service's error code), throttling (429, after
``throttle_retries`` retries honouring ``Retry-After``), an unreachable cluster (TLS included),
or a response that is not the documented frame sequence (no header, no primary table, no
completion frame, unreadable JSON). The request sets ``deferpartialqueryfailures=false`` so the
service never suppresses partial failures. Nothing is formatted into the query text here except
the table names, through :func:`quoted_name`.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from azure.kusto.data import ClientRequestProperties, KustoClient, KustoConnectionStringBuilder
from azure.kusto.data.client import HTTPAdapterWithSocketOptions
from azure.kusto.data.exceptions import (
    KustoApiError,
    KustoError,
    KustoMultiApiError,
    KustoNetworkError,
    KustoServiceError,
    KustoThrottlingError,
)
from azure.kusto.data.streaming_response import FrameType
from requests import RequestException, Session
from urllib3.connection import HTTPConnection
from urllib3.exceptions import HTTPError as Urllib3Error

from shared.analytics.kql import quoted_name
from shared.analytics.query import QueryResult, QueryStatus, Window

if TYPE_CHECKING:
    from azure.core.credentials import AccessToken, TokenCredential

ENGINE_NAME: Final = "adx"
DEFAULT_SERVER_TIMEOUT: Final = timedelta(minutes=10)
DEFAULT_THROTTLE_RETRIES: Final = 2
MAX_RETRY_AFTER_S: Final = 30.0
#: The tables the ``.kql`` files read; an ADX database may hold them under other names.
DEFAULT_TABLES: Final = {"NTANetAnalytics": "NTANetAnalytics", "NTAIpDetails": "NTAIpDetails"}
#: QueryCompletionInformation levels (Kusto's trace levels): 1 Critical, 2 Error, 3 Warning.
_ERROR_LEVEL: Final = 2
_WARNING_LEVEL: Final = 3
_INCOMPLETE_MARKERS: Final = re.compile(
    r"E_QUERY_RESULT_SET_TOO_LARGE|TRUNCAT|LIMITSEXCEEDED|E_RUNAWAY_QUERY|PARTIAL|CANCEL",
    re.IGNORECASE)
_FRACTION: Final = re.compile(r"(\.\d{6})\d+")


class MalformedResponse(Exception):
    """The response is not the documented v2 frame sequence."""


@dataclass
class _Frames:
    """What one response said, read frame by frame."""

    header: bool = False
    columns: list[tuple[str, str]] | None = None
    rows: list[list[Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    completed: bool = False


class AdxEngine:
    """A :class:`shared.analytics.query.QueryEngine` over one Azure Data Explorer database."""

    name = ENGINE_NAME

    def __init__(self, client: KustoClient, database: str, *,
                 tables: Mapping[str, str] | None = None,
                 server_timeout: timedelta = DEFAULT_SERVER_TIMEOUT,
                 throttle_retries: int = DEFAULT_THROTTLE_RETRIES,
                 sleep: Any = time.sleep) -> None:
        if not database:
            raise ValueError("an ADX database name is required")
        unknown = set(tables or {}) - set(DEFAULT_TABLES)
        if unknown:
            raise ValueError(f"unknown NTA table(s) {sorted(unknown)}; expected "
                             f"{sorted(DEFAULT_TABLES)}")
        self.client = client
        self.database = database
        self.tables = {**DEFAULT_TABLES, **{k: v for k, v in (tables or {}).items() if v}}
        self.server_timeout = server_timeout
        self.throttle_retries = max(0, throttle_retries)
        self._sleep = sleep
        # table names are quoted identifiers, never formatted: a let per renamed table
        self._aliases = "".join(f"let {alias} = {quoted_name(actual)};\n"
                                for alias, actual in self.tables.items() if actual != alias)

    @classmethod
    def connect(cls, credential: TokenCredential, cluster_uri: str, database: str, *,
                ca_bundle: str | None = None, tables: Mapping[str, str] | None = None,
                **options: Any) -> AdxEngine:
        """A client that authenticates with ``credential`` (managed identity,
        ``DefaultAzureCredential``; lent, never closed here). ``ca_bundle`` is a CA file to
        trust instead of the default bundle (a private endpoint's CA, tests), like
        ``connection_verify`` of the other clients; without it requests' own rules apply
        (``REQUESTS_CA_BUNDLE``, else certifi)."""
        if not cluster_uri.lower().startswith("https://"):
            raise ValueError(f"the ADX cluster URI must be https://..., got {cluster_uri!r}")
        kcsb = KustoConnectionStringBuilder.with_azure_token_credential(
            cluster_uri.rstrip("/"), credential=_Borrowed(credential))
        client = KustoClient(kcsb)
        if ca_bundle:
            _trust(client, ca_bundle)
        return cls(client, database, tables=tables, **options)

    def close(self) -> None:
        self.client.close()  # type: ignore[no-untyped-call]  # azure-kusto-data is untyped here

    def __enter__(self) -> AdxEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------

    def run(self, query: str, window: Window) -> QueryResult:
        del window  # the query filters FlowStartTime itself; ADX has no ingestion timespan
        text = self._aliases + query
        attempt = 0
        while True:
            try:
                return self._execute(text)
            except KustoThrottlingError as err:
                if attempt >= self.throttle_retries:
                    return QueryResult.failed(
                        f"ADX throttled the query (HTTP 429) {attempt + 1} time(s); giving up")
                attempt += 1
                self._sleep(_retry_after(err, attempt))
            except (KustoError, MalformedResponse, ValueError, KeyError, TypeError,
                    RequestException, Urllib3Error) as err:
                return QueryResult.failed(_failure(err))

    def _properties(self) -> ClientRequestProperties:
        properties = ClientRequestProperties()  # type: ignore[no-untyped-call]
        properties.client_request_id = f"zts.analytics;{uuid.uuid4()}"
        properties.application = "zts"
        properties.set_option(ClientRequestProperties.request_timeout_option_name,
                              self.server_timeout)
        properties.set_option(
            ClientRequestProperties.results_defer_partial_query_failures_option_name, False)
        return properties

    def _execute(self, text: str) -> QueryResult:
        response = self.client.execute_streaming_query(
            self.database, text, self.server_timeout, self._properties())
        frames = _read_frames(response.streamed_data)
        if not frames.header:
            raise MalformedResponse("no DataSetHeader frame")
        if frames.columns is None:
            if frames.problems:
                return QueryResult.failed("ADX query failed: " + "; ".join(frames.problems))
            raise MalformedResponse("no PrimaryResult table")
        if not frames.completed and not frames.problems:
            raise MalformedResponse("the response ended without a DataSetCompletion frame")
        names = tuple(name for name, _ in frames.columns)
        rows = tuple(_row(frames.columns, raw) for raw in frames.rows)
        if frames.problems:
            return QueryResult(names, rows, QueryStatus.PARTIAL,
                               "partial result: " + "; ".join(frames.problems))
        return QueryResult(names, rows)


class _Borrowed:
    """The caller's credential, lent to the SDK: closing the Kusto client closes its
    credential, and the runtime shares one credential between all its clients."""

    def __init__(self, credential: TokenCredential) -> None:
        self._credential = credential

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return self._credential.get_token(*scopes, **kwargs)

    def close(self) -> None:
        """Not ours to close."""


class _CaAdapter(HTTPAdapterWithSocketOptions):
    """The SDK's connection adapter with an extra CA file *pinned*: requests lets
    ``REQUESTS_CA_BUNDLE`` override a session's ``verify``, so the file is given to every send
    instead (as azure-core's ``connection_verify`` does). Verification is never turned off."""

    def __init__(self, ca_bundle: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.ca_bundle = ca_bundle

    def send(self, request: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs["verify"] = self.ca_bundle
        return super().send(request, **kwargs)


def _trust(client: KustoClient, ca_bundle: str) -> None:
    """Trust ``ca_bundle`` for this client's requests (the cloud metadata and the queries). The
    SDK has no TLS option; its requests session is the one place to say it."""
    session = getattr(client, "_session", None)
    if not isinstance(session, Session):  # pragma: no cover - a future SDK without it
        raise ValueError("this azure-kusto-data version does not accept a CA bundle; set "
                         "REQUESTS_CA_BUNDLE instead")
    adapter = _CaAdapter(ca_bundle, socket_options=(HTTPConnection.default_socket_options or [])
                         + KustoClient.compose_socket_options())
    session.mount("https://", adapter)


def _read_frames(stream: Iterable[dict[str, Any]]) -> _Frames:
    """Walk the v2 frames. An inline error row stops the SDK's reader: what came before it is
    kept and the error becomes a problem."""
    seen = _Frames()
    frames: Iterator[dict[str, Any]] = iter(stream)
    try:
        for frame in frames:
            kind = frame.get("FrameType") if isinstance(frame, dict) else None
            if kind == FrameType.DataSetHeader:
                seen.header = True
            elif kind == FrameType.DataTable:
                _read_table(frame, seen)
            elif kind == FrameType.DataSetCompletion:
                seen.completed = True
                if frame.get("HasErrors") or frame.get("Cancelled"):
                    reasons = _api_errors(frame.get("OneApiErrors") or [])
                    what = ("was cancelled" if frame.get("Cancelled")
                            else "completed with errors")
                    seen.problems.append(f"the query {what}"
                                         + (f": {', '.join(reasons)}" if reasons else ""))
            else:
                raise MalformedResponse(f"unexpected frame {kind!r}")
    except KustoMultiApiError as err:
        reasons = [f"{e.code}: {_first_line(e.description or e.message)}"
                   for e in err.get_api_errors()] or [_first_line(err.message_text)]
        seen.problems.append("the service reported an error in the data: " + ", ".join(reasons))
    return seen


def _read_table(frame: dict[str, Any], seen: _Frames) -> None:
    table_kind = frame.get("TableKind")
    raw_columns = frame.get("Columns")
    if not isinstance(raw_columns, list):
        raise MalformedResponse(f"{table_kind} table without columns")
    columns = [(str(c["ColumnName"]), str(c.get("ColumnType") or c.get("DataType") or ""))
               for c in raw_columns]
    rows = frame.get("Rows")
    if rows is None:
        raise MalformedResponse(f"{table_kind} table without rows")
    if table_kind == "PrimaryResult" and seen.columns is None:
        seen.columns = columns
        for raw in rows:  # a lazy iterator: it raises on an inline error row
            if not isinstance(raw, list) or len(raw) != len(columns):
                raise MalformedResponse(f"a PrimaryResult row does not have {len(columns)} "
                                        "values")
            seen.rows.append(raw)
    elif table_kind == "QueryCompletionInformation":
        seen.problems.extend(_completion_problems(columns, rows))
    else:
        for _ in rows:  # another table (QueryProperties, a second result): read past it
            pass


def _completion_problems(columns: list[tuple[str, str]], rows: Iterable[Any]) -> list[str]:
    index = {name: i for i, (name, _) in enumerate(columns)}
    problems = []
    for row in rows:
        if not isinstance(row, list):
            continue

        def cell(name: str, row: list[Any] = row) -> Any:
            i = index.get(name)
            return row[i] if i is not None and i < len(row) else None

        level = cell("Level")
        text = " ".join(str(cell(n) or "") for n in ("StatusCodeName", "EventTypeName",
                                                     "Payload"))
        if not isinstance(level, int):
            continue
        if level <= _ERROR_LEVEL or (level == _WARNING_LEVEL
                                     and _INCOMPLETE_MARKERS.search(text)):
            detail = _payload_text(cell("Payload"))
            problems.append(
                f"{cell('LevelName') or f'level {level}'} {cell('EventTypeName') or ''}: "
                f"{cell('StatusCodeName') or ''}" + (f" - {detail}" if detail else ""))
    return problems


def _payload_text(payload: Any) -> str:
    """The ``Text`` of a QueryCompletionInformation payload (JSON text), if any."""
    if isinstance(payload, str):
        with contextlib.suppress(json.JSONDecodeError):
            payload = json.loads(payload)
    text = payload.get("Text") if isinstance(payload, dict) else None
    return _first_line(str(text)) if text else ""


def _api_errors(errors: Iterable[Any]) -> list[str]:
    found = []
    for item in errors:
        error = item.get("error") if isinstance(item, dict) else None
        if isinstance(error, dict):
            message = error.get("@message") or error.get("message") or ""
            found.append(f"{error.get('code') or 'error'}: {_first_line(str(message))}")
    return found


def _row(columns: list[tuple[str, str]], raw: list[Any]) -> dict[str, Any]:
    return {name: _value(kind.lower(), value) for (name, kind), value in zip(columns, raw,
                                                                             strict=True)}


def _value(kind: str, value: Any) -> Any:
    """Kusto JSON values as the service layer expects them: aware UTC datetimes, parsed
    dynamic values, ``""`` for null strings."""
    converted = value
    if value is None:
        converted = "" if kind == "string" else None
    elif kind == "datetime" and isinstance(value, str):
        converted = _datetime(value)
    elif kind == "dynamic" and isinstance(value, str):
        with contextlib.suppress(json.JSONDecodeError):
            converted = json.loads(value)
    elif kind in ("long", "int") and isinstance(value, float) and value.is_integer():
        converted = int(value)
    elif kind == "real" and isinstance(value, int) and not isinstance(value, bool):
        converted = float(value)
    return converted


def _datetime(text: str) -> datetime:
    """ISO-8601 with up to 7 fractional digits (Kusto's ticks) -> aware UTC datetime."""
    parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", text.replace("Z", "+00:00")))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _failure(err: Exception) -> str:
    """What went wrong, for the run's stats: the service's code and message when it sent one."""
    if isinstance(err, KustoNetworkError):
        return f"ADX unreachable: {_first_line(str(err.__cause__ or err))}"
    if isinstance(err, KustoApiError):
        api = err.get_api_error()
        return (f"ADX refused the query ({_status(err)} {api.code or 'error'}): "
                f"{_first_line(api.description or api.message or str(err))}")
    if isinstance(err, KustoServiceError):
        return f"ADX refused the query ({_status(err)}): {_first_line(err.message_text)}"
    if isinstance(err, MalformedResponse):
        return f"ADX response unreadable: {err}"
    # the SDK's frame reader raises the others on JSON that is not the frame sequence,
    # requests/urllib3 when the stream breaks off
    return f"ADX response unreadable: {type(err).__name__}: {_first_line(str(err))}"


def _retry_after(err: KustoThrottlingError, attempt: int) -> float:
    # KustoThrottlingError(message, response): the response is its second argument
    response = next((a for a in err.args if hasattr(a, "headers")), None)
    headers = getattr(response, "headers", None) or {}
    with contextlib.suppress(TypeError, ValueError):
        return min(max(float(headers.get("Retry-After", "")), 0.0), MAX_RETRY_AFTER_S)
    return min(2.0 ** attempt, MAX_RETRY_AFTER_S)


def _status(err: KustoServiceError) -> str:
    response = err.get_raw_http_response()
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    return f"HTTP {status}" if status else "HTTP error"


def _first_line(text: str | None) -> str:
    return (text or "").strip().splitlines()[0] if (text or "").strip() else ""
