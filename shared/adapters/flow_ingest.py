"""Raw VNet flow logs -> NTANetAnalytics / NTAIpDetails in DuckDB: the local Traffic-Analytics
style enricher behind :meth:`shared.adapters.duckdb_engine.LocalEngine.ingest_flow_logs`.

Reading. Every blob is first offered to the native scanner (:mod:`shared.adapters.flow_scan`,
when it was built), which aggregates the blobs it takes in C; the blobs it declines, and all of
them without it, are read by the SQL reader (:mod:`shared.adapters.flow_log_reader`), which
judges odd input (skips with reasons, counts and examples). Both aggregate by the Traffic
Analytics key: interval, NIC (MAC), ACL, rule, source, destination, destination port,
protocol, direction and allowed/denied.

One table of flows. Whatever read them, flows land in ``zts_flow``, one row per key, with
integer keys: addresses as IPv4 numbers and the texts (MAC, ACL id, rule, encryption, flow log
and target ids) as ids into ``zts_strings``. The native flows are scanned in place through the
Arrow C stream; the SQL reader's rows are mapped onto the same ids and, when there are any,
merged with the native ones by key (the same key can come from several blobs). An address is
shown in its canonical dotted form (``010.0.0.1`` and ``10.0.0.1`` are one address).

Enrichment. Each distinct address is classified once (estate NIC, VNet, private, Azure
service, listed threat, country), then every flow is typed (FlowType) and, when an end is
public, folded per Traffic Analytics' key into ``SrcPublicIps``/``DestPublicIps`` entries as TA
writes them. The flows are stored once, compactly (``zts_nta``: measures and integer keys);
``NTANetAnalytics`` is a view over them that joins in the per-address, per-string and
per-port columns - the same columns and types as the table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import duckdb

from shared.adapters import flow_scan
from shared.adapters.flow_log_reader import (
    MAX_COUNTER,
    MAX_EPOCH_MS,
    MIN_EPOCH_MS,
    PARTIAL_TABLE,
    BlobReport,
    FlowLogReader,
    Skips,
    list_blobs,
)
from shared.analytics.enrichment import (
    L7_PROTOCOLS,
    EnrichmentTables,
    HostRow,
    ip_int,
    private_ranges,
)
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

_ENCRYPTION: Final = {
    "X": "Encrypted", "NX": "Unencrypted", "NX_HW_NOT_SUPPORTED": "Unsupported hardware",
    "NX_SW_NOT_READY": "Software not ready", "NX_NOT_ACCEPTED": "Drop due to no encryption",
    "NX_NOT_SUPPORTED": "Discovery not supported", "NX_LOCAL_DST": "Destination on same host",
    "NX_FALLBACK": "Fall back to no encryption",
}  # fmt: skip

NATIVE_FLOWS: Final = "zts_flow_native"  # the native FlowTable, registered on the connection

# -- the SQL reader's rows, onto the flows' integer keys ------------------------------------------

# The SQL reader's distinct addresses, parsed to integers (IPv4) or given a problem (the names
# are flow_scan.ADDRESS_PROBLEMS: the native scanner counts the same tuples the same way).
_RAW_IPS_SQL: Final = """
CREATE OR REPLACE TABLE zts_raw_ips AS
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
         WHEN contains(ip, ':') THEN $ipv6
         ELSE $bad END AS problem
FROM octets
"""

# Tuples skipped for an address: counted once each, under the source's problem when it has one
# (else the destination's), with the smallest offending address as the example.
_ADDRESS_PROBLEMS_SQL: Final = """
SELECT coalesce(s.problem, d.problem) AS problem, sum(p.tuples),
    min(CASE WHEN s.problem IS NOT NULL THEN s.ip ELSE d.ip END)
FROM zts_flow_partial p JOIN zts_raw_ips s ON s.ip = p.src JOIN zts_raw_ips d ON d.ip = p.dst
WHERE p.reason IS NULL AND (s.problem IS NOT NULL OR d.problem IS NOT NULL)
GROUP BY 1 ORDER BY 1
"""

# Texts only the SQL reader saw get ids after the native scanner's.
_SQL_STRINGS_SQL: Final = """
INSERT INTO zts_str
SELECT CAST((SELECT count(*) FROM zts_str) + row_number() OVER (ORDER BY s) - 1 AS INTEGER), s
FROM (SELECT DISTINCT s FROM (
        SELECT unnest([mac, acl, rule, enc, flowlog, target]) AS s
        FROM zts_flow_partial WHERE reason IS NULL)
      WHERE s IS NOT NULL AND s NOT IN (SELECT s FROM zts_str))
"""

# Every text once, with its byte order (``ord``: the smallest of several is the one kept, as
# min() over VARCHAR keeps it) and what the view shows for it in each role.
_STRINGS_SQL: Final = """
CREATE OR REPLACE TABLE zts_strings AS
SELECT t.id, t.s, row_number() OVER (ORDER BY t.s) AS ord,
    CASE WHEN lower(t.s) = 'unspecified' THEN '' ELSE coalesce(g.acl_group, t.s) END AS acl_group,
    CASE WHEN lower(t.s) = 'unspecified' THEN ''
         WHEN starts_with(t.s, 'DefaultRule_') THEN t.s[13:]
         WHEN starts_with(t.s, 'UserRule_') THEN t.s[10:] ELSE t.s END AS acl_rule,
    CASE WHEN starts_with(t.s, 'DefaultRule_') THEN 'Default' ELSE 'User Defined' END
        AS rule_type,
    CASE WHEN contains(lower(t.s), '/networkinterfaces/') THEN 'NetworkInterface'
         WHEN contains(lower(t.s), '/subnets/') THEN 'Subnet'
         ELSE 'VirtualNetwork' END AS target_type,
    e.name AS enc_name, coalesce(e.name, t.s) AS encryption
FROM zts_str t
LEFT JOIN zts_acl g ON g.guid = lower(t.s)
LEFT JOIN zts_encryption e ON e.code = t.s
"""

_SQL_FLOWS_SQL: Final = """
CREATE OR REPLACE TABLE zts_flow_sql AS
SELECT p.interval_ms, m.id AS mac, a.id AS acl, r.id AS rule, si.n AS src, di.n AS dst,
    p.dport, p.proto, CAST(p.dir = 'I' AS TINYINT) AS inbound,
    CAST(p.denied AS TINYINT) AS denied, e.id AS enc, fl.id AS flowlog, t.id AS target,
    p.first_ms, p.last_ms, p.first_bd, p.last_bd, p.begun, p.refused, p.ended, p.pkts_s2d,
    p.bytes_s2d, p.pkts_d2s, p.bytes_d2s, p.tuples
FROM zts_flow_partial p
JOIN zts_raw_ips si ON si.ip = p.src AND si.problem IS NULL
JOIN zts_raw_ips di ON di.ip = p.dst AND di.problem IS NULL
LEFT JOIN zts_str m ON m.s = p.mac
LEFT JOIN zts_str a ON a.s = p.acl
LEFT JOIN zts_str r ON r.s = p.rule
LEFT JOIN zts_str e ON e.s = p.enc
LEFT JOIN zts_str fl ON fl.s = p.flowlog
LEFT JOIN zts_str t ON t.s = p.target
WHERE p.reason IS NULL
"""

_KEY: Final = ("u.interval_ms, u.mac, u.acl, u.rule, u.src, u.dst, u.dport, u.proto, u.inbound, "
               "u.denied")

# Rows of the same key (from several blobs, or from both readers) merged into one.
_MERGED_FLOWS_SQL: Final = f"""
CREATE OR REPLACE TABLE zts_flow AS
SELECT {_KEY},
    arg_min(u.enc, e.ord) AS enc, arg_min(u.flowlog, fl.ord) AS flowlog,
    arg_min(u.target, t.ord) AS target,
    min(u.first_ms) AS first_ms, max(u.last_ms) AS last_ms,
    min(u.first_bd) AS first_bd, max(u.last_bd) AS last_bd,
    CAST(sum(u.begun) AS BIGINT) AS begun, CAST(sum(u.refused) AS BIGINT) AS refused,
    CAST(sum(u.ended) AS BIGINT) AS ended,
    -- packet and byte sums stop at the largest BIGINT, as both readers' do
    CAST(least(sum(u.pkts_s2d), {MAX_COUNTER}) AS BIGINT) AS pkts_s2d,
    CAST(least(sum(u.bytes_s2d), {MAX_COUNTER}) AS BIGINT) AS bytes_s2d,
    CAST(least(sum(u.pkts_d2s), {MAX_COUNTER}) AS BIGINT) AS pkts_d2s,
    CAST(least(sum(u.bytes_d2s), {MAX_COUNTER}) AS BIGINT) AS bytes_d2s,
    CAST(sum(u.tuples) AS BIGINT) AS tuples
FROM ({{sources}}) u
LEFT JOIN zts_strings e ON e.id = u.enc
LEFT JOIN zts_strings fl ON fl.id = u.flowlog
LEFT JOIN zts_strings t ON t.id = u.target
GROUP BY {_KEY}
"""

_EMPTY_FLOWS_SQL: Final = """
CREATE OR REPLACE TABLE zts_flow (interval_ms BIGINT, mac INTEGER, acl INTEGER, rule INTEGER,
    src BIGINT, dst BIGINT, dport INTEGER, proto INTEGER, inbound TINYINT, denied TINYINT,
    enc INTEGER, flowlog INTEGER, target INTEGER, first_ms BIGINT, last_ms BIGINT,
    first_bd BIGINT, last_bd BIGINT, begun BIGINT, refused BIGINT, ended BIGINT,
    pkts_s2d BIGINT, bytes_s2d BIGINT, pkts_d2s BIGINT, bytes_d2s BIGINT, tuples BIGINT)
"""

_SATURATED_SQL: Final = f"""
SELECT count(*) FROM zts_flow
WHERE greatest(pkts_s2d, bytes_s2d, pkts_d2s, bytes_d2s) = {MAX_COUNTER}
"""  # noqa: S608 - a constant

# -- enrichment -----------------------------------------------------------------------------------

_IPS_SQL: Final = """
CREATE OR REPLACE TABLE zts_ips AS
SELECT n, CAST(n // 16777216 AS VARCHAR) || '.' || CAST(n // 65536 % 256 AS VARCHAR) || '.'
    || CAST(n // 256 % 256 AS VARCHAR) || '.' || CAST(n % 256 AS VARCHAR) AS ip
FROM (SELECT src AS n FROM zts_flow UNION SELECT dst FROM zts_flow)
"""

# One row per address: where it lives (estate NIC, VNet), whether it is private, and what the
# public ones are (Azure service, listed threat, country override). Range lookups use the most
# specific match (smallest VNet prefix, lowest rank).
_INFO_SQL: Final = """
CREATE OR REPLACE TABLE zts_ip_info AS
WITH vnet AS (
    SELECT i.n, arg_min(v.vnet_id, v.size) AS vnet_id, arg_min(v.subscription, v.size) AS sub,
        arg_min(v.region, v.size) AS region
    FROM zts_ips i JOIN zts_vnets v ON i.n BETWEEN v.lo AND v.hi GROUP BY i.n
), private AS (
    SELECT DISTINCT i.n FROM zts_ips i JOIN zts_private p ON i.n BETWEEN p.lo AND p.hi
), service AS (
    SELECT i.n, arg_min(s.service, s.rank) AS service, arg_min(s.region, s.rank) AS region
    FROM zts_ips i JOIN zts_services s ON i.n BETWEEN s.lo AND s.hi GROUP BY i.n
), threat AS (
    SELECT i.n, arg_min(t.threat_type, t.rank) AS threat_type,
        arg_min(t.description, t.rank) AS description
    FROM zts_ips i JOIN zts_threats t ON i.n BETWEEN t.lo AND t.hi GROUP BY i.n
), override AS (
    SELECT i.n, arg_min(c.country, c.rank) AS country
    FROM zts_ips i JOIN zts_country_overrides c ON i.n BETWEEN c.lo AND c.hi GROUP BY i.n
)
SELECT i.n, i.ip,
    coalesce(h.nic, '') AS nic, coalesce(h.vm, '') AS vm, coalesce(h.subnet, '') AS subnet,
    coalesce(h.vnet_id, v.vnet_id) AS vnet_id,
    coalesce(h.subscription, v.sub, '') AS subscription,
    coalesce(h.region, v.region, '') AS region,
    (h.n IS NOT NULL OR v.n IS NOT NULL OR p.n IS NOT NULL) AS private,
    s.service, coalesce(s.region, '') AS service_region, t.threat_type,
    coalesce(t.description, '') AS threat_description, o.country AS override_country
FROM zts_ips i
LEFT JOIN zts_hosts h ON h.n = i.n
LEFT JOIN vnet v ON v.n = i.n
LEFT JOIN private p ON p.n = i.n
LEFT JOIN service s ON s.n = i.n
LEFT JOIN threat t ON t.n = i.n
LEFT JOIN override o ON o.n = i.n
"""

_PUBLIC_SQL: Final = """
CREATE OR REPLACE TABLE zts_public AS
SELECT i.n, i.ip, i.service, i.service_region, i.threat_type, i.threat_description,
    coalesce(nullif(i.override_country, ''), nullif(c.country, ''), '') AS country
FROM zts_ip_info i LEFT JOIN zts_ip_country c ON c.ip = i.ip
WHERE NOT i.private
"""

# Flows with one public end are few: kept here with their FlowType, the public address and its
# TA entry "ip|started|ended|pkts s>d|pkts d>s|bytes s>d|bytes d>s", folded per public address
# below. Flows between private (or between public) addresses are one NTANetAnalytics row each.
_PUBLIC_FLOWS_SQL: Final = """
CREATE OR REPLACE TABLE zts_public_flows AS
WITH f AS (
    SELECT f.*, CASE WHEN s.private THEN 'dst' ELSE 'src' END AS public_side,
        CASE WHEN s.private THEN f.dst ELSE f.src END AS public_n,
        CASE WHEN s.private THEN d.ip ELSE s.ip END AS public_ip
    FROM zts_flow f JOIN zts_ip_info s ON s.n = f.src JOIN zts_ip_info d ON d.n = f.dst
    WHERE s.private <> d.private
)
SELECT f.interval_ms, f.mac, f.acl, f.rule, f.src, f.dst, f.dport, f.proto, f.inbound, f.denied,
    f.public_side, f.public_n, f.public_ip, f.enc, f.flowlog, f.target,
    coalesce(f.first_bd, f.first_ms) AS first_ms, coalesce(f.last_bd, f.last_ms) AS last_ms,
    f.begun, f.refused, f.ended, f.pkts_s2d, f.bytes_s2d, f.pkts_d2s, f.bytes_d2s,
    CASE WHEN p.threat_type IS NOT NULL THEN 'MaliciousFlow'
         WHEN p.service IS NOT NULL THEN 'AzurePublic'
         ELSE 'ExternalPublic' END AS flow_type,
    CASE WHEN p.threat_type IS NULL AND p.service IS NOT NULL
         THEN '' ELSE coalesce(p.country, '') END AS country,
    CASE WHEN p.threat_type IS NULL AND p.service IS NOT NULL
         THEN p.service_region ELSE '' END AS azure_region,
    f.public_ip || '|' || (f.begun + f.refused) || '|' || f.ended || '|' || f.pkts_s2d
        || '|' || f.pkts_d2s || '|' || f.bytes_s2d || '|' || f.bytes_d2s AS entry
FROM f LEFT JOIN zts_public p ON p.n = f.public_n
"""

_COUNTERS: Final = f"""
    sum(CASE WHEN f.inbound = 1 AND f.denied = 0 THEN f.begun ELSE 0 END) AS allowed_in,
    sum(CASE WHEN f.inbound = 1 AND f.denied = 1 THEN f.refused ELSE 0 END) AS denied_in,
    sum(CASE WHEN f.inbound = 0 AND f.denied = 0 THEN f.begun ELSE 0 END) AS allowed_out,
    sum(CASE WHEN f.inbound = 0 AND f.denied = 1 THEN f.refused ELSE 0 END) AS denied_out,
    sum(f.ended) AS completed, least(sum(f.pkts_s2d), {MAX_COUNTER}) AS pkts_s2d,
    least(sum(f.pkts_d2s), {MAX_COUNTER}) AS pkts_d2s,
    least(sum(f.bytes_s2d), {MAX_COUNTER}) AS bytes_s2d,
    least(sum(f.bytes_d2s), {MAX_COUNTER}) AS bytes_d2s"""

# The stored part of NTANetAnalytics, one row per row of the table: what the flows measured and
# the keys of everything looked up. Public flows are folded per (interval, NIC, rule, private
# end, port, ...) and country, their entries concatenated in address order, as TA writes them.
_NTA_SQL: Final = f"""
CREATE OR REPLACE TABLE zts_nta AS
SELECT f.interval_ms, f.mac, f.acl, f.rule, f.src AS src_key, f.dst AS dst_key, f.dport,
    f.proto, f.inbound, f.denied,
    CASE WHEN NOT s.private THEN 'Unknown'
         WHEN s.vnet_id IS NOT NULL AND d.vnet_id IS NOT NULL THEN
             CASE WHEN s.vnet_id = d.vnet_id THEN 'IntraVNet' ELSE 'InterVNet' END
         WHEN s.vnet_id IS NULL AND d.vnet_id IS NULL THEN 'Unknown'
         ELSE 'UnknownPrivate' END AS flow_type,
    '' AS country, '' AS azure_region, e.encryption,
    coalesce(f.first_bd, f.first_ms) AS first_ms, coalesce(f.last_bd, f.last_ms) AS last_ms,
    '' AS src_public, '' AS dst_public, f.target, f.flowlog,
    CASE WHEN f.inbound = 1 AND f.denied = 0 THEN f.begun ELSE 0 END AS allowed_in,
    CASE WHEN f.inbound = 1 AND f.denied = 1 THEN f.refused ELSE 0 END AS denied_in,
    CASE WHEN f.inbound = 0 AND f.denied = 0 THEN f.begun ELSE 0 END AS allowed_out,
    CASE WHEN f.inbound = 0 AND f.denied = 1 THEN f.refused ELSE 0 END AS denied_out,
    f.ended AS completed, f.pkts_s2d, f.pkts_d2s, f.bytes_s2d, f.bytes_d2s
FROM zts_flow f JOIN zts_ip_info s ON s.n = f.src JOIN zts_ip_info d ON d.n = f.dst
LEFT JOIN zts_strings e ON e.id = f.enc
WHERE s.private = d.private
UNION ALL
SELECT f.interval_ms, f.mac, f.acl, f.rule,
    CASE WHEN f.public_side = 'src' THEN NULL ELSE f.src END AS src_key,
    CASE WHEN f.public_side = 'dst' THEN NULL ELSE f.dst END AS dst_key,
    f.dport, f.proto, f.inbound, f.denied, f.flow_type, f.country, f.azure_region,
    coalesce(e.enc_name, min(e.s)) AS encryption,
    min(f.first_ms), max(f.last_ms),
    coalesce(string_agg(f.entry, ' ' ORDER BY f.public_ip)
             FILTER (WHERE f.public_side = 'src'), ''),
    coalesce(string_agg(f.entry, ' ' ORDER BY f.public_ip)
             FILTER (WHERE f.public_side = 'dst'), ''),
    arg_min(f.target, t.ord), arg_min(f.flowlog, fl.ord), {_COUNTERS}
FROM zts_public_flows f
LEFT JOIN zts_strings e ON e.id = f.enc
LEFT JOIN zts_strings t ON t.id = f.target
LEFT JOIN zts_strings fl ON fl.id = f.flowlog
GROUP BY f.interval_ms, f.mac, f.acl, f.rule, src_key, dst_key, f.dport, f.proto, f.inbound,
    f.denied, f.flow_type, f.country, f.azure_region, f.public_side, e.enc_name
"""

#: NTANetAnalytics over zts_nta: every column of the table schema, in order, with its type.
_NET_COLUMNS: Final = {
    "TimeGenerated": "make_timestamp((f.interval_ms + {interval}) * 1000)",
    "TimeProcessed": "make_timestamp((f.interval_ms + {interval}) * 1000)",
    "SubType": "'FlowLog'", "FaSchemaVersion": "'3'",
    "FlowIntervalStartTime": "make_timestamp(f.interval_ms * 1000)",
    "FlowIntervalEndTime": "make_timestamp((f.interval_ms + {interval}) * 1000)",
    "FlowStartTime": "make_timestamp(f.first_ms * 1000)",
    "FlowEndTime": "make_timestamp(f.last_ms * 1000)",
    "FlowType": "f.flow_type", "SrcIp": "coalesce(s.ip, '')", "DestIp": "coalesce(d.ip, '')",
    "SrcPublicIps": "f.src_public", "DestPublicIps": "f.dst_public", "DestPort": "f.dport",
    "L4Protocol": "CASE f.proto WHEN 6 THEN 'T' WHEN 17 THEN 'U' WHEN 1 THEN 'I' "
                  "ELSE CAST(f.proto AS VARCHAR) END",
    "L7Protocol": "coalesce(l7.name, 'unknown')",
    "FlowDirection": "CASE f.inbound WHEN 1 THEN 'Inbound' ELSE 'Outbound' END",
    "FlowStatus": "CASE WHEN f.denied = 1 THEN 'Denied' ELSE 'Allowed' END",
    "FlowEncryption": "f.encryption",
    "AclGroup": "a.acl_group", "AclRule": "r.acl_rule",
    "NsgRuleType": "coalesce(r.rule_type, 'User Defined')",
    "MacAddress": "m.s", "TargetResourceId": "coalesce(t.s, '')",
    "TargetResourceType": "coalesce(t.target_type, 'VirtualNetwork')",
    "FlowLogResourceId": "coalesce(fl.s, '')",
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
LEFT JOIN zts_ip_info s ON s.n = f.src_key
LEFT JOIN zts_ip_info d ON d.n = f.dst_key
LEFT JOIN zts_strings m ON m.id = f.mac
LEFT JOIN zts_strings a ON a.id = f.acl
LEFT JOIN zts_strings r ON r.id = f.rule
LEFT JOIN zts_strings t ON t.id = f.target
LEFT JOIN zts_strings fl ON fl.id = f.flowlog
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
FROM (SELECT DISTINCT interval_ms, public_n, public_ip FROM zts_public_flows) f
JOIN zts_public p ON p.n = f.public_n
"""

_SCRATCH: Final = (PARTIAL_TABLE, "zts_flow_sql", "zts_flow", "zts_raw_ips", "zts_str",
                   "zts_public_flows", "zts_ips")


@dataclass
class IngestReport:
    """What an ingest read and built (JSON-ready through :meth:`as_dict`)."""

    source: str
    blobs: BlobReport | None = None
    rows_read: int = 0
    rows_skipped: Skips = field(default_factory=Skips)
    addresses: dict[str, int] = field(default_factory=dict)
    tables: dict[str, int] = field(default_factory=dict)
    reader: dict[str, Any] = field(default_factory=dict)
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
        if self.reader:
            out["reader"] = dict(self.reader)
        if self.notes:
            out["notes"] = list(self.notes)
        return out


def ddl(name: str, columns: Sequence[Column]) -> str:
    body = ", ".join(f'"{c.name}" {DUCKDB_TYPES[c.kusto_type]}' for c in columns)
    return f'CREATE OR REPLACE TABLE "{name}" ({body})'


def table_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    return {table: int(con.execute(f'SELECT count(*) FROM "{table}"').fetchall()[0][0])  # noqa: S608 - constant identifiers
            for table in TABLES}


def drop_relation(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """Drop the table or view ``name`` (the flow-log ingest makes NTANetAnalytics a view)."""
    kinds = con.execute(
        "SELECT 'VIEW' FROM duckdb_views() WHERE view_name = $name AND NOT internal "
        "UNION ALL SELECT 'TABLE' FROM duckdb_tables() WHERE table_name = $name",
        {"name": name}).fetchall()
    for (kind,) in kinds:
        con.execute(f'DROP {kind} IF EXISTS "{name}"')


def load(con: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str],
         rows: Sequence[Sequence[Any]]) -> None:
    """Create ``table`` from Python rows in one statement (a list parameter per column)."""
    names = [c.split()[0] for c in columns]
    values = [[row[i] for row in rows] for i in range(len(columns))]
    select = ", ".join(f"unnest(${i + 1}::{c.split()[1]}[]) AS {n}"
                       for i, (n, c) in enumerate(zip(names, columns, strict=True)))
    con.execute(f"CREATE OR REPLACE TABLE {table} ({', '.join(columns)})")
    if rows:
        con.execute(f"INSERT INTO {table} SELECT {select}", values)


class FlowLogIngest:
    """One ingest of a folder of blobs into the connection's NTA tables."""

    def __init__(self, con: duckdb.DuckDBPyConnection, tables: EnrichmentTables,
                 countries: CountryLookup, *, batch_bytes: int, native: bool) -> None:
        self.con = con
        self.tables = tables
        self.countries = countries
        self.batch_bytes = batch_bytes
        self.native = native and flow_scan.available()
        self.interval_ms = tables.interval_minutes * 60_000

    def run(self, root: Path, on_listed: Callable[[], None] | None = None) -> IngestReport:
        """Read ``root`` and build the tables; ``on_listed`` is called once the blobs are
        listed, before they are read."""
        if not root.is_dir():
            raise FileNotFoundError(f"flow log folder {root} does not exist")
        blobs = list_blobs(root)
        if on_listed is not None:
            on_listed()
        found = BlobReport(blobs_found=len(blobs))
        report = IngestReport(source="flow_logs", blobs=found)
        reader = FlowLogReader(self.con, self.tables.interval_minutes, self.batch_bytes)
        self.con.execute(f"DROP TABLE IF EXISTS {PARTIAL_TABLE}")
        scan: flow_scan.NativeScan | None = None
        by_sql: Sequence[int] = range(len(blobs))
        if self.native and blobs:
            scan = flow_scan.scan(blobs, interval_ms=self.interval_ms, min_ms=MIN_EPOCH_MS,
                                  max_ms=MAX_EPOCH_MS, workers=reader.workers)
            by_sql = scan.declined
            found.bytes_read += scan.bytes
            found.records_read += scan.records
            found.tuples_read += scan.tuples
        reader.read_some(root, blobs, by_sql, found)
        report.reader = self._reader_stats(scan, len(by_sql))
        self._load_lookups()
        try:
            self._flows(scan, found)
            (saturated,), = self.con.execute(_SATURATED_SQL).fetchall()
            if saturated:
                report.notes.append(f"{saturated} flows have a packet or byte count that reached "
                                    "2^63 - 1 and was kept there (the real count is at least that)")
            self._enrich(report)
        finally:
            for scratch in _SCRATCH:
                drop_relation(self.con, scratch)
            if scan is not None:
                self.con.unregister(NATIVE_FLOWS)
        # NTANetAnalytics has one row per row of zts_nta (its joins are on unique keys)
        (nta_rows,), = self.con.execute("SELECT count(*) FROM zts_nta").fetchall()
        (ip_rows,), = self.con.execute(f'SELECT count(*) FROM "{NTA_IP_DETAILS}"').fetchall()  # noqa: S608 - constant identifiers
        report.tables = {NTA_NET_ANALYTICS: int(nta_rows), NTA_IP_DETAILS: int(ip_rows)}
        return report

    @staticmethod
    def _reader_stats(scan: flow_scan.NativeScan | None, by_sql: int) -> dict[str, Any]:
        stats: dict[str, Any] = {"native_available": flow_scan.available(),
                                 "native_blobs": scan.blobs if scan else 0, "sql_blobs": by_sql}
        if scan is not None and scan.decline_reasons:
            stats["declined"] = dict(sorted(scan.decline_reasons.items()))
        return stats

    # -- one table of flows --------------------------------------------------------------------

    def _flows(self, scan: flow_scan.NativeScan | None, found: BlobReport) -> None:
        con = self.con
        load(con, "zts_str", ("id INTEGER", "s VARCHAR"),
             list(enumerate(scan.strings)) if scan is not None else [])
        con.execute(_RAW_IPS_SQL, {"ipv6": flow_scan.ADDRESS_PROBLEMS[0],
                                   "bad": flow_scan.ADDRESS_PROBLEMS[1]})
        problems: dict[str, tuple[int, str]] = {}
        for problem, tuples, example in [*con.execute(_ADDRESS_PROBLEMS_SQL).fetchall(),
                                         *(scan.address_problems if scan else [])]:
            count, smallest = problems.get(str(problem), (0, str(example)))
            problems[str(problem)] = (count + int(tuples), min(smallest, str(example)))
        for problem, (count, example) in sorted(problems.items()):
            found.tuples_skipped.add(problem, count, example)
        (sql_rows,), = con.execute(
            f"SELECT count(*) FROM {PARTIAL_TABLE} WHERE reason IS NULL").fetchall()  # noqa: S608 - constant identifiers
        if sql_rows:
            con.execute(_SQL_STRINGS_SQL)
        con.execute(_STRINGS_SQL)
        if scan is not None:
            con.register(NATIVE_FLOWS, scan.flows)
        if sql_rows:
            con.execute(_SQL_FLOWS_SQL)
            sources = "SELECT * FROM zts_flow_sql"
            if scan is not None:
                sources = f"SELECT * FROM {NATIVE_FLOWS} UNION ALL BY NAME {sources}"  # noqa: S608 - constant identifiers
            con.execute(_MERGED_FLOWS_SQL.format(sources=sources))
        elif scan is not None:
            # a copy, not a view: DuckDB copies the Arrow buffers in a blink (60 ms for a
            # million flows), while joining straight off the stream is several times slower
            con.execute(f"CREATE OR REPLACE TABLE zts_flow AS SELECT * FROM {NATIVE_FLOWS}")  # noqa: S608 - constant identifiers
        else:
            con.execute(_EMPTY_FLOWS_SQL)

    # -- enrichment ----------------------------------------------------------------------------

    def _load_lookups(self) -> None:
        con, tables = self.con, self.tables
        hosts: dict[str, HostRow] = {}
        for host in tables.hosts:  # overlapping VNets: the first row per address wins
            hosts.setdefault(host.ip, host)
        load(con, "zts_hosts", ("n BIGINT", "nic VARCHAR", "vm VARCHAR", "subnet VARCHAR",
                                "vnet_id VARCHAR", "subscription VARCHAR", "region VARCHAR"),
             [(ip_int(h.ip), *h[1:]) for h in hosts.values()])
        load(con, "zts_vnets", ("lo BIGINT", "hi BIGINT", "vnet_id VARCHAR",
                                "subscription VARCHAR", "region VARCHAR", "size BIGINT"),
             tables.vnets)
        load(con, "zts_private", ("lo BIGINT", "hi BIGINT"), private_ranges())
        load(con, "zts_services", ("lo BIGINT", "hi BIGINT", "tag VARCHAR", "service VARCHAR",
                                   "region VARCHAR", "rank BIGINT"), tables.services)
        load(con, "zts_threats", ("lo BIGINT", "hi BIGINT", "threat_type VARCHAR",
                                  "description VARCHAR", "rank BIGINT"), tables.threats)
        load(con, "zts_country_overrides", ("lo BIGINT", "hi BIGINT", "country VARCHAR",
                                            "rank BIGINT"), tables.countries)
        load(con, "zts_acl", ("guid VARCHAR", "acl_group VARCHAR"),
             sorted(tables.acl_groups.items()))
        load(con, "zts_l7", ("port INTEGER", "name VARCHAR"), sorted(L7_PROTOCOLS.items()))
        load(con, "zts_encryption", ("code VARCHAR", "name VARCHAR"),
             sorted(_ENCRYPTION.items()))

    def _enrich(self, report: IngestReport) -> None:
        con = self.con
        con.execute(_IPS_SQL)
        self._lookup_countries()
        con.execute(_INFO_SQL)
        con.execute(_PUBLIC_SQL)
        report.addresses = self._address_stats()
        con.execute(_PUBLIC_FLOWS_SQL)
        con.execute(_NTA_SQL)
        drop_relation(con, NTA_NET_ANALYTICS)
        con.execute(_net_view(self.interval_ms))
        drop_relation(con, NTA_IP_DETAILS)
        con.execute(ddl(NTA_IP_DETAILS, IP_DETAILS_COLUMNS))
        con.execute(f'INSERT INTO "{NTA_IP_DETAILS}" {_IP_DETAILS_SELECT}',
                    {"interval_ms": self.interval_ms})

    def _lookup_countries(self) -> None:
        """Ask the offline country database about every public address (once each)."""
        public = [ip for (ip,) in self.con.execute(
            "SELECT i.ip FROM zts_ips i WHERE NOT EXISTS ("
            " SELECT 1 FROM zts_private p WHERE i.n BETWEEN p.lo AND p.hi) AND NOT EXISTS ("
            " SELECT 1 FROM zts_vnets v WHERE i.n BETWEEN v.lo AND v.hi) ORDER BY i.ip"
        ).fetchall()]
        found = list(self.countries(public)) if public else []
        load(self.con, "zts_ip_country", ("ip VARCHAR", "country VARCHAR"),
             [(ip, cc or "") for ip, cc in zip(public, found, strict=True)])

    def _address_stats(self) -> dict[str, int]:
        (total, public, unknown_country, services, threats), = self.con.execute("""
            SELECT count(*), count(*) FILTER (WHERE NOT private),
                (SELECT count(*) FROM zts_public WHERE country = '' AND service IS NULL),
                count(*) FILTER (WHERE NOT private AND service IS NOT NULL),
                count(*) FILTER (WHERE NOT private AND threat_type IS NOT NULL)
            FROM zts_ip_info""").fetchall()
        return {"distinct": int(total), "public": int(public), "azure_service": int(services),
                "listed_threat": int(threats), "public_without_country": int(unknown_country)}
