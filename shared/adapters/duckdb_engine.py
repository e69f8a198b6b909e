"""The local analytics engine: NTANetAnalytics / NTAIpDetails-shaped tables in DuckDB, queried
with the same ``.kql`` files as Log Analytics through duckdb-kql.

Two ways in:

* :meth:`LocalEngine.ingest_flow_logs` - a Traffic-Analytics-style enricher over raw VNet flow
  log blobs (:mod:`shared.adapters.flow_log_reader` does the reading). Each distinct address is
  classified once (estate NIC, VNet, private, Azure service, listed threat, country), then every
  aggregated flow is typed (FlowType) and, when an end is public, folded per Traffic Analytics'
  key into ``SrcPublicIps``/``DestPublicIps`` entries as TA writes them. The flows are stored
  once, compactly (``zts_nta``: measures and lookup keys); ``NTANetAnalytics`` is a view over
  them that joins in the per-address, per-NSG and per-port columns - the same columns and types
  as the table, without writing a million copies of the same subscription, subnet and VM names.
* :meth:`LocalEngine.ingest_nta` - rows exported from Log Analytics (JSON array or CSV), cast to
  the table schema; rows that cannot be cast are counted and skipped with the reason.

All heavy work is SQL; Python only prepares the small lookup tables and asks the offline country
database about the distinct public addresses. Query results come back as rows converted column
by column; the blast-radius edges come back already reduced per host pair
(:meth:`LocalEngine.edge_moments`); translations are cached, and several queries may run at once
(``concurrent_queries``), each on its own cursor.
"""

from __future__ import annotations

import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
from shared.analytics.blast_radius import EdgeMoments
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

# The good rows of the partial aggregates merged per flow (the same key can come from several
# blobs), both ends classified. Flows with a public end are few: they are kept here, with their
# FlowType, the public address and its TA entry "ip|started|ended|pkts s>d|pkts d>s|bytes
# s>d|bytes d>s", and folded per public address below. Flows between private (or between
# public) addresses are already one NTANetAnalytics row each and go straight to zts_nta.
_FLOW_AGGREGATES: Final = """
    min(p.enc) AS enc, min(p.flowlog) AS flowlog, min(p.target) AS target,
    coalesce(min(p.first_bd), min(p.first_ms)) AS first_ms,
    coalesce(max(p.last_bd), max(p.last_ms)) AS last_ms,
    sum(p.begun) AS begun, sum(p.refused) AS refused, sum(p.ended) AS ended,
    sum(p.pkts_s2d) AS pkts_s2d, sum(p.bytes_s2d) AS bytes_s2d, sum(p.pkts_d2s) AS pkts_d2s,
    sum(p.bytes_d2s) AS bytes_d2s"""

_FLOW_SOURCE: Final = """
FROM zts_flow_partial p JOIN zts_ip_info s ON s.ip = p.src JOIN zts_ip_info d ON d.ip = p.dst
WHERE p.reason IS NULL AND s.problem IS NULL AND d.problem IS NULL"""

_KEY_COLUMNS: Final = ("interval_ms", "mac", "acl", "rule", "src", "dst", "dport", "proto", "dir",
                       "denied")
_FLOW_KEY: Final = ", ".join(f"p.{c}" for c in _KEY_COLUMNS)

# (the f-strings below only join the constant fragments above; values are always bound)
_PUBLIC_FLOWS_SQL: Final = f"""
CREATE OR REPLACE TABLE zts_public_flows AS
WITH agg AS (
    SELECT {_FLOW_KEY}, CASE WHEN s.private THEN 'dst' ELSE 'src' END AS public_side,
        {_FLOW_AGGREGATES}
    {_FLOW_SOURCE} AND s.private <> d.private
    GROUP BY {_FLOW_KEY}, s.private
), typed AS (
    SELECT a.*, CASE a.public_side WHEN 'src' THEN a.src ELSE a.dst END AS public_ip FROM agg a
)
SELECT t.*,
    CASE WHEN p.threat_type IS NOT NULL THEN 'MaliciousFlow'
         WHEN p.service IS NOT NULL THEN 'AzurePublic'
         ELSE 'ExternalPublic' END AS flow_type,
    CASE WHEN p.threat_type IS NULL AND p.service IS NOT NULL
         THEN '' ELSE coalesce(p.country, '') END AS country,
    CASE WHEN p.threat_type IS NULL AND p.service IS NOT NULL
         THEN p.service_region ELSE '' END AS azure_region,
    t.public_ip || '|' || (t.begun + t.refused) || '|' || t.ended || '|' || t.pkts_s2d
        || '|' || t.pkts_d2s || '|' || t.bytes_s2d || '|' || t.bytes_d2s AS entry
FROM typed t LEFT JOIN zts_public p ON p.ip = t.public_ip
"""  # noqa: S608

# The stored part of NTANetAnalytics, one row per row of the table: what the flows measured and
# the keys of everything looked up (addresses, NSG, port). Columns that are the same for every
# row of an address, an ACL or a port are joined in by the view below, not stored a million
# times. Public flows are folded per (interval, NIC, rule, private end, port, ...) and country,
# their entries concatenated in address order, as Traffic Analytics writes them.
_COUNTERS: Final = """
    sum(CASE WHEN f.dir = 'I' AND NOT f.denied THEN f.begun ELSE 0 END) AS allowed_in,
    sum(CASE WHEN f.dir = 'I' AND f.denied THEN f.refused ELSE 0 END) AS denied_in,
    sum(CASE WHEN f.dir = 'O' AND NOT f.denied THEN f.begun ELSE 0 END) AS allowed_out,
    sum(CASE WHEN f.dir = 'O' AND f.denied THEN f.refused ELSE 0 END) AS denied_out,
    sum(f.ended) AS completed, sum(f.pkts_s2d) AS pkts_s2d, sum(f.pkts_d2s) AS pkts_d2s,
    sum(f.bytes_s2d) AS bytes_s2d, sum(f.bytes_d2s) AS bytes_d2s"""

_DUPLICATE_KEYS: Final = " AND ".join(f"x.{c} IS NOT DISTINCT FROM p.{c}" for c in _KEY_COLUMNS)

# Flows between private (or between public) ends: the partial rows of a key are merged only when
# the key came from several blobs (rare: the key holds the NIC and a 10-minute interval, a blob
# one NIC-hour); every other row passes through without a hash table of long strings.
_NTA_SQL: Final = f"""
CREATE OR REPLACE TABLE zts_nta AS
WITH repeated AS (
    SELECT {_FLOW_KEY} FROM zts_flow_partial p WHERE p.reason IS NULL
    GROUP BY {_FLOW_KEY} HAVING count(*) > 1
), private AS (
    SELECT {_FLOW_KEY}, s.private, s.vnet_id AS s_vnet, d.vnet_id AS d_vnet, p.enc, p.flowlog,
        p.target, coalesce(p.first_bd, p.first_ms) AS first_ms,
        coalesce(p.last_bd, p.last_ms) AS last_ms, p.begun, p.refused, p.ended, p.pkts_s2d,
        p.bytes_s2d, p.pkts_d2s, p.bytes_d2s
    {_FLOW_SOURCE} AND s.private = d.private
        AND NOT EXISTS (SELECT 1 FROM repeated x WHERE {_DUPLICATE_KEYS})
    UNION ALL
    SELECT {_FLOW_KEY}, any_value(s.private), any_value(s.vnet_id), any_value(d.vnet_id),
        {_FLOW_AGGREGATES}
    {_FLOW_SOURCE} AND s.private = d.private
        AND EXISTS (SELECT 1 FROM repeated x WHERE {_DUPLICATE_KEYS})
    GROUP BY {_FLOW_KEY}
)
SELECT f.interval_ms, f.mac, f.acl, f.rule, f.src AS src_key, f.dst AS dst_key, f.dport,
    f.proto, f.dir, f.denied,
    CASE WHEN NOT f.private THEN 'Unknown'
         WHEN f.s_vnet IS NOT NULL AND f.d_vnet IS NOT NULL THEN
             CASE WHEN f.s_vnet = f.d_vnet THEN 'IntraVNet' ELSE 'InterVNet' END
         WHEN f.s_vnet IS NULL AND f.d_vnet IS NULL THEN 'Unknown'
         ELSE 'UnknownPrivate' END AS flow_type,
    '' AS country, '' AS azure_region, coalesce(enc.name, f.enc) AS encryption,
    f.first_ms, f.last_ms, '' AS src_public, '' AS dst_public, f.target, f.flowlog,
    CASE WHEN f.dir = 'I' AND NOT f.denied THEN f.begun ELSE 0 END AS allowed_in,
    CASE WHEN f.dir = 'I' AND f.denied THEN f.refused ELSE 0 END AS denied_in,
    CASE WHEN f.dir = 'O' AND NOT f.denied THEN f.begun ELSE 0 END AS allowed_out,
    CASE WHEN f.dir = 'O' AND f.denied THEN f.refused ELSE 0 END AS denied_out,
    f.ended AS completed, f.pkts_s2d, f.pkts_d2s, f.bytes_s2d, f.bytes_d2s
FROM private f LEFT JOIN zts_encryption enc ON enc.code = f.enc
UNION ALL
SELECT f.interval_ms, f.mac, f.acl, f.rule,
    CASE WHEN f.public_side = 'src' THEN '' ELSE f.src END AS src_key,
    CASE WHEN f.public_side = 'dst' THEN '' ELSE f.dst END AS dst_key,
    f.dport, f.proto, f.dir, f.denied, f.flow_type, f.country, f.azure_region,
    coalesce(enc.name, min(f.enc)) AS encryption,
    min(f.first_ms), max(f.last_ms),
    coalesce(string_agg(f.entry, ' ' ORDER BY f.public_ip)
             FILTER (WHERE f.public_side = 'src'), ''),
    coalesce(string_agg(f.entry, ' ' ORDER BY f.public_ip)
             FILTER (WHERE f.public_side = 'dst'), ''),
    min(f.target), min(f.flowlog), {_COUNTERS}
FROM zts_public_flows f LEFT JOIN zts_encryption enc ON enc.code = f.enc
GROUP BY f.interval_ms, f.mac, f.acl, f.rule, src_key, dst_key, f.dport, f.proto, f.dir,
    f.denied, f.flow_type, f.country, f.azure_region, f.public_side, enc.name
"""  # noqa: S608

#: NTANetAnalytics over zts_nta: every column of the table schema, in order, with its type.
_NET_COLUMNS: Final = {
    "TimeGenerated": "make_timestamp((f.interval_ms + {interval}) * 1000)",
    "TimeProcessed": "make_timestamp((f.interval_ms + {interval}) * 1000)",
    "SubType": "'FlowLog'", "FaSchemaVersion": "'3'",
    "FlowIntervalStartTime": "make_timestamp(f.interval_ms * 1000)",
    "FlowIntervalEndTime": "make_timestamp((f.interval_ms + {interval}) * 1000)",
    "FlowStartTime": "make_timestamp(f.first_ms * 1000)",
    "FlowEndTime": "make_timestamp(f.last_ms * 1000)",
    "FlowType": "f.flow_type", "SrcIp": "f.src_key", "DestIp": "f.dst_key",
    "SrcPublicIps": "f.src_public", "DestPublicIps": "f.dst_public", "DestPort": "f.dport",
    "L4Protocol": "CASE f.proto WHEN 6 THEN 'T' WHEN 17 THEN 'U' WHEN 1 THEN 'I' "
                  "ELSE CAST(f.proto AS VARCHAR) END",
    "L7Protocol": "coalesce(l7.name, 'unknown')",
    "FlowDirection": "CASE f.dir WHEN 'I' THEN 'Inbound' ELSE 'Outbound' END",
    "FlowStatus": "CASE WHEN f.denied THEN 'Denied' ELSE 'Allowed' END",
    "FlowEncryption": "f.encryption",
    "AclGroup": "CASE WHEN lower(f.acl) = 'unspecified' THEN '' "
                "ELSE coalesce(g.acl_group, f.acl) END",
    "AclRule": "CASE WHEN lower(f.rule) = 'unspecified' THEN '' "
               "WHEN starts_with(f.rule, 'DefaultRule_') THEN f.rule[13:] "
               "WHEN starts_with(f.rule, 'UserRule_') THEN f.rule[10:] ELSE f.rule END",
    "NsgRuleType": "CASE WHEN starts_with(f.rule, 'DefaultRule_') THEN 'Default' "
                   "ELSE 'User Defined' END",
    "MacAddress": "f.mac", "TargetResourceId": "coalesce(f.target, '')",
    "TargetResourceType": "CASE WHEN contains(lower(f.target), '/networkinterfaces/') "
                          "THEN 'NetworkInterface' WHEN contains(lower(f.target), '/subnets/') "
                          "THEN 'Subnet' ELSE 'VirtualNetwork' END",
    "FlowLogResourceId": "coalesce(f.flowlog, '')",
    "SrcSubscription": "s.subscription", "DestSubscription": "d.subscription",
    "SrcRegion": "s.region", "DestRegion": "d.region", "SrcNic": "s.nic", "DestNic": "d.nic",
    "SrcVm": "s.vm", "DestVm": "d.vm", "SrcSubnet": "s.subnet", "DestSubnet": "d.subnet",
    "Country": "f.country", "AzureRegion": "f.azure_region",
    "AllowedInFlows": "f.allowed_in", "DeniedInFlows": "f.denied_in",
    "AllowedOutFlows": "f.allowed_out", "DeniedOutFlows": "f.denied_out",
    "CompletedFlows": "f.completed", "PacketsSrcToDest": "f.pkts_s2d",
    "PacketsDestToSrc": "f.pkts_d2s", "BytesSrcToDest": "f.bytes_s2d",
    "BytesDestToSrc": "f.bytes_d2s", "IsFlowCapturedAtUdrHop": "false",
}  # fmt: skip

_NET_JOINS: Final = """
FROM zts_nta f
LEFT JOIN zts_ip_info s ON s.ip = f.src_key AND f.src_key <> ''
LEFT JOIN zts_ip_info d ON d.ip = f.dst_key AND f.dst_key <> ''
LEFT JOIN zts_acl g ON g.guid = lower(f.acl)
LEFT JOIN zts_l7 l7 ON l7.port = f.dport
"""


def _net_view(interval_ms: int) -> str:
    """``CREATE VIEW "NTANetAnalytics"`` over zts_nta, with exactly the table's columns and
    types (so every query, and duckdb-kql's schema, sees the same thing as with a table)."""
    columns = ",\n    ".join(
        f'CAST({_NET_COLUMNS[c.name].format(interval=int(interval_ms))} AS '
        f'{DUCKDB_TYPES[c.kusto_type]}) AS "{c.name}"' for c in NET_ANALYTICS_COLUMNS)
    return f'CREATE VIEW "{NTA_NET_ANALYTICS}" AS SELECT\n    {columns}{_NET_JOINS}'


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
FROM (SELECT DISTINCT interval_ms, public_ip FROM zts_public_flows) f
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
        (active,), = self.con.execute("SELECT current_setting('threads')").fetchall()
        #: queries the analytics service may run at once (see shared.services.analytics): one
        #: per DuckDB thread (a query alone keeps about one and a half cores busy).
        self.concurrent_queries = int(active)
        for table, columns in TABLES.items():
            self.con.execute(_ddl(table, columns))
        _start_warm_up(self.con)

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
        interval_ms = tables.interval_minutes * 60_000
        self.con.execute(_PUBLIC_FLOWS_SQL)
        self.con.execute(_NTA_SQL)
        self._drop_relation(NTA_NET_ANALYTICS)
        self.con.execute(_net_view(interval_ms))
        self._drop_relation(NTA_IP_DETAILS)
        self.con.execute(_ddl(NTA_IP_DETAILS, IP_DETAILS_COLUMNS))
        self.con.execute(f'INSERT INTO "{NTA_IP_DETAILS}" {_IP_DETAILS_SELECT}',
                         {"interval_ms": interval_ms})
        for scratch in (PARTIAL_TABLE, "zts_public_flows", "zts_ips"):
            self.con.execute(f"DROP TABLE IF EXISTS {scratch}")
        report.tables = self.table_counts()
        return report

    def _drop_relation(self, name: str) -> None:
        """Drop the table or view ``name`` (the flow-log ingest makes NTANetAnalytics a view)."""
        kinds = self.con.execute(
            "SELECT 'VIEW' FROM duckdb_views() WHERE view_name = $name AND NOT internal "
            "UNION ALL SELECT 'TABLE' FROM duckdb_tables() WHERE table_name = $name",
            {"name": name}).fetchall()
        for (kind,) in kinds:
            self.con.execute(f'DROP {kind} IF EXISTS "{name}"')

    def _tables_for_export(self) -> None:
        """Plain tables to load exported rows into (replacing a flow-log ingest's view)."""
        for table, columns in TABLES.items():
            self._drop_relation(table)
            self.con.execute(_ddl(table, columns))

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
        window; ``window`` is accepted for the :class:`QueryEngine` protocol. Safe to call from
        several threads at once (each call has a cursor of its own)."""
        del window
        cursor = self.con.cursor()
        try:
            relation = self._relation(cursor, query)
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
        del window
        cursor = self.con.cursor()
        try:
            relation = self._relation(cursor, query).query("zts_edges", _EDGE_MOMENTS_SQL)
            if relation is None:
                raise ValueError("the edge reduction returned no rows")
            reduced = relation.fetchall()
        finally:
            cursor.close()
        return EdgeMoments([(str(src), str(dst), moments) for src, dst, _, moments in reduced
                            if moments], sum(int(n) for _, _, n, _ in reduced))

    @staticmethod
    def _relation(con: duckdb.DuckDBPyConnection, query: str) -> duckdb.DuckDBPyRelation:
        """What ``duckdb_kql.query`` does, with the translation cached (see :func:`_translate`)."""
        con.execute("SET TimeZone='UTC'")
        sql, parameters = _translate(query, duckdb_kql.engine.schema(con))
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

# -- KQL translation ------------------------------------------------------------------------------
#
# duckdb-kql parses with an ANTLR parser written in Python: the first translations in a process
# cost about a second (the parser builds its lookahead tables), later ones a tenth of that. So
# translations are cached per process (keyed by the query text and the tables' columns; a query
# that reads the clock is never cached), and the first engine of a process warms the parser up
# with the bundled queries on a background thread while the flow logs are read. ANTLR's Python
# runtime is not meant for concurrent use: every translation holds _TRANSLATE_LOCK.

_TRANSLATE_LOCK: Final = threading.Lock()
_TRANSLATIONS: OrderedDict[tuple[str, str], str] = OrderedDict()
_TRANSLATIONS_KEPT: Final = 64
_warmed = False


def _translate(query: str, schema: dict[str, list[str]]) -> tuple[str, dict[str, Any]]:
    key = (query, json.dumps(schema, sort_keys=True))
    with _TRANSLATE_LOCK:
        cached = _TRANSLATIONS.get(key)
        if cached is not None:
            _TRANSLATIONS.move_to_end(key)
            return cached, {}
        translated = duckdb_kql.to_sql(query, schema=schema)
    if translated.unbound:  # as duckdb_kql.query refuses it
        raise duckdb_kql.KqlSchemaError(
            ", ".join(translated.unbound),
            hint="declared query parameter with no value and no default")
    parameters = dict(translated.parameters)
    if not parameters:
        with _TRANSLATE_LOCK:
            _TRANSLATIONS[key] = str(translated)
            while len(_TRANSLATIONS) > _TRANSLATIONS_KEPT:
                _TRANSLATIONS.popitem(last=False)
    return str(translated), parameters


def _warm_up(schema: dict[str, list[str]]) -> None:
    """Translate the bundled queries once (results discarded); see above."""
    from shared.adapters.analytics_files import KQL_DIR, load_detections
    from shared.analytics.catalog import render_query
    from shared.analytics.config import AnalyticsConfig

    try:
        catalog, bodies = load_detections()
        start = datetime(2000, 1, 1, tzinfo=UTC)
        window = Window(start, start + timedelta(hours=1))
        texts = [render_query(d, bodies[d.id], AnalyticsConfig(), window, ())
                 for d in catalog.detections]
        observed = KQL_DIR / "observed_flows.kql"
        if observed.is_file():
            texts.append(observed.read_text(encoding="utf-8"))
        for text in texts:
            with _TRANSLATE_LOCK:
                duckdb_kql.to_sql(text, schema=schema)
    except Exception:  # noqa: S110 - only a speed-up: a real translation reports the errors
        pass


def _start_warm_up(con: duckdb.DuckDBPyConnection) -> None:
    global _warmed  # noqa: PLW0603 - once per process
    if _warmed:
        return
    _warmed = True
    schema = duckdb_kql.engine.schema(con)
    threading.Thread(target=_warm_up, args=(schema,), name="zts-kql-warm-up",
                     daemon=True).start()


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
