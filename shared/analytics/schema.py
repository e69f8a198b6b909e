"""The Traffic Analytics table shapes zts reads and (locally) writes.

Column names and Kusto types follow the NTANetAnalytics / NTAIpDetails table references
(reference/azure-formats.md, 1.2 and 1.5). One definition serves every consumer, so the local
enricher, the loader of exported rows, the KQL type-checker and the Log Analytics fake cannot
drift apart: a query that type-checks here runs against the same columns everywhere.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final, NamedTuple


class Column(NamedTuple):
    """A table column: its name and its Kusto type (string, long, int, datetime, bool, real)."""

    name: str
    kusto_type: str


def _columns(spec: str) -> tuple[Column, ...]:
    out = []
    for item in spec.split(","):
        name, _, kusto_type = item.strip().partition(":")
        out.append(Column(name, kusto_type))
    return tuple(out)


NTA_NET_ANALYTICS: Final = "NTANetAnalytics"
NTA_IP_DETAILS: Final = "NTAIpDetails"

#: NTANetAnalytics columns zts fills locally (a subset of the reference; exported rows may carry
#: more, which the loader ignores, and may lack some, which it fills with empty values).
NET_ANALYTICS_COLUMNS: Final = _columns(
    "TimeGenerated:datetime, TimeProcessed:datetime, SubType:string, FaSchemaVersion:string,"
    "FlowIntervalStartTime:datetime, FlowIntervalEndTime:datetime, FlowStartTime:datetime,"
    "FlowEndTime:datetime, FlowType:string, SrcIp:string, DestIp:string, SrcPublicIps:string,"
    "DestPublicIps:string, DestPort:int, L4Protocol:string, L7Protocol:string,"
    "FlowDirection:string, FlowStatus:string, FlowEncryption:string, AclGroup:string,"
    "AclRule:string, NsgRuleType:string, MacAddress:string, TargetResourceId:string,"
    "TargetResourceType:string, FlowLogResourceId:string, SrcSubscription:string,"
    "DestSubscription:string, SrcRegion:string, DestRegion:string, SrcNic:string,"
    "DestNic:string, SrcVm:string, DestVm:string, SrcSubnet:string, DestSubnet:string,"
    "Country:string, AzureRegion:string, AllowedInFlows:long, DeniedInFlows:long,"
    "AllowedOutFlows:long, DeniedOutFlows:long, CompletedFlows:long, PacketsSrcToDest:long,"
    "PacketsDestToSrc:long, BytesSrcToDest:long, BytesDestToSrc:long,"
    "IsFlowCapturedAtUdrHop:bool"
)

IP_DETAILS_COLUMNS: Final = _columns(
    "TimeGenerated:datetime, SubType:string, FaSchemaVersion:string,"
    "FlowIntervalStartTime:datetime, FlowIntervalEndTime:datetime, FlowType:string, Ip:string,"
    "Location:string, PublicIpDetails:string, ThreatType:string, ThreatDescription:string,"
    "DnsDomain:string, Url:string, Port:string"
)

TABLES: Final = {NTA_NET_ANALYTICS: NET_ANALYTICS_COLUMNS, NTA_IP_DETAILS: IP_DETAILS_COLUMNS}

#: Kusto type -> DuckDB type, for the local tables.
DUCKDB_TYPES: Final = {
    "string": "VARCHAR", "long": "BIGINT", "int": "INTEGER", "datetime": "TIMESTAMP",
    "bool": "BOOLEAN", "real": "DOUBLE", "dynamic": "JSON",
}  # fmt: skip


class FlowType(StrEnum):
    """FlowType values (reference 1.4). ``UnknownPrivate`` is written without the space that
    some value lists show; queries accept both spellings."""

    INTRA_VNET = "IntraVNet"
    INTER_VNET = "InterVNet"
    S2S = "S2S"
    P2S = "P2S"
    AZURE_PUBLIC = "AzurePublic"
    EXTERNAL_PUBLIC = "ExternalPublic"
    MALICIOUS_FLOW = "MaliciousFlow"
    UNKNOWN_PRIVATE = "UnknownPrivate"
    UNKNOWN = "Unknown"


PUBLIC_FLOW_TYPES: Final = frozenset(
    {FlowType.AZURE_PUBLIC, FlowType.EXTERNAL_PUBLIC, FlowType.MALICIOUS_FLOW}
)


def schema_signature(table: str) -> str:
    """``(Name:type, ...)`` as Kusto's ``TableSymbol`` constructor and ``datatable`` take it."""
    return "(" + ", ".join(f"{c.name}:{c.kusto_type}" for c in TABLES[table]) + ")"
