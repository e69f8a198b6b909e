"""Small hand-written NTANetAnalytics / NTAIpDetails tables with known answers, shared by the
duckdb-kql tests and the Log Analytics fake tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shared.analytics.config import AnalyticsConfig, ThreatEntry
from shared.analytics.query import Window
from shared.analytics.schema import TABLES

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
WINDOW = Window(T0, T0 + timedelta(hours=1))
SUB_A = "aaaaaaaa-0000-0000-0000-00000000000a"
SUB_B = "bbbbbbbb-0000-0000-0000-00000000000b"
SUB_C = "cccccccc-0000-0000-0000-00000000000c"


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def flow(**values: Any) -> dict[str, Any]:
    """A FlowLog row of the first 10-minute interval unless told otherwise."""
    start = values.get("FlowStartTime", at(1))
    base = {"SubType": "FlowLog", "FaSchemaVersion": "3", "FlowStartTime": start,
            "FlowEndTime": values.get("FlowEndTime", start), "FlowStatus": "Allowed",
            "FlowIntervalStartTime": T0, "FlowIntervalEndTime": at(10),
            "TimeGenerated": at(10), "L4Protocol": "T", "FlowDirection": "Outbound"}
    return {**base, **values}


def entry(ip: str, started: int = 1) -> str:
    return f"{ip}|{started}|{started}|2|2|200|200"


NET: list[dict[str, Any]] = [
    # risky: inbound from two public IPs in one row (KP via NTAIpDetails, US)
    flow(FlowType="ExternalPublic", DestIp="10.1.0.4", SrcPublicIps=" ".join(
        [entry("198.51.100.23", 2), entry("198.51.100.77")]), DestVm="rg-a/vm-web",
        DestNic="rg-a/nic-web", DestSubscription=SUB_A, DestPort=443,
        FlowDirection="Inbound", AllowedInFlows=3, FlowStartTime=at(2)),
    # risky: outbound to an IR address known only from the row's Country
    flow(FlowType="ExternalPublic", SrcIp="10.1.0.5", DestPublicIps=entry("203.0.113.9"),
         Country="IR", SrcVm="rg-a/vm-app", SrcSubscription=SUB_A, DestPort=8443,
         AllowedOutFlows=1, FlowStartTime=at(5)),
    # risky but denied
    flow(FlowType="ExternalPublic", DestIp="10.1.0.6", SrcPublicIps=entry("198.51.100.23", 4),
         DestVm="rg-a/vm-db", DestSubscription=SUB_A, DestPort=22, FlowStatus="Denied",
         FlowDirection="Inbound", DeniedInFlows=4, FlowStartTime=at(7)),
    # unknown country: returned with an empty CountryCode
    flow(FlowType="ExternalPublic", SrcIp="10.1.0.5", DestPublicIps=entry("192.0.2.99"),
         SrcSubscription=SUB_A, DestPort=443, AllowedOutFlows=1),
    # malicious by Traffic Analytics (threat intel in NTAIpDetails)
    flow(FlowType="MaliciousFlow", SrcIp="10.1.0.5", DestPublicIps=entry("203.0.113.66", 3),
         Country="NL", SrcVm="rg-a/vm-app", SrcSubscription=SUB_A, DestPort=443,
         AllowedOutFlows=3, FlowStartTime=at(12)),
    # listed by the organization (a CIDR of the threat list), typed ExternalPublic by TA
    flow(FlowType="ExternalPublic", SrcIp="10.2.0.4", DestPublicIps=entry("198.18.5.7"),
         Country="US", SrcSubscription=SUB_B, DestPort=4444, AllowedOutFlows=1,
         FlowStartTime=at(20)),
    # Azure services
    flow(FlowType="AzurePublic", SrcIp="10.1.0.5", DestPublicIps=" ".join(
        [entry("192.0.2.200", 2), entry("192.0.2.202")]), SrcSubnet="rg-net/vnet-a/app",
         SrcSubscription=SUB_A, DestPort=443, AllowedOutFlows=3),
    flow(FlowType="AzurePublic", SrcIp="10.1.0.4", DestPublicIps=entry("192.0.2.200", 5),
         SrcSubnet="rg-net/vnet-a/web", SrcSubscription=SUB_A, DestPort=443,
         AllowedOutFlows=5, FlowStartTime=at(30)),
    flow(FlowType="AzurePublic", SrcIp="10.2.0.4", DestPublicIps=entry("192.0.2.210"),
         SrcSubnet="rg-net/vnet-b/app", SrcSubscription=SUB_B, DestPort=1433,
         AllowedOutFlows=1),
    # cross-subscription, logged at both ends (must count 2 flows, not 4)
    flow(FlowType="InterVNet", SrcIp="10.1.0.5", DestIp="10.2.0.4", SrcSubscription=SUB_A,
         DestSubscription=SUB_B, SrcSubnet="rg-net/vnet-a/app", DestSubnet="rg-net/vnet-b/app",
         AclGroup=f"{SUB_A}/rg-net/nsg-a", AclRule="AllowVnetOutBound", DestPort=8080,
         AllowedOutFlows=2, FlowStartTime=at(21)),
    flow(FlowType="InterVNet", SrcIp="10.1.0.5", DestIp="10.2.0.4", SrcSubscription=SUB_A,
         DestSubscription=SUB_B, SrcSubnet="rg-net/vnet-a/app", DestSubnet="rg-net/vnet-b/app",
         AclGroup=f"{SUB_B}/rg-net/nsg-b", AclRule="AllowVnetInBound", DestPort=8080,
         FlowDirection="Inbound", AllowedInFlows=2, FlowStartTime=at(21)),
    # cross-subscription but an allowed pair (upper case in the data)
    flow(FlowType="InterVNet", SrcIp="10.3.0.4", DestIp="10.1.0.4",
         SrcSubscription=SUB_C.upper(), DestSubscription=SUB_A, AclGroup="x/y/z",
         AclRule="AllowDns", DestPort=53, L4Protocol="U", AllowedOutFlows=7),
    # cross-subscription but denied
    flow(FlowType="InterVNet", SrcIp="10.2.0.4", DestIp="10.1.0.6", SrcSubscription=SUB_B,
         DestSubscription=SUB_A, AclGroup=f"{SUB_A}/rg-net/nsg-a", AclRule="DenyAllInBound",
         DestPort=22, FlowStatus="Denied", FlowDirection="Inbound", DeniedInFlows=1),
    # same subscription: not a boundary
    flow(FlowType="IntraVNet", SrcIp="10.1.0.4", DestIp="10.1.0.5", SrcSubscription=SUB_A,
         DestSubscription=SUB_A, AclGroup=f"{SUB_A}/rg-net/nsg-a", AclRule="AllowVnetInBound",
         DestPort=8443, FlowDirection="Inbound", AllowedInFlows=1, FlowStartTime=at(3),
         FlowEndTime=at(40)),
    # outside the window: ignored by every query
    flow(FlowType="ExternalPublic", DestIp="10.1.0.4", SrcPublicIps=entry("198.51.100.23"),
         DestSubscription=SUB_A, DestPort=443, FlowDirection="Inbound", AllowedInFlows=1,
         FlowStartTime=at(61), FlowIntervalStartTime=at(60), TimeGenerated=at(70)),
    # a status row: ignored
    {"SubType": "StatusMessage", "FlowStartTime": at(1), "TimeGenerated": at(10),
     "FlowType": "ExternalPublic", "SrcPublicIps": entry("198.51.100.23")},
]

IP_DETAILS: list[dict[str, Any]] = [
    {"Ip": "198.51.100.23", "FlowType": "ExternalPublic", "Location": "kp",
     "TimeGenerated": at(10)},
    {"Ip": "198.51.100.77", "FlowType": "ExternalPublic", "Location": "US",
     "TimeGenerated": at(10)},
    {"Ip": "203.0.113.66", "FlowType": "MaliciousFlow", "Location": "NL", "ThreatType": "Botnet",
     "ThreatDescription": "known botnet", "DnsDomain": "bad.example", "TimeGenerated": at(20)},
    {"Ip": "192.0.2.200", "FlowType": "AzurePublic", "Location": "westeurope",
     "PublicIpDetails": "Storage", "TimeGenerated": at(10)},
    {"Ip": "192.0.2.202", "FlowType": "AzurePublic", "Location": "westeurope",
     "PublicIpDetails": "AzureMonitor", "TimeGenerated": at(10)},
    {"Ip": "192.0.2.210", "FlowType": "AzurePublic", "Location": "westeurope",
     "PublicIpDetails": "Sql", "TimeGenerated": at(10)},
]

CONFIG = AnalyticsConfig(
    risky_countries=("IR", "KP"),
    threats=(ThreatEntry(__import__("ipaddress").ip_network("198.18.0.0/15"), "Scanner",
                         'lab "range"'),),
    allowed_pairs=((SUB_C, SUB_A),),
)
SUBSCRIPTIONS = (SUB_A, SUB_B, SUB_C)
TABLE_ROWS: Mapping[str, Sequence[Mapping[str, Any]]] = {
    "NTANetAnalytics": NET, "NTAIpDetails": IP_DETAILS}


def complete(table: str, row: Mapping[str, Any]) -> list[Any]:
    """A row as a value list in schema order, with Kusto's empty values where missing."""
    empty = {"string": "", "long": 0, "int": 0, "bool": False, "real": 0.0, "datetime": None}
    return [row.get(c.name, empty[c.kusto_type]) for c in TABLES[table]]


def assert_fixture_findings(report: Any) -> None:
    """What the five detections find in these tables with :data:`CONFIG`, on any engine (the
    remote ones included): the run is incomplete, since one public address has no country."""
    assert report.stats["complete"] is False
    by: dict[str, list[Any]] = {}
    for f in report.findings:
        by.setdefault(f.detection, []).append(f)
    assert sorted((f.evidence["public_ip"], f.evidence["private_ip"], f.evidence["country"])
                  for f in by["risky_region"]) == [
        ("198.51.100.23", "10.1.0.4", "KP"), ("198.51.100.23", "10.1.0.6", "KP"),
        ("203.0.113.9", "10.1.0.5", "IR")]
    assert {f.evidence["threat_type"] for f in by["malicious_flow"]} == {"Botnet", "Scanner"}
    (cross,) = by["cross_subscription"]
    assert cross.evidence["flows"] == 2
    assert {f.evidence["service"] for f in by["azure_service"]} == {"Storage", "AzureMonitor",
                                                                    "Sql"}
    assert all(f.severity == "informational" for f in by["azure_service"])  # learning mode
    assert {f.evidence["origin"] for f in by["blast_radius"]} == {"10.1.0.4", "10.1.0.5",
                                                                  "10.2.0.4"}
