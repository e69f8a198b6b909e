"""An HTTPS fake of the Log Analytics query API that *executes* the incoming KQL.

``POST /v1/workspaces/{workspace}/query`` with ``{"query", "timespan"}`` runs the query through
duckdb-kql over NTANetAnalytics / NTAIpDetails tables seeded by the test, restricted - as the
real service restricts them - to rows whose ``TimeGenerated`` falls in the ``timespan``
(``start/end``, ``start/PTnS`` or ``PTnS`` ending now). The answer has the documented shape
``{"tables": [{"name": "PrimaryResult", "columns": [{"name", "type"}], "rows": [...]}]}``;
dynamic values are sent as JSON text, as the service does.

What production clients meet, on demand:

* ``partial_error``: the rows *and* an ``error`` object (the SDK returns
  ``LogsQueryPartialResult``);
* ``fail_with``: an HTTP status and error code (``BadArgumentError`` 400, throttling 429 ...);
* a query duckdb-kql cannot run answers 400 ``BadArgumentError`` with its message, like a
  semantic error in the real service.

Every request needs ``Authorization: Bearer ...``; requests are recorded in :attr:`requests`.
``GET /msi/token`` speaks the App Service managed identity protocol, so ``DefaultAzureCredential``
works with ``IDENTITY_ENDPOINT=<url>/msi/token`` and ``IDENTITY_HEADER`` (token requests are
recorded in :attr:`token_requests`).
The TLS server is the one of tests/fakes/tls.py (trustme CA, loopback, free port).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlsplit

import duckdb_kql

from shared.analytics.schema import DUCKDB_TYPES, TABLES
from tests.fakes.tls import LoopbackTlsServer, Reply, TlsFake, json_reply

_PATH = re.compile(r"^/v1/workspaces/(?P<workspace>[^/]+)/query$")
_DUCK_TO_LA = {"VARCHAR": "string", "BIGINT": "long", "HUGEINT": "long", "INTEGER": "int",
               "DOUBLE": "real", "BOOLEAN": "bool", "TIMESTAMP": "datetime",
               "TIMESTAMP WITH TIME ZONE": "datetime", "JSON": "dynamic"}


@dataclass(frozen=True, slots=True)
class RecordedQuery:
    workspace: str
    query: str
    timespan: str | None
    authorization: str


def _parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _duration(text: str) -> timedelta:
    match = re.fullmatch(r"PT(?P<s>[0-9.]+)S", text)
    if match is None:
        raise ValueError(f"unsupported duration {text!r}")
    return timedelta(seconds=float(match["s"]))


def parse_timespan(text: str | None, now: datetime) -> tuple[datetime, datetime] | None:
    if not text:
        return None
    if "/" in text:
        start_text, end_text = text.split("/", 1)
        start = _parse_time(start_text)
        end = start + _duration(end_text) if end_text.startswith("PT") else _parse_time(end_text)
        return start, end
    return now - _duration(text), now


class FakeLogAnalytics(TlsFake):
    """Seed with rows per table (dicts keyed by column name; missing columns get Kusto's empty
    values); use as a context manager; point ``LogsQueryClient(endpoint=fake.url,
    connection_verify=fake.ca_path)`` at it."""

    def __init__(self, tables: Mapping[str, Sequence[Mapping[str, Any]]]) -> None:
        self._con = duckdb_kql.connect()
        self._lock = threading.Lock()
        for table, columns in TABLES.items():
            body = ", ".join(f'"{c.name}" {DUCKDB_TYPES[c.kusto_type]}' for c in columns)
            self._con.execute(f'CREATE TABLE "base_{table}" ({body})')
            for row in tables.get(table, ()):
                values = [row.get(c.name, _empty(c.kusto_type)) for c in columns]
                values = [v.astimezone(UTC).replace(tzinfo=None) if isinstance(v, datetime)
                          else v for v in values]
                marks = ", ".join("?" for _ in columns)
                self._con.execute(f'INSERT INTO "base_{table}" VALUES ({marks})', values)
        self.requests: list[RecordedQuery] = []
        self.partial_error: dict[str, Any] | None = None
        self.fail_with: tuple[int, str] | None = None
        self.token_requests: list[dict[str, str]] = []
        self._tls = LoopbackTlsServer(self._wire, name="fake-la", methods=("GET", "POST"),
                                      timeout=None)

    def stop(self) -> None:
        """Stop the server and close the database (the fake is done)."""
        super().stop()
        self._con.close()

    # ------------------------------------------------------------------------------------------

    def _wire(self, method: str, target: str, headers: dict[str, str], raw: bytes) -> Reply:
        parts = urlsplit(target)
        if method == "GET" and parts.path == "/msi/token":  # App Service managed identity
            if not headers.get("x-identity-header"):
                return json_reply(401, {"message": "X-IDENTITY-HEADER missing"})
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            self.token_requests.append(query)
            return json_reply(200, {"access_token": "fake-la-token",
                                    "expires_on": str(int(time.time()) + 3600),
                                    "resource": query.get("resource", ""),
                                    "token_type": "Bearer"})
        if method != "POST":
            return json_reply(405, {"error": {"code": "MethodNotAllowed", "message": method}})
        return json_reply(*self._dispatch(target, headers, raw))

    def _dispatch(self, path: str, headers: Mapping[str, str],
                  raw: bytes) -> tuple[int, dict[str, Any]]:
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if not auth.startswith("Bearer "):
            return 401, {"error": {"code": "AuthorizationRequiredError",
                                   "message": "Valid authentication was not provided"}}
        match = _PATH.match(path.split("?", 1)[0])
        if match is None:
            return 404, {"error": {"code": "PathNotFoundError", "message": path}}
        try:
            request = json.loads(raw)
        except json.JSONDecodeError:
            return 400, {"error": {"code": "BadArgumentError", "message": "body is not JSON"}}
        self.requests.append(RecordedQuery(match["workspace"], str(request.get("query", "")),
                                           request.get("timespan"), auth))
        if self.fail_with is not None:
            status, code = self.fail_with
            return status, {"error": {"code": code, "message": f"injected {code}"}}
        with self._lock:
            try:
                table = self._execute(str(request.get("query", "")), request.get("timespan"))
            except Exception as err:
                return 400, {"error": {"code": "BadArgumentError",
                                       "message": f"{type(err).__name__}: {err}"}}
        body: dict[str, Any] = {"tables": [table]}
        if self.partial_error is not None:
            body["error"] = self.partial_error
        return 200, body

    def _execute(self, query: str, timespan: str | None) -> dict[str, Any]:
        bounds = parse_timespan(timespan, datetime.now(UTC))
        for table in TABLES:
            where = ""
            if bounds is not None:
                start, end = (b.astimezone(UTC).replace(tzinfo=None) for b in bounds)
                where = (f" WHERE \"TimeGenerated\" >= TIMESTAMP '{start.isoformat()}' "
                         f"AND \"TimeGenerated\" < TIMESTAMP '{end.isoformat()}'")
            # duckdb-kql resolves tables in the main schema only: a fresh table per request
            self._con.execute(f'CREATE OR REPLACE TABLE "{table}" AS '
                              f'SELECT * FROM "base_{table}"{where}')
        relation = duckdb_kql.query(self._con, query)
        names = list(relation.columns)
        kinds = [_DUCK_TO_LA.get(str(t), "string") for t in relation.types]
        rows = [[_wire(v) for v in row] for row in relation.fetchall()]
        return {"name": "PrimaryResult",
                "columns": [{"name": n, "type": k} for n, k in zip(names, kinds, strict=True)],
                "rows": rows}


def _empty(kusto_type: str) -> Any:
    return {"string": "", "long": 0, "int": 0, "bool": False, "real": 0.0}.get(kusto_type)


def _wire(value: Any) -> Any:
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, Decimal):
        return int(value)
    return value
