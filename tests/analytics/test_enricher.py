"""The local Traffic-Analytics-style enricher on hand-written blobs with known answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.country_db import lookup_countries
from shared.adapters.duckdb_engine import LocalEngine
from shared.analytics.enrichment import EnrichmentTables, acl_groups
from tests.analytics.conftest import Sample, enrichment

T = 1793610000000  # 2026-11-02T09:00:00Z in epoch milliseconds
MAC = "000D3A000001"


def blob(path: Path, groups: list[tuple[str, str, list[str]]], version: int = 4) -> None:
    """One record holding (aclID, rule, tuples) flow groups."""
    flows: dict[str, list[dict[str, Any]]] = {}
    for acl, rule, tuples in groups:
        flows.setdefault(acl, []).append({"rule": rule, "flowTuples": tuples})
    record = {"time": "2026-11-02T09:00:59.0000000Z", "flowLogVersion": version,
              "flowLogGUID": "g", "macAddress": MAC, "category": "FlowLogFlowEvent",
              "flowLogResourceID": "/SUBSCRIPTIONS/X/FLOWLOGS/FL",
              "targetResourceID": "/subscriptions/x/resourceGroups/r/providers/"
                                  "Microsoft.Network/virtualNetworks/v",
              "operationName": "FlowLogFlowEvent",
              "flowRecords": {"flows": [{"aclID": a, "flowGroups": g} for a, g in flows.items()]}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"records": [record]}, indent=2))  # pretty-printed on purpose


def tup(offset_s: float, src: str, dst: str, sport: int, dport: int, proto: int, d: str,
        state: str, counters: str = "0,0,0,0") -> str:
    ts = T + int(offset_s * 1000)
    return f"{ts},{src},{dst},{sport},{dport},{proto},{d},{state},NX,{counters}"


@pytest.fixture(scope="module")
def enriched(sample: Sample, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("enricher")
    acl = sorted(acl_groups(sample.rows))[0]
    blob(root / "a" / "PT1H.json", [
        (acl, "DefaultRule_AllowVnetOutBound", [
            tup(1, "10.10.1.4", "10.10.2.4", 50001, 445, 6, "O", "B"),
            tup(3, "10.10.1.4", "10.10.2.4", 50001, 445, 6, "O", "E", "10,1000,8,4000"),
            tup(61, "10.10.1.4", "10.10.2.4", 50002, 445, 6, "O", "B"),  # other source port
            tup(62, "10.10.1.4", "10.10.2.4", 50002, 445, 6, "O", "E", "1,100,1,100"),
            tup(5, "10.10.2.4", "10.20.1.4", 50003, 22, 6, "O", "B"),
            tup(9, "10.10.2.4", "10.99.0.5", 50004, 80, 6, "O", "B"),
        ]),
        (acl, "UserRule_AllowHttpsInbound", [
            tup(7, "198.51.100.23", "10.10.1.4", 40000, 443, 6, "I", "B"),
            tup(8, "198.51.100.78", "10.10.1.4", 40001, 443, 6, "I", "B"),
        ]),
        (acl, "DefaultRule_AllowInternetOutBound", [
            tup(11, "10.10.2.4", "192.0.2.200", 50005, 443, 6, "O", "B"),
            tup(12, "10.20.1.4", "203.0.113.66", 50006, 443, 6, "O", "B"),
        ]),
        (acl, "DefaultRule_DenyAllInBound", [
            f"{(T + 15000) // 1000},203.0.113.14,10.10.1.4,40002,22,6,I,D,NX,,,,",  # seconds
            tup(16, "2001:db8::1", "10.10.1.4", 40003, 22, 6, "I", "D"),
        ]),
    ])
    with LocalEngine() as engine:
        report = engine.ingest_flow_logs(root, enrichment(sample), lookup_countries)
        rows = engine.con.execute('SELECT * FROM "NTANetAnalytics"').fetchall()
        names = [d[0] for d in engine.con.description or []]
        net = [dict(zip(names, r, strict=True)) for r in rows]
        rows = engine.con.execute('SELECT * FROM "NTAIpDetails" ORDER BY "Ip"').fetchall()
        names = [d[0] for d in engine.con.description or []]
        ip = [dict(zip(names, r, strict=True)) for r in rows]
    return {"net": net, "ip": ip, "report": report, "acl": acl,
            "group": acl_groups(sample.rows)[acl]}


def _row(enriched: dict[str, Any], **match: Any) -> dict[str, Any]:
    found = [r for r in enriched["net"] if all(r[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, found)
    return found[0]


def test_aggregation_ignores_the_source_port(enriched: dict[str, Any]) -> None:
    row = _row(enriched, SrcIp="10.10.1.4", DestIp="10.10.2.4")
    assert row["FlowType"] == "IntraVNet"
    assert (row["AllowedOutFlows"], row["CompletedFlows"]) == (2, 2)
    assert (row["PacketsSrcToDest"], row["BytesSrcToDest"], row["PacketsDestToSrc"],
            row["BytesDestToSrc"]) == (11, 1100, 9, 4100)
    assert row["AclRule"] == "AllowVnetOutBound" and row["NsgRuleType"] == "Default"
    assert row["AclGroup"] == enriched["group"]
    assert row["SrcVm"] == "rg-payroll-web/payroll-web-01"
    assert row["DestSubnet"].endswith("/payroll-vnet/app")
    assert row["L7Protocol"] == "smb" and row["L4Protocol"] == "T"
    assert row["FlowDirection"] == "Outbound" and row["FlowStatus"] == "Allowed"
    assert row["FlowEndTime"] > row["FlowStartTime"]  # first and last start of the interval


def test_flow_types(enriched: dict[str, Any]) -> None:
    assert _row(enriched, DestIp="10.20.1.4", SrcIp="10.10.2.4")["FlowType"] == "InterVNet"
    assert _row(enriched, DestIp="10.99.0.5")["FlowType"] == "UnknownPrivate"
    azure = _row(enriched, FlowType="AzurePublic")
    assert (azure["DestIp"], azure["DestPublicIps"].split("|")[0], azure["AzureRegion"]) == (
        "", "192.0.2.200", "westeurope")
    malicious = _row(enriched, FlowType="MaliciousFlow")
    assert malicious["SrcIp"] == "10.20.1.4" and malicious["Country"] == "NL"


def test_public_addresses_are_folded_per_country(enriched: dict[str, Any]) -> None:
    inbound = [r for r in enriched["net"] if r["SrcPublicIps"] and r["FlowStatus"] == "Allowed"]
    assert sorted((r["Country"], r["SrcPublicIps"]) for r in inbound) == [
        ("DE", "198.51.100.78|1|0|0|0|0|0"), ("KP", "198.51.100.23|1|0|0|0|0|0")]
    assert all(r["SrcIp"] == "" and r["DestIp"] == "10.10.1.4" for r in inbound)
    assert {r["AclRule"] for r in inbound} == {"AllowHttpsInbound"}


def test_denied_and_second_timestamps(enriched: dict[str, Any]) -> None:
    denied = _row(enriched, FlowStatus="Denied")
    assert denied["DeniedInFlows"] == 1 and denied["AllowedInFlows"] == 0
    assert denied["SrcPublicIps"].startswith("203.0.113.14|1|")
    assert denied["FlowStartTime"].second == 15


def test_ip_details_and_skips(enriched: dict[str, Any]) -> None:
    details = {r["Ip"]: r for r in enriched["ip"]}
    assert details["192.0.2.200"]["FlowType"] == "AzurePublic"
    assert details["192.0.2.200"]["PublicIpDetails"] == "Storage"
    assert details["203.0.113.66"]["ThreatType"] == "C2"
    assert details["198.51.100.23"]["Location"] == "KP"
    source = enriched["report"].as_dict()
    assert source["tuples"]["read"] == 12
    assert source["tuples"]["reasons"] == {
        "IPv6 address (the local enricher is IPv4 only)": {"count": 1,
                                                            "examples": ["2001:db8::1"]}}
    assert source["addresses"]["public_without_country"] == 0


def test_missing_folder_is_an_error(engine: LocalEngine, sample: Sample, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        engine.ingest_flow_logs(tmp_path / "nope", enrichment(sample), lookup_countries)


def test_countries_come_from_the_offline_database(engine: LocalEngine, sample: Sample,
                                                  tmp_path: Path) -> None:
    blob(tmp_path / "b" / "PT1H.json", [("x", "r", [
        tup(1, "8.8.8.8", "10.10.1.4", 1, 443, 6, "I", "B"),
        tup(2, "175.45.176.1", "10.10.1.4", 1, 443, 6, "I", "B")])])
    tables = EnrichmentTables.build(sample.inventory, sample.rows,
                                    sample.loaded.config.__class__(), None)
    engine.ingest_flow_logs(tmp_path, tables, lookup_countries)
    got = dict(engine.con.execute('SELECT "Ip", "Location" FROM "NTAIpDetails"').fetchall())
    assert got == {"8.8.8.8": "US", "175.45.176.1": "KP"}
