"""The local analytics engine: NTANetAnalytics / NTAIpDetails-shaped tables in DuckDB, queried
with the same ``.kql`` files as Log Analytics through duckdb-kql.

Two ways in:

* :meth:`LocalEngine.ingest_flow_logs` - a Traffic-Analytics-style enricher over raw VNet flow
  log blobs (:mod:`shared.adapters.flow_ingest`: the native scanner where it was built, the SQL
  reader for the rest, then the classification of every address and the NTA tables).
* :meth:`LocalEngine.ingest_nta` - rows exported from Log Analytics (JSON array or CSV), cast to
  the table schema; rows that cannot be cast are counted and skipped with the reason.

Query results come back as rows converted column by column; the blast-radius edges come back
already reduced per host pair (:meth:`LocalEngine.edge_moments`); translations are cached in
memory and on disk (:mod:`shared.adapters.kql_translation`), and several queries may run at
once (``concurrent_queries``), each on its own cursor.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import duckdb
import duckdb_kql

from shared.adapters.flow_ingest import (
    CountryLookup,
    FlowLogIngest,
    IngestReport,
    ddl,
    drop_relation,
    table_counts,
)
from shared.adapters.flow_log_reader import DEFAULT_BATCH_BYTES
from shared.adapters.kql_translation import schema_of, translate, translate_all
from shared.analytics.blast_radius import EdgeMoments
from shared.analytics.enrichment import EnrichmentTables
from shared.analytics.query import QueryResult, Window
from shared.analytics.schema import (
    DUCKDB_TYPES,
    IP_DETAILS_COLUMNS,
    NET_ANALYTICS_COLUMNS,
    NTA_IP_DETAILS,
    NTA_NET_ANALYTICS,
    TABLES,
    Column,
)

__all__ = ["CountryLookup", "IngestReport", "LocalEngine"]

ENGINE_NAME: Final = "duckdb"


class LocalEngine:
    """DuckDB with the NTA tables, and a :meth:`run` that executes KQL through duckdb-kql.

    ``memory_limit`` (e.g. ``"3GB"``) and ``threads`` are passed to DuckDB; ``temp_directory``
    lets it spill instead of failing when the limit is reached.
    """

    name = ENGINE_NAME

    def __init__(self, *, threads: int | None = None, memory_limit: str | None = None,
                 temp_directory: Path | None = None, native: bool = True) -> None:
        #: read flow log blobs with the native scanner where it was built (False: the SQL
        #: reader reads every blob, as the differential tests compare)
        self.native = native
        self.con: duckdb.DuckDBPyConnection = duckdb_kql.connect()
        self.con.execute("SET enable_progress_bar = false")
        if threads is not None:
            self.con.execute(f"SET threads = {int(threads)}")
        if memory_limit is not None:
            self.con.execute("SET memory_limit = $limit", {"limit": memory_limit})
        if temp_directory is not None:
            self.con.execute("SET temp_directory = $dir", {"dir": str(temp_directory)})
        self.con.execute("SET preserve_insertion_order = false")
        (active,), = self.con.execute("SELECT current_setting('threads')").fetchall()
        #: queries the analytics service may run at once (see shared.services.analytics): one
        #: per DuckDB thread (a query alone keeps about one and a half cores busy).
        self.concurrent_queries = int(active)
        #: the analytics service may start the blast-radius edge query (the longest) before
        #: the detections that decide whether it is needed: a local query costs nothing but
        #: its time, and otherwise it would start last
        self.speculate_blast_radius = self.concurrent_queries > 1
        for table, columns in TABLES.items():
            self.con.execute(ddl(table, columns))
        #: NTANetAnalytics is the flow-log ingest's view over ``zts_nta`` (see data_range)
        self._flow_view = False
        self._prepared: list[str] = []
        #: the thread translating prepared queries, once started (joinable, e.g. by tests)
        self.preparing: threading.Thread | None = None
        #: the analytics service declares WindowStart/WindowEnd as query parameters for this
        #: engine (bound from run()'s window) instead of writing their values into the text,
        #: so that a query translates once for every window (see prepare)
        self.binds_window = True

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- raw flow logs ----------------------------------------------------------------------------

    def ingest_flow_logs(self, root: Path, tables: EnrichmentTables,
                         countries: CountryLookup,
                         batch_bytes: int = DEFAULT_BATCH_BYTES) -> IngestReport:
        """Read the blobs under ``root`` and build both tables (replacing their contents).
        Queries handed to :meth:`prepare` are translated while the blobs are read."""
        report = FlowLogIngest(self.con, tables, countries, batch_bytes=batch_bytes,
                               native=self.native).run(root, on_listed=self._translate_prepared)
        self._flow_view = True
        return report

    def prepare(self, queries: Sequence[str]) -> None:
        """Translate ``queries`` ahead of their run, on a background thread (the results land
        in the translation cache; a failure is left for the run to report), starting when the
        next ingest has listed its blobs: reading them needs no GIL, the translator does.
        Queries whose window is a declared parameter (``binds_window``) translate the same for
        any window. Without an ingest, queries are translated when they run."""
        self._prepared = list(queries)

    def _translate_prepared(self) -> None:
        queries, self._prepared = self._prepared, []
        if queries:
            self.preparing = threading.Thread(target=translate_all,
                                              args=(queries, schema_of(self.con)),
                                              name="zts-kql-prepare", daemon=True)
            self.preparing.start()

    def _tables_for_export(self) -> None:
        """Plain tables to load exported rows into (replacing a flow-log ingest's view)."""
        for table, columns in TABLES.items():
            drop_relation(self.con, table)
            self.con.execute(ddl(table, columns))
        self.con.execute("DROP TABLE IF EXISTS zts_nta")

    # -- exported rows ----------------------------------------------------------------------------

    def ingest_nta(self, nta: Path, nta_ip: Path | None = None) -> IngestReport:
        """Load rows exported from Log Analytics (JSON array of objects, or CSV with a header).
        Without ``nta_ip`` the NTAIpDetails table stays empty (and the report says so)."""
        self._translate_prepared()
        self._flow_view = False
        report = IngestReport(source="nta_export")
        if self.con.execute("SELECT count(*) FROM duckdb_views() WHERE view_name = $name",
                            {"name": NTA_NET_ANALYTICS}).fetchall()[0][0]:
            self._tables_for_export()
        read, skipped = self._load_export(nta, NTA_NET_ANALYTICS, NET_ANALYTICS_COLUMNS)
        report.rows_read += read
        for reason, count in skipped.items():
            report.rows_skipped.add(reason, count, nta.name)
        if nta_ip is not None:
            read, skipped = self._load_export(nta_ip, NTA_IP_DETAILS, IP_DETAILS_COLUMNS)
            report.rows_read += read
            for reason, count in skipped.items():
                report.rows_skipped.add(reason, count, nta_ip.name)
        else:
            report.notes.append("no NTAIpDetails export given (--nta-ip): threat types and "
                                "service names come only from NTANetAnalytics columns")
        report.tables = self.table_counts()
        return report

    def _load_export(self, path: Path, table: str,
                     columns: Sequence[Column]) -> tuple[int, dict[str, int]]:
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist")
        present = {name for (name,) in self.con.execute(
            f"SELECT column_name FROM (DESCRIBE SELECT * FROM {_export_source(path)})",  # noqa: S608 - constant identifiers; values are bound
            {"path": str(path)}).fetchall()}
        if not present & {c.name for c in columns}:
            raise ValueError(f"{path}: none of the {table} columns is present")
        # read every known column as text (JSON numbers and strings alike), then cast
        source = _export_source(path, [c.name for c in columns if c.name in present])
        typed = []
        checks = []
        for column in columns:
            raw = f'CAST(raw."{column.name}" AS VARCHAR)' if column.name in present else "NULL"
            typed.append(f'{_cast(raw, column.kusto_type)} AS "{column.name}"')
            if column.name in present and column.kusto_type != "string":
                checks.append((column.name, f"{raw} IS NOT NULL AND {raw} <> '' AND "
                                            f"{_try_cast(raw, column.kusto_type)} IS NULL"))
        reason = "CASE " + " ".join(f"WHEN {c} THEN 'bad {name} value'" for name, c in checks)
        reason = reason + " END" if checks else "NULL"
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE zts_export AS SELECT *, {reason} AS "  # noqa: S608 - constant identifiers; values are bound
                         f"zts_reason FROM {source} raw", {"path": str(path)})
        self.con.execute(f'INSERT INTO "{table}" SELECT {", ".join(typed)} FROM zts_export raw '  # noqa: S608 - constant identifiers; values are bound
                         "WHERE zts_reason IS NULL")
        counts = self.con.execute("SELECT coalesce(zts_reason, ''), count(*) FROM zts_export "
                                  "GROUP BY 1 ORDER BY 1").fetchall()
        self.con.execute("DROP TABLE zts_export")
        total = sum(int(n) for _, n in counts)
        return total, {str(r): int(n) for r, n in counts if r}

    # -- querying ---------------------------------------------------------------------------------

    def table_counts(self) -> dict[str, int]:
        return table_counts(self.con)

    def data_range(self) -> tuple[datetime, datetime] | None:
        """The flows' own time range: first FlowStartTime to last FlowEndTime (or start)."""
        if self._flow_view:  # the same answer, without going through the view's joins
            (low, high), = self.con.execute(
                "SELECT make_timestamp(min(first_ms) * 1000), "
                "make_timestamp(max(greatest(last_ms, first_ms)) * 1000) FROM zts_nta").fetchall()
            if low is None or high is None:
                return None
            return _aware(low), _aware(high)
        (low, high), = self.con.execute(
            f'SELECT min("FlowStartTime"), max(greatest("FlowEndTime", "FlowStartTime")) '  # noqa: S608 - constant identifiers; values are bound
            f'FROM "{NTA_NET_ANALYTICS}"').fetchall()
        if low is None or high is None:
            return None
        return _aware(low), _aware(high)

    def run(self, query: str, window: Window | None = None) -> QueryResult:
        """Execute a KQL query through duckdb-kql; any failure is a failed result, not an
        exception (the service reports it as "could not check"). The query filters on its own
        window, or declares ``WindowStart``/``WindowEnd`` and gets ``window``'s bounds. Safe to
        call from several threads at once (each call has a cursor of its own)."""
        cursor = self.con.cursor()
        try:
            relation = self._relation(cursor, query, window)
            names = list(relation.columns)
            kinds = [str(t) for t in relation.types]
            raw = relation.fetchall()
        except Exception as err:
            return QueryResult.failed(f"{type(err).__name__}: {err}")
        finally:
            cursor.close()
        return QueryResult(tuple(names), _rows(names, kinds, raw))

    def edge_moments(self, query: str, window: Window | None = None) -> EdgeMoments:
        """The blast-radius edge query, reduced in DuckDB to one row per host pair with its
        distinct connection moments (:class:`shared.analytics.blast_radius.EdgeMomentSource`)
        instead of a Python row per pair and interval. Raises on any failure (the caller then
        runs the query the ordinary way, which reports the error). Thread-safe like run()."""
        cursor = self.con.cursor()
        try:
            relation = self._relation(cursor, query, window).query("zts_edges", _EDGE_MOMENTS_SQL)
            if relation is None:
                raise ValueError("the edge reduction returned no rows")
            reduced = relation.fetchall()
        finally:
            cursor.close()
        return EdgeMoments([(str(src), str(dst), moments) for src, dst, _, moments in reduced
                            if moments], sum(int(n) for _, _, n, _ in reduced))

    @staticmethod
    def _relation(con: duckdb.DuckDBPyConnection, query: str,
                  window: Window | None) -> duckdb.DuckDBPyRelation:
        """What ``duckdb_kql.query`` does, with the translation cached (see :func:`_translate`)."""
        con.execute("SET TimeZone='UTC'")
        values = {} if window is None else {"WindowStart": window.start, "WindowEnd": window.end}
        sql, parameters = translate(query, schema_of(con), values)
        relation = con.sql(sql, params=parameters) if parameters else con.sql(sql)
        if relation is None:
            raise ValueError("the query returns no rows (a command, not a query)")
        return relation


# The edge query's rows -> per (source, destination): how many rows, and the distinct moments a
# connection was opened (epoch microseconds, sorted), leaving out what edges_from_rows leaves out.
_EDGE_MOMENTS_SQL: Final = """
WITH e AS (
    SELECT "SrcIp" AS src, "DestIp" AS dst, "FirstContact" AS first,
        coalesce("LastContact", "FirstContact") AS last,
        coalesce("SrcIp" <> '' AND "DestIp" <> '' AND "SrcIp" <> "DestIp"
                 AND "FirstContact" IS NOT NULL, false) AS ok
    FROM zts_edges
)
SELECT src, dst, count(*) AS n,
    list_sort(list_distinct(list_concat(
        coalesce(list(epoch_us(first)) FILTER (WHERE ok), []),
        coalesce(list(epoch_us(last)) FILTER (WHERE ok AND last > first), [])))) AS moments
FROM e GROUP BY src, dst
"""

# -- result rows ----------------------------------------------------------------------------------


def _text(value: Any) -> Any:
    return "" if value is None else value


def _moment(value: Any) -> Any:
    return None if value is None else _aware(value)


def _parsed(value: Any) -> Any:
    return _value(value, "JSON")


#: Column kinds whose values need no conversion, and the cheap converters of common kinds (the
#: same answers as :func:`_value`, which every other kind goes through cell by cell).
_AS_IS: Final = frozenset({"BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UBIGINT", "UINTEGER",
                           "USMALLINT", "UTINYINT", "HUGEINT", "BOOLEAN", "DOUBLE", "FLOAT"})
_CONVERTERS: Final[dict[str, Callable[[Any], Any]]] = {
    "VARCHAR": _text, "TIMESTAMP": _moment, "TIMESTAMP WITH TIME ZONE": _moment,
    "JSON": _parsed,
}


def _rows(names: Sequence[str], kinds: Sequence[str],
          raw: Sequence[tuple[Any, ...]]) -> tuple[dict[str, Any], ...]:
    """DuckDB rows as the service expects them (see :func:`_value`), converted column by column
    and only where a column's type needs it."""
    if not raw:
        return ()
    columns: list[Sequence[Any]] = []
    for kind, column in zip(kinds, zip(*raw, strict=True), strict=True):
        if kind in _AS_IS:
            columns.append(column)
            continue
        convert = _CONVERTERS.get(kind)
        if convert is None:
            columns.append([_value(value, kind) for value in column])
        else:
            columns.append([convert(value) for value in column])
    return tuple(dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True))


def _export_source(path: Path, text_columns: Sequence[str] | None = None) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "read_csv($path, header = true, all_varchar = true)"
    if text_columns is None:
        return "read_json($path, format = 'array', records = true)"
    columns = ", ".join(f"'{name}': 'VARCHAR'" for name in text_columns)  # schema names only
    return f"read_json($path, format = 'array', records = true, columns = {{{columns}}})"


def _try_cast(raw: str, kusto_type: str) -> str:
    if kusto_type == "datetime":
        return f"TRY_CAST({raw} AS TIMESTAMPTZ)"
    if kusto_type == "bool":
        return (f"CASE WHEN lower({raw}) IN ('true', '1') THEN true "
                f"WHEN lower({raw}) IN ('false', '0') THEN false END")
    return f"TRY_CAST(TRY_CAST({raw} AS DOUBLE) AS {DUCKDB_TYPES[kusto_type]})"


def _cast(raw: str, kusto_type: str) -> str:
    """Typed value, with Kusto's empty values where the export has none."""
    if kusto_type == "string":
        return f"coalesce({raw}, '')"
    if kusto_type == "datetime":
        return f"CAST(timezone('UTC', {_try_cast(raw, kusto_type)}) AS TIMESTAMP)"
    if kusto_type == "bool":
        return f"coalesce({_try_cast(raw, kusto_type)}, false)"
    return f"coalesce({_try_cast(raw, kusto_type)}, 0)"


def _aware(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    raise TypeError(f"expected a datetime, got {value!r}")


def _value(value: Any, kind: str) -> Any:
    """DuckDB values as the service expects them: aware datetimes, ints, parsed JSON, and ""
    for missing strings (Kusto has no null strings)."""
    if value is None:
        return "" if kind == "VARCHAR" else None
    if isinstance(value, datetime):
        return _aware(value)
    if kind == "JSON":
        return json.loads(value) if isinstance(value, str) else value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer() and kind in (
            "HUGEINT", "BIGINT"):
        return int(value)
    return value
