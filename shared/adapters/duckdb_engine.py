"""The local analytics engine: NTANetAnalytics / NTAIpDetails-shaped tables in DuckDB, queried
with the same ``.kql`` files as Log Analytics through duckdb-kql.

Two ways in:

* :meth:`LocalEngine.ingest_flow_logs` - a Traffic-Analytics-style enricher over raw VNet flow
  log blobs (:mod:`shared.adapters.flow_log_reader` does the reading). Each distinct address is
  classified once (estate NIC, VNet, private, Azure service, listed threat, country), then every
  aggregated flow is typed (FlowType) and re-aggregated per Traffic Analytics' key, public
  addresses folded into ``SrcPublicIps``/``DestPublicIps`` entries as TA writes them.
* :meth:`LocalEngine.ingest_nta` - rows exported from Log Analytics (JSON array or CSV), cast to
  the table schema; rows that cannot be cast are counted and skipped with the reason.

All heavy work is SQL; Python only prepares the small lookup tables and asks the offline country
database about the distinct public addresses.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import duckdb
import duckdb_kql

from shared.adapters.flow_log_reader import (
    DEFAULT_BATCH_BYTES,
    PARTIAL_TABLE,
    BlobReport,
    FlowLogReader,
    Skips,
)
from shared.analytics.enrichment import (
    L7_PROTOCOLS,
    EnrichmentTables,
    HostRow,
    private_ranges,
)
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

CountryLookup = Callable[[Sequence[str]], Sequence[str | None]]
ENGINE_NAME: Final = "duckdb"

_ENCRYPTION: Final = {
    "X": "Encrypted", "NX": "Unencrypted", "NX_HW_NOT_SUPPORTED": "Unsupported hardware",
    "NX_SW_NOT_READY": "Software not ready", "NX_NOT_ACCEPTED": "Drop due to no encryption",
    "NX_NOT_SUPPORTED": "Discovery not supported", "NX_LOCAL_DST": "Destination on same host",
    "NX_FALLBACK": "Fall back to no encryption",
}  # fmt: skip

# Distinct addresses of the good rows, parsed to integers (IPv4) or given a problem.
_IPS_SQL: Final = """
CREATE OR REPLACE TABLE zts_ips AS
WITH ips AS (
    SELECT src AS ip FROM zts_flow_partial WHERE reason IS NULL
    UNION SELECT dst FROM zts_flow_partial WHERE reason IS NULL
), parts AS (
    SELECT ip, regexp_full_match(ip, '[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}')
        AS dotted, string_split(ip, '.') AS o FROM ips
), octets AS (
    SELECT ip, dotted,
        CASE WHEN dotted THEN CAST(o[1] AS BIGINT) END AS a,
        CASE WHEN dotted THEN CAST(o[2] AS BIGINT) END AS b,
        CASE WHEN dotted THEN CAST(o[3] AS BIGINT) END AS c,
        CASE WHEN dotted THEN CAST(o[4] AS BIGINT) END AS d
    FROM parts
)
SELECT ip,
    CASE WHEN dotted AND greatest(a, b, c, d) <= 255 THEN a * 16777216 + b * 65536 + c * 256 + d
    END AS n,
    CASE WHEN dotted AND greatest(a, b, c, d) <= 255 THEN NULL
         WHEN contains(ip, ':') THEN 'IPv6 address (the local enricher is IPv4 only)'
         ELSE 'bad address' END AS problem
FROM octets
"""

# One row per address: where it lives (estate NIC, VNet), whether it is private, and what the
# public ones are (Azure service, listed threat, country override). Range lookups use the most
# specific match (smallest VNet prefix, lowest rank).
_INFO_SQL: Final = """
CREATE OR REPLACE TABLE zts_ip_info AS
WITH vnet AS (
    SELECT i.ip, arg_min(v.vnet_id, v.size) AS vnet_id, arg_min(v.subscription, v.size) AS sub,
        arg_min(v.region, v.size) AS region
    FROM zts_ips i JOIN zts_vnets v ON i.n BETWEEN v.lo AND v.hi GROUP BY i.ip
), private AS (
    SELECT DISTINCT i.ip FROM zts_ips i JOIN zts_private p ON i.n BETWEEN p.lo AND p.hi
), service AS (
    SELECT i.ip, arg_min(s.service, s.rank) AS service, arg_min(s.region, s.rank) AS region
    FROM zts_ips i JOIN zts_services s ON i.n BETWEEN s.lo AND s.hi GROUP BY i.ip
), threat AS (
    SELECT i.ip, arg_min(t.threat_type, t.rank) AS threat_type,
        arg_min(t.description, t.rank) AS description
    FROM zts_ips i JOIN zts_threats t ON i.n BETWEEN t.lo AND t.hi GROUP BY i.ip
), override AS (
    SELECT i.ip, arg_min(c.country, c.rank) AS country
    FROM zts_ips i JOIN zts_country_overrides c ON i.n BETWEEN c.lo AND c.hi GROUP BY i.ip
)
SELECT i.ip, i.n, i.problem,
    coalesce(h.nic, '') AS nic, coalesce(h.vm, '') AS vm, coalesce(h.subnet, '') AS subnet,
    coalesce(h.vnet_id, v.vnet_id) AS vnet_id,
    coalesce(h.subscription, v.sub, '') AS subscription,
    coalesce(h.region, v.region, '') AS region,
    (h.ip IS NOT NULL OR v.ip IS NOT NULL OR p.ip IS NOT NULL) AS private,
    s.service, coalesce(s.region, '') AS service_region, t.threat_type,
    coalesce(t.description, '') AS threat_description, o.country AS override_country
FROM zts_ips i
LEFT JOIN zts_hosts h ON h.ip = i.ip
LEFT JOIN vnet v ON v.ip = i.ip
LEFT JOIN private p ON p.ip = i.ip
LEFT JOIN service s ON s.ip = i.ip
LEFT JOIN threat t ON t.ip = i.ip
LEFT JOIN override o ON o.ip = i.ip
"""

# Every aggregated flow with both ends classified, its FlowType and, for public flows, the
# public address with its TA entry "ip|started|ended|pkts s>d|pkts d>s|bytes s>d|bytes d>s".
_FLOWS_SQL: Final = """
CREATE OR REPLACE TABLE zts_flows AS
WITH agg AS (
    SELECT interval_ms, mac, acl, rule, src, dst, dport, proto, dir, denied,
        min(enc) AS enc, min(flowlog) AS flowlog, min(target) AS target,
        min(first_ms) AS first_ms, max(last_ms) AS last_ms, min(first_bd) AS first_bd,
        max(last_bd) AS last_bd, sum(begun) AS begun, sum(refused) AS refused,
        sum(ended) AS ended, sum(pkts_s2d) AS pkts_s2d, sum(bytes_s2d) AS bytes_s2d,
        sum(pkts_d2s) AS pkts_d2s, sum(bytes_d2s) AS bytes_d2s
    FROM zts_flow_partial WHERE reason IS NULL
    GROUP BY interval_ms, mac, acl, rule, src, dst, dport, proto, dir, denied
), joined AS (
    SELECT a.*, s.private AS s_private, d.private AS d_private,
        s.vnet_id AS s_vnet, d.vnet_id AS d_vnet,
        CASE WHEN s.private AND NOT d.private THEN 'dst'
             WHEN d.private AND NOT s.private THEN 'src' END AS public_side
    FROM agg a JOIN zts_ip_info s ON s.ip = a.src JOIN zts_ip_info d ON d.ip = a.dst
    WHERE s.problem IS NULL AND d.problem IS NULL
), typed AS (
    SELECT j.*, CASE j.public_side WHEN 'src' THEN j.src WHEN 'dst' THEN j.dst END AS public_ip
    FROM joined j
)
SELECT t.*,
    CASE
        WHEN t.public_side IS NOT NULL THEN
            CASE WHEN p.threat_type IS NOT NULL THEN 'MaliciousFlow'
                 WHEN p.service IS NOT NULL THEN 'AzurePublic'
                 ELSE 'ExternalPublic' END
        WHEN t.s_private AND t.d_private THEN
            CASE WHEN t.s_vnet IS NOT NULL AND t.d_vnet IS NOT NULL THEN
                     CASE WHEN t.s_vnet = t.d_vnet THEN 'IntraVNet' ELSE 'InterVNet' END
                 WHEN t.s_vnet IS NULL AND t.d_vnet IS NULL THEN 'Unknown'
                 ELSE 'UnknownPrivate' END
        ELSE 'Unknown'
    END AS flow_type,
    CASE WHEN t.public_side IS NOT NULL AND p.threat_type IS NULL AND p.service IS NOT NULL
         THEN '' ELSE coalesce(p.country, '') END AS country,
    CASE WHEN t.public_side IS NOT NULL AND p.threat_type IS NULL AND p.service IS NOT NULL
         THEN p.service_region ELSE '' END AS azure_region,
    CASE WHEN t.public_side IS NOT NULL THEN
        t.public_ip || '|' || (t.begun + t.refused) || '|' || t.ended || '|' || t.pkts_s2d
        || '|' || t.pkts_d2s || '|' || t.bytes_s2d || '|' || t.bytes_d2s END AS entry
FROM typed t LEFT JOIN zts_public p ON p.ip = t.public_ip
"""

_NET_SELECT: Final = """
SELECT
    make_timestamp((interval_ms + $interval_ms) * 1000) AS TimeGenerated,
    make_timestamp((interval_ms + $interval_ms) * 1000) AS TimeProcessed,
    'FlowLog' AS SubType, '3' AS FaSchemaVersion,
    make_timestamp(interval_ms * 1000) AS FlowIntervalStartTime,
    make_timestamp((interval_ms + $interval_ms) * 1000) AS FlowIntervalEndTime,
    make_timestamp(min(coalesce(f.first_bd, f.first_ms)) * 1000) AS FlowStartTime,
    make_timestamp(max(coalesce(f.last_bd, f.last_ms)) * 1000) AS FlowEndTime,
    flow_type AS FlowType,
    CASE WHEN public_side = 'src' THEN '' ELSE src_key END AS SrcIp,
    CASE WHEN public_side = 'dst' THEN '' ELSE dst_key END AS DestIp,
    coalesce(string_agg(entry, ' ' ORDER BY public_ip) FILTER (WHERE public_side = 'src'), '')
        AS SrcPublicIps,
    coalesce(string_agg(entry, ' ' ORDER BY public_ip) FILTER (WHERE public_side = 'dst'), '')
        AS DestPublicIps,
    dport AS DestPort,
    CASE proto WHEN 6 THEN 'T' WHEN 17 THEN 'U' WHEN 1 THEN 'I' ELSE CAST(proto AS VARCHAR) END
        AS L4Protocol,
    coalesce(l7.name, 'unknown') AS L7Protocol,
    CASE dir WHEN 'I' THEN 'Inbound' ELSE 'Outbound' END AS FlowDirection,
    CASE WHEN denied THEN 'Denied' ELSE 'Allowed' END AS FlowStatus,
    coalesce(enc.name, min(f.enc)) AS FlowEncryption,
    CASE WHEN lower(acl) = 'unspecified' THEN '' ELSE coalesce(g.acl_group, acl) END AS AclGroup,
    CASE WHEN lower(rule) = 'unspecified' THEN ''
         WHEN starts_with(rule, 'DefaultRule_') THEN rule[13:]
         WHEN starts_with(rule, 'UserRule_') THEN rule[10:] ELSE rule END AS AclRule,
    CASE WHEN starts_with(rule, 'DefaultRule_') THEN 'Default' ELSE 'User Defined' END
        AS NsgRuleType,
    mac AS MacAddress,
    coalesce(min(f.target), '') AS TargetResourceId,
    CASE WHEN contains(lower(min(f.target)), '/networkinterfaces/') THEN 'NetworkInterface'
         WHEN contains(lower(min(f.target)), '/subnets/') THEN 'Subnet'
         ELSE 'VirtualNetwork' END AS TargetResourceType,
    coalesce(min(f.flowlog), '') AS FlowLogResourceId,
    s.subscription AS SrcSubscription, d.subscription AS DestSubscription,
    s.region AS SrcRegion, d.region AS DestRegion, s.nic AS SrcNic, d.nic AS DestNic,
    s.vm AS SrcVm, d.vm AS DestVm, s.subnet AS SrcSubnet, d.subnet AS DestSubnet,
    country AS Country, azure_region AS AzureRegion,
    sum(CASE WHEN dir = 'I' AND NOT denied THEN begun ELSE 0 END) AS AllowedInFlows,
    sum(CASE WHEN dir = 'I' AND denied THEN refused ELSE 0 END) AS DeniedInFlows,
    sum(CASE WHEN dir = 'O' AND NOT denied THEN begun ELSE 0 END) AS AllowedOutFlows,
    sum(CASE WHEN dir = 'O' AND denied THEN refused ELSE 0 END) AS DeniedOutFlows,
    sum(ended) AS CompletedFlows,
    sum(pkts_s2d) AS PacketsSrcToDest, sum(pkts_d2s) AS PacketsDestToSrc,
    sum(bytes_s2d) AS BytesSrcToDest, sum(bytes_d2s) AS BytesDestToSrc,
    false AS IsFlowCapturedAtUdrHop
FROM (
    SELECT *, CASE WHEN public_side = 'src' THEN '' ELSE src END AS src_key,
        CASE WHEN public_side = 'dst' THEN '' ELSE dst END AS dst_key
    FROM zts_flows
) f
LEFT JOIN zts_ip_info s ON s.ip = f.src_key AND f.src_key <> ''
LEFT JOIN zts_ip_info d ON d.ip = f.dst_key AND f.dst_key <> ''
LEFT JOIN zts_acl g ON g.guid = lower(f.acl)
LEFT JOIN zts_l7 l7 ON l7.port = f.dport
LEFT JOIN zts_encryption enc ON enc.code = f.enc
GROUP BY interval_ms, mac, acl, rule, src_key, dst_key, dport, proto, dir, denied, flow_type,
    country, azure_region, public_side, g.acl_group, l7.name, enc.name,
    s.subscription, d.subscription, s.region, d.region, s.nic, d.nic, s.vm, d.vm, s.subnet,
    d.subnet
"""

_IP_DETAILS_SELECT: Final = """
SELECT make_timestamp((interval_ms + $interval_ms) * 1000) AS TimeGenerated,
    'FlowLog' AS SubType, '2' AS FaSchemaVersion,
    make_timestamp(interval_ms * 1000) AS FlowIntervalStartTime,
    make_timestamp((interval_ms + $interval_ms) * 1000) AS FlowIntervalEndTime,
    CASE WHEN p.threat_type IS NOT NULL THEN 'MaliciousFlow'
         WHEN p.service IS NOT NULL THEN 'AzurePublic' ELSE 'ExternalPublic' END AS FlowType,
    f.public_ip AS Ip,
    CASE WHEN p.threat_type IS NULL AND p.service IS NOT NULL THEN p.service_region
         ELSE coalesce(p.country, '') END AS Location,
    coalesce(p.service, '') AS PublicIpDetails, coalesce(p.threat_type, '') AS ThreatType,
    p.threat_description AS ThreatDescription, '' AS DnsDomain, '' AS Url, '' AS Port
FROM (SELECT DISTINCT interval_ms, public_ip FROM zts_flows WHERE public_ip IS NOT NULL) f
JOIN zts_public p ON p.ip = f.public_ip
"""


@dataclass
class IngestReport:
    """What an ingest read and built (JSON-ready through :meth:`as_dict`)."""

    source: str
    blobs: BlobReport | None = None
    rows_read: int = 0
    rows_skipped: Skips = field(default_factory=Skips)
    addresses: dict[str, int] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        blobs_clean = self.blobs.clean if self.blobs is not None else True
        return blobs_clean and not self.rows_skipped.total and not self.addresses.get(
            "skipped", 0)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"source": self.source}
        if self.blobs is not None:
            out.update(self.blobs.as_dict())
        else:
            out["rows"] = {"read": self.rows_read, "skipped": self.rows_skipped.total,
                           "reasons": self.rows_skipped.as_dict()}
        if self.addresses:
            out["addresses"] = dict(self.addresses)
        out["tables"] = dict(self.tables)
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def _ddl(name: str, columns: Sequence[Column]) -> str:
    body = ", ".join(f'"{c.name}" {DUCKDB_TYPES[c.kusto_type]}' for c in columns)
    return f'CREATE OR REPLACE TABLE "{name}" ({body})'


class LocalEngine:
    """DuckDB with the NTA tables, and a :meth:`run` that executes KQL through duckdb-kql.

    ``memory_limit`` (e.g. ``"3GB"``) and ``threads`` are passed to DuckDB; ``temp_directory``
    lets it spill instead of failing when the limit is reached.
    """

    name = ENGINE_NAME

    def __init__(self, *, threads: int | None = None, memory_limit: str | None = None,
                 temp_directory: Path | None = None) -> None:
        self.con: duckdb.DuckDBPyConnection = duckdb_kql.connect()
        self.con.execute("SET enable_progress_bar = false")
        if threads is not None:
            self.con.execute(f"SET threads = {int(threads)}")
        if memory_limit is not None:
            self.con.execute("SET memory_limit = $limit", {"limit": memory_limit})
        if temp_directory is not None:
            self.con.execute("SET temp_directory = $dir", {"dir": str(temp_directory)})
        self.con.execute("SET preserve_insertion_order = false")
        for table, columns in TABLES.items():
            self.con.execute(_ddl(table, columns))

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
        """Read the blobs under ``root`` and build both tables (replacing their contents)."""
        reader = FlowLogReader(self.con, tables.interval_minutes, batch_bytes)
        self.con.execute(f"DROP TABLE IF EXISTS {PARTIAL_TABLE}")
        blobs = reader.read(root)
        report = IngestReport(source="flow_logs", blobs=blobs)
        self._load_lookups(tables)
        self.con.execute(_IPS_SQL)
        self._lookup_countries(countries)
        self.con.execute(_INFO_SQL)
        self._public_table()
        self._account_addresses(report, blobs)
        self.con.execute(_FLOWS_SQL)
        interval = {"interval_ms": tables.interval_minutes * 60_000}
        self.con.execute(_ddl(NTA_NET_ANALYTICS, NET_ANALYTICS_COLUMNS))
        self.con.execute(f'INSERT INTO "{NTA_NET_ANALYTICS}" {_NET_SELECT}', interval)
        self.con.execute(_ddl(NTA_IP_DETAILS, IP_DETAILS_COLUMNS))
        self.con.execute(f'INSERT INTO "{NTA_IP_DETAILS}" {_IP_DETAILS_SELECT}', interval)
        for scratch in (PARTIAL_TABLE, "zts_flows", "zts_ips"):
            self.con.execute(f"DROP TABLE IF EXISTS {scratch}")
        report.tables = self.table_counts()
        return report

    def _load_lookups(self, tables: EnrichmentTables) -> None:
        hosts: dict[str, HostRow] = {}
        for host in tables.hosts:  # overlapping VNets: the first row per address wins
            hosts.setdefault(host.ip, host)
        self._load("zts_hosts", ("ip VARCHAR", "nic VARCHAR", "vm VARCHAR", "subnet VARCHAR",
                                 "vnet_id VARCHAR", "subscription VARCHAR", "region VARCHAR"),
                   list(hosts.values()))
        self._load("zts_vnets", ("lo BIGINT", "hi BIGINT", "vnet_id VARCHAR",
                                 "subscription VARCHAR", "region VARCHAR", "size BIGINT"),
                   tables.vnets)
        self._load("zts_private", ("lo BIGINT", "hi BIGINT"), private_ranges())
        self._load("zts_services", ("lo BIGINT", "hi BIGINT", "tag VARCHAR", "service VARCHAR",
                                    "region VARCHAR", "rank BIGINT"), tables.services)
        self._load("zts_threats", ("lo BIGINT", "hi BIGINT", "threat_type VARCHAR",
                                   "description VARCHAR", "rank BIGINT"), tables.threats)
        self._load("zts_country_overrides", ("lo BIGINT", "hi BIGINT", "country VARCHAR",
                                             "rank BIGINT"), tables.countries)
        self._load("zts_acl", ("guid VARCHAR", "acl_group VARCHAR"),
                   sorted(tables.acl_groups.items()))
        self._load("zts_l7", ("port INTEGER", "name VARCHAR"), sorted(L7_PROTOCOLS.items()))
        self._load("zts_encryption", ("code VARCHAR", "name VARCHAR"),
                   sorted(_ENCRYPTION.items()))

    def _load(self, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Create ``table`` from Python rows in one statement (a list parameter per column)."""
        names = [c.split()[0] for c in columns]
        values = [[row[i] for row in rows] for i in range(len(columns))]
        select = ", ".join(f"unnest(${i + 1}::{c.split()[1]}[]) AS {n}"
                           for i, (n, c) in enumerate(zip(names, columns, strict=True)))
        ddl = ", ".join(columns)
        self.con.execute(f"CREATE OR REPLACE TABLE {table} ({ddl})")
        if rows:
            self.con.execute(f"INSERT INTO {table} SELECT {select}", values)

    def _lookup_countries(self, countries: CountryLookup) -> None:
        """Ask the offline country database about every public address (once each)."""
        public = [ip for (ip,) in self.con.execute(
            "SELECT i.ip FROM zts_ips i WHERE i.problem IS NULL AND NOT EXISTS ("
            " SELECT 1 FROM zts_private p WHERE i.n BETWEEN p.lo AND p.hi) AND NOT EXISTS ("
            " SELECT 1 FROM zts_vnets v WHERE i.n BETWEEN v.lo AND v.hi) ORDER BY i.ip"
        ).fetchall()]
        found = list(countries(public)) if public else []
        self._load("zts_ip_country", ("ip VARCHAR", "country VARCHAR"),
                   [(ip, cc or "") for ip, cc in zip(public, found, strict=True)])

    def _public_table(self) -> None:
        self.con.execute("""
            CREATE OR REPLACE TABLE zts_public AS
            SELECT i.ip, i.service, i.service_region, i.threat_type, i.threat_description,
                coalesce(nullif(i.override_country, ''), nullif(c.country, ''), '') AS country
            FROM zts_ip_info i LEFT JOIN zts_ip_country c ON c.ip = i.ip
            WHERE NOT i.private AND i.problem IS NULL
        """)

    def _account_addresses(self, report: IngestReport, blobs: BlobReport) -> None:
        """Rows whose address is not usable (IPv6, malformed) are skipped tuples, with reason."""
        for problem, tuples, example in self.con.execute("""
                SELECT i.problem, sum(p.tuples), min(i.ip)
                FROM zts_flow_partial p JOIN zts_ips i ON i.ip = p.src OR i.ip = p.dst
                WHERE p.reason IS NULL AND i.problem IS NOT NULL
                GROUP BY 1 ORDER BY 1""").fetchall():
            blobs.tuples_skipped.add(str(problem), int(tuples), str(example))
        (total, public, unknown_country, services, threats), = self.con.execute("""
            SELECT count(*), count(*) FILTER (WHERE NOT private),
                (SELECT count(*) FROM zts_public WHERE country = '' AND service IS NULL),
                count(*) FILTER (WHERE NOT private AND service IS NOT NULL),
                count(*) FILTER (WHERE NOT private AND threat_type IS NOT NULL)
            FROM zts_ip_info WHERE problem IS NULL""").fetchall()
        report.addresses = {"distinct": int(total), "public": int(public),
                            "azure_service": int(services), "listed_threat": int(threats),
                            "public_without_country": int(unknown_country)}

    # -- exported rows ----------------------------------------------------------------------------

    def ingest_nta(self, nta: Path, nta_ip: Path | None = None) -> IngestReport:
        """Load rows exported from Log Analytics (JSON array of objects, or CSV with a header).
        Without ``nta_ip`` the NTAIpDetails table stays empty (and the report says so)."""
        report = IngestReport(source="nta_export")
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
        return {table: int(self.con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0])  # noqa: S608 - constant identifiers; values are bound
                for table in TABLES}

    def data_range(self) -> tuple[datetime, datetime] | None:
        """The flows' own time range: first FlowStartTime to last FlowEndTime (or start)."""
        (low, high), = self.con.execute(
            f'SELECT min("FlowStartTime"), max(greatest("FlowEndTime", "FlowStartTime")) '  # noqa: S608 - constant identifiers; values are bound
            f'FROM "{NTA_NET_ANALYTICS}"').fetchall()
        if low is None or high is None:
            return None
        return _aware(low), _aware(high)

    def run(self, query: str, window: Window | None = None) -> QueryResult:
        """Execute a KQL query through duckdb-kql; any failure is a failed result, not an
        exception (the service reports it as "could not check"). The query filters on its own
        window; ``window`` is accepted for the :class:`QueryEngine` protocol."""
        del window
        try:
            relation = duckdb_kql.query(self.con, query)
            names = list(relation.columns)
            kinds = [str(t) for t in relation.types]
            raw = relation.fetchall()
        except Exception as err:
            return QueryResult.failed(f"{type(err).__name__}: {err}")
        rows = [{name: _value(value, kind) for name, kind, value in zip(names, kinds, row,
                                                                         strict=True)}
                for row in raw]
        return QueryResult(tuple(names), tuple(rows))


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
