"""An HTTPS fake of the Azure Data Explorer query REST API (v2) that *executes* the incoming KQL.

* ``GET /v1/rest/auth/metadata``: the cloud metadata azure-kusto-data reads before its first
  request (login endpoint, the service resource id that becomes the token scope).
* ``POST /v2/rest/query`` with ``{"db", "csl", "properties"}``: runs ``csl`` through duckdb-kql
  over the NTANetAnalytics / NTAIpDetails rows seeded by the test (stored under the table names
  the test chooses, as an ADX database fed by Log Analytics export may name them) and answers the
  documented v2 frame sequence: ``DataSetHeader``, ``DataTable`` frames of kind QueryProperties,
  PrimaryResult and QueryCompletionInformation, then ``DataSetCompletion``.
* ``GET /msi/token``: the App Service managed identity protocol, so ``DefaultAzureCredential``
  works with ``IDENTITY_ENDPOINT=<url>/msi/token`` and ``IDENTITY_HEADER``.

What production clients meet, on demand (:attr:`FakeAdx.partial`, :attr:`FakeAdx.fail_with`,
:attr:`FakeAdx.throttle`, :attr:`FakeAdx.malformed`):

* ``partial="limits"``: the rows, then an inline ``OneApiErrors`` row (``LimitsExceeded``), a
  QueryCompletionInformation error row ``E_QUERY_RESULT_SET_TOO_LARGE`` and ``HasErrors`` - what
  the service sends when a query outgrows its result limits after it started streaming;
* ``partial="has_errors"`` / ``"cancelled"``: only the ``DataSetCompletion`` frame says so;
* ``partial="completion_info"``: only a QueryCompletionInformation row of level Error;
* ``partial="truncation_warning"``: a QueryCompletionInformation *warning* about truncation;
* ``fail_with=(status, code)``: an HTTP error with a OneApiError body;
* ``throttle=n``: the next ``n`` queries answer 429 with ``Retry-After: 0``;
* ``malformed``: ``"not_json"``, ``"object"`` (a JSON object, not frames), ``"no_completion"``,
  ``"no_header"``, ``"truncated"`` (the body breaks off) or ``"bad_row"`` (a row of the wrong
  width);
* a query duckdb-kql cannot run answers 400 ``General_BadRequest`` with a semantic-error message.

Every query needs ``Authorization: Bearer ...``; queries are recorded in :attr:`requests`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb_kql

from shared.analytics.schema import DUCKDB_TYPES, TABLES
from tests.fakes.tls import LoopbackTlsServer, Reply, TlsFake, json_reply

SERVICE_RESOURCE_ID = "https://kusto.kusto.windows.net"
TOKEN = "fake-adx-token"
_DUCK_TO_KUSTO = {"VARCHAR": "string", "BIGINT": "long", "HUGEINT": "long", "INTEGER": "int",
                  "DOUBLE": "real", "BOOLEAN": "bool", "TIMESTAMP": "datetime",
                  "TIMESTAMP WITH TIME ZONE": "datetime", "JSON": "dynamic"}
_COMPLETION_COLUMNS = (("Timestamp", "datetime"), ("ClientRequestId", "string"),
                       ("ActivityId", "guid"), ("SubActivityId", "guid"),
                       ("ParentActivityId", "guid"), ("Level", "int"), ("LevelName", "string"),
                       ("StatusCode", "int"), ("StatusCodeName", "string"), ("EventType", "int"),
                       ("EventTypeName", "string"), ("Payload", "string"))
ACTIVITY = "5935a050-e466-48a0-991d-0ec26bd61c7e"


@dataclass(frozen=True, slots=True)
class RecordedQuery:
    database: str
    csl: str
    properties: dict[str, Any]
    authorization: str
    headers: dict[str, str]


def one_api_error(code: str, message: str, *, kind: str = "Kusto.Data.Exceptions.KustoException",
                  permanent: bool = True) -> dict[str, Any]:
    return {"error": {"code": code, "message": "Request is invalid and cannot be executed.",
                      "@type": kind, "@message": message,
                      "@context": {"timestamp": "2026-11-02T10:00:00.0000000Z",
                                   "activityId": ACTIVITY},
                      "@permanent": permanent}}


class FakeAdx(TlsFake):
    """Seed with rows per NTA table (dicts keyed by column name; missing columns get Kusto's
    empty values) and, optionally, the names the database keeps them under; use as a context
    manager; point ``AdxEngine.connect(cred, fake.url, fake.database, ca_bundle=fake.ca_path)``
    at it."""

    def __init__(self, tables: Mapping[str, Sequence[Mapping[str, Any]]], *,
                 database: str = "TrafficAnalytics",
                 table_names: Mapping[str, str] | None = None) -> None:
        self.database = database
        self.table_names = {name: (table_names or {}).get(name, name) for name in TABLES}
        self._con = duckdb_kql.connect()
        self._lock = threading.Lock()
        for table, columns in TABLES.items():
            stored = self.table_names[table].replace('"', '""')
            body = ", ".join(f'"{c.name}" {DUCKDB_TYPES[c.kusto_type]}' for c in columns)
            self._con.execute(f'CREATE TABLE "{stored}" ({body})')
            rows = [[_naive_utc(row.get(c.name, _empty(c.kusto_type))) for c in columns]
                    for row in tables.get(table, ())]
            if rows:
                marks = ", ".join("?" for _ in columns)
                self._con.executemany(f'INSERT INTO "{stored}" VALUES ({marks})', rows)
        self.requests: list[RecordedQuery] = []
        self.token_requests: list[dict[str, str]] = []
        self.metadata_requests = 0
        self.partial: str | None = None
        self.fail_with: tuple[int, str] | None = None
        self.throttle = 0
        self.malformed: str | None = None
        self._tls = LoopbackTlsServer(self._wire, name="fake-adx", methods=("GET", "POST"),
                                      timeout=None)

    def reset(self) -> None:
        self.partial = self.fail_with = self.malformed = None
        self.throttle = 0
        self.requests.clear()

    def stop(self) -> None:
        super().stop()
        self._con.close()

    # ------------------------------------------------------------------------------------------

    def _wire(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        parts = urlsplit(target)
        if method == "GET" and parts.path == "/v1/rest/auth/metadata":
            self.metadata_requests += 1
            return json_reply(200, _metadata())
        if method == "GET" and parts.path == "/msi/token":
            return self._token({k: v[0] for k, v in parse_qs(parts.query).items()}, headers)
        if method == "POST" and parts.path == "/v2/rest/query":
            return self._query(headers, raw)
        return json_reply(404, one_api_error("NotFound", f"no such endpoint {parts.path}"))

    def _token(self, query: dict[str, str], headers: Mapping[str, str]) -> Reply:
        if not headers.get("x-identity-header"):
            return json_reply(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER missing"})
        self.token_requests.append(query)
        return json_reply(200, {"access_token": TOKEN,
                                "expires_on": str(int(time.time()) + 3600),
                                "resource": query.get("resource", ""), "token_type": "Bearer"})

    def _query(self, headers: Mapping[str, str], raw: bytes) -> Reply:
        auth = headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            return json_reply(401, one_api_error("Unauthorized", "no bearer token"))
        try:
            request = json.loads(raw)
        except json.JSONDecodeError:
            return json_reply(400, one_api_error("General_BadRequest", "body is not JSON"))
        properties = request.get("properties") or {}
        if isinstance(properties, str):  # the SDK sends the properties as JSON text
            properties = json.loads(properties)
        self.requests.append(RecordedQuery(str(request.get("db", "")),
                                           str(request.get("csl", "")), properties, auth,
                                           dict(headers)))
        injected = self._injected()
        if injected is not None:
            return injected
        if request.get("db") != self.database:
            return json_reply(400, one_api_error(
                "General_BadRequest", f"Semantic error: database '{request.get('db')}' does "
                "not exist or you lack access"))
        with self._lock:
            try:
                columns, rows = self._execute(str(request.get("csl", "")))
            except Exception as err:
                return json_reply(400, one_api_error(
                    "General_BadRequest", f"Semantic error: {type(err).__name__}: {err}",
                    kind="Kusto.Data.Exceptions.SemanticException"))
        return self._frames(columns, rows)

    def _injected(self) -> Reply | None:
        if self.throttle > 0:
            self.throttle -= 1
            return json_reply(429, one_api_error("TooManyRequests", "throttled: too many "
                                                 "concurrent requests", permanent=False),
                              {"Retry-After": "0"})
        if self.fail_with is not None:
            status, code = self.fail_with
            return json_reply(status, one_api_error(code, f"injected {code}"))
        return None

    def _execute(self, csl: str) -> tuple[list[dict[str, str]], list[list[Any]]]:
        relation = duckdb_kql.query(self._con, csl)
        names = list(relation.columns)
        kinds = [_kusto_type(str(t)) for t in relation.types]
        rows = [[_wire(v, k) for v, k in zip(row, kinds, strict=True)]
                for row in relation.fetchall()]
        return ([{"ColumnName": n, "ColumnType": k} for n, k in zip(names, kinds, strict=True)],
                rows)

    def _frames(self, columns: list[dict[str, str]], rows: list[Any]) -> Reply:
        partial, malformed = self.partial, self.malformed
        info = [_completion_row(4, "Info", 0, "S_OK (0)", 4, "QueryInfo", {"Count": 1})]
        primary_rows: list[Any] = list(rows)
        completion: dict[str, Any] = {"FrameType": "DataSetCompletion", "HasErrors": False,
                                      "Cancelled": False}
        limits = one_api_error(
            "LimitsExceeded", "Query execution has exceeded the allowed limits (80DA0003): "
            "E_QUERY_RESULT_SET_TOO_LARGE.", permanent=False,
            kind="Kusto.Data.Exceptions.KustoServicePartialQueryFailureLimitsExceededException")
        if partial == "limits":
            primary_rows.append({"OneApiErrors": [limits]})
        if partial in ("limits", "completion_info"):
            info.append(_completion_row(
                2, "Error", -2133196797,
                "Query result set too large (E_QUERY_RESULT_SET_TOO_LARGE). (-2133196797)", 1,
                "QueryLimitsExceeded", {"Count": 1, "Text": "Query result set has exceeded the "
                                        "internal record count limit"}))
        if partial == "truncation_warning":
            info.append(_completion_row(3, "Warning", 0, "S_OK (0)", 1, "QueryLimitsExceeded",
                                        {"Text": "Query result set was truncated"}))
        if partial in ("limits", "has_errors"):
            completion.update(HasErrors=True, OneApiErrors=[limits])
        if partial == "cancelled":
            completion.update(HasErrors=True, Cancelled=True, OneApiErrors=[one_api_error(
                "Cancelled", "the query was cancelled", permanent=False)])
        if malformed == "bad_row" and columns:
            primary_rows.append([None] * (len(columns) + 1))
        frames: list[Any] = [
            {"FrameType": "DataSetHeader", "IsProgressive": False, "Version": "v2.0",
             "IsFragmented": False, "ErrorReportingPlacement": "InData"},
            {"FrameType": "DataTable", "TableId": 0, "TableKind": "QueryProperties",
             "TableName": "@ExtendedProperties",
             "Columns": [{"ColumnName": "TableId", "ColumnType": "int"},
                         {"ColumnName": "Key", "ColumnType": "string"},
                         {"ColumnName": "Value", "ColumnType": "dynamic"}],
             "Rows": [[1, "Visualization", {"Visualization": None}]]},
            {"FrameType": "DataTable", "TableId": 1, "TableKind": "PrimaryResult",
             "TableName": "PrimaryResult", "Columns": columns, "Rows": primary_rows},
            {"FrameType": "DataTable", "TableId": 2, "TableKind": "QueryCompletionInformation",
             "TableName": "QueryCompletionInformation",
             "Columns": [{"ColumnName": n, "ColumnType": k} for n, k in _COMPLETION_COLUMNS],
             "Rows": info},
            completion,
        ]
        if malformed == "no_completion":
            frames.pop()
        if malformed == "no_header":
            frames.pop(0)
        if malformed == "object":
            return json_reply(200, {"Tables": []})
        body = json.dumps(frames).encode()
        if malformed == "not_json":
            body = b"<html>502 Bad Gateway</html>"
        if malformed == "truncated":
            body = body[: len(body) // 2]
        return 200, [("Content-Type", "application/json; charset=utf-8"),
                     ("x-ms-activity-id", ACTIVITY)], body


def _metadata() -> dict[str, Any]:
    return {"AzureAD": {"LoginEndpoint": "https://login.microsoftonline.com",
                        "LoginMfaRequired": False,
                        "KustoClientAppId": "db662dc1-0cfe-4e1c-a843-19a68e65be58",
                        "KustoClientRedirectUri": "https://microsoft/kustoclient",
                        "KustoServiceResourceId": SERVICE_RESOURCE_ID,
                        "FirstPartyAuthorityUrl": "https://login.microsoftonline.com/"
                                                  "f8cdef31-a31e-4b4a-93e4-5f571e91255a"},
            "dSTS": {}}


def _completion_row(level: int, level_name: str, status: int, status_name: str, event: int,
                    event_name: str, payload: dict[str, Any]) -> list[Any]:
    return ["2026-11-02T10:00:00.1234567Z", "zts.analytics;test", ACTIVITY, ACTIVITY, ACTIVITY,
            level, level_name, status, status_name, event, event_name, json.dumps(payload)]


def _kusto_type(duck: str) -> str:
    if duck in _DUCK_TO_KUSTO:
        return _DUCK_TO_KUSTO[duck]
    if duck.endswith("[]") or duck.startswith(("STRUCT", "MAP")):
        return "dynamic"
    if duck.startswith("DECIMAL"):
        return "real"
    return "string"


def _naive_utc(value: Any) -> Any:
    """DuckDB TIMESTAMP values: UTC without an offset (a naive value is taken as UTC)."""
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def _empty(kusto_type: str) -> Any:
    return {"string": "", "long": 0, "int": 0, "bool": False, "real": 0.0}.get(kusto_type)


def _wire(value: Any, kind: str) -> Any:
    """A value as the v2 protocol writes it: datetimes ISO-8601 with 7 fractional digits (Kusto
    ticks), dynamic values as JSON (not JSON text)."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        utc = aware.astimezone(UTC)
        return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond:06d}0Z"
    if isinstance(value, Decimal):
        return float(value)
    if kind == "dynamic" and isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value
