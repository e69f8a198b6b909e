"""The flow-log reader on a corpus of odd blobs, pinned to what the reader did before it was
made single-pass and parallel (the expected values below were captured from that version).

What must not move: which blobs are skipped and why, how records are counted per
flowLogVersion, how tuples are counted per reason, and the NTANetAnalytics rows built from the
good tuples (including merges across files and the minimum flow log / target ids).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.country_db import lookup_countries
from shared.adapters.duckdb_engine import IngestReport, LocalEngine
from tests.analytics.conftest import Sample, enrichment

T = 1793610000000  # 2026-11-02T09:00:00Z in epoch milliseconds
MAC = "000D3A000001"
FLOWLOG = "/SUBSCRIPTIONS/X/FLOWLOGS/FL"
TARGET = "/subscriptions/x/resourceGroups/r/providers/Microsoft.Network/virtualNetworks/v"


def tup(offset_s: float, src: str = "10.10.1.4", dst: str = "10.10.2.4", dport: int = 445,
        state: str = "B", counters: str = "0,0,0,0", sport: int = 50001) -> str:
    return f"{T + int(offset_s * 1000)},{src},{dst},{sport},{dport},6,O,{state},NX,{counters}"


def record(groups: list[tuple[str, str, Any]], *, version: Any = 4, mac: str = MAC,
           flowlog: str | None = FLOWLOG, target: str | None = TARGET,
           minute: int = 0) -> dict[str, Any]:
    flows: dict[str, list[dict[str, Any]]] = {}
    for acl, rule, tuples in groups:
        flows.setdefault(acl, []).append({"rule": rule, "flowTuples": tuples})
    out: dict[str, Any] = {"time": f"2026-11-02T09:{minute:02d}:59.0000000Z",
                           "flowLogVersion": version, "macAddress": mac,
                           "category": "FlowLogFlowEvent", "operationName": "FlowLogFlowEvent",
                           "flowRecords": {"flows": [{"aclID": a, "flowGroups": g}
                                                     for a, g in flows.items()]}}
    if flowlog is not None:
        out["flowLogResourceID"] = flowlog
    if target is not None:
        out["targetResourceID"] = target
    if version is _MISSING:
        del out["flowLogVersion"]
    return out


_MISSING = object()


def write(root: Path, name: str, content: Any) -> None:
    path = root / name / "PT1H.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))


ACL = "acl-1"
RULE = "DefaultRule_AllowVnetOutBound"


def corpus(root: Path) -> None:
    """Blobs a..p; the folder names fix the path order the reader reports examples in."""
    write(root, "a", {"records": [record([(ACL, RULE, [
        tup(1), tup(2, state="E", counters="1,100,2,200"),
        f"{(T + 3000) // 1000},10.10.1.4,10.10.2.4,1,445,6,O,B,NX,,,,",  # seconds, empty
        "1,2,3",  # field count
        tup(1).replace(str(T + 1000), "12x"),  # bad timestamp
        tup(1, src=""),  # missing address
        tup(1, dport=70000),  # bad port
        tup(1).replace(",6,O,", ",300,O,"),  # bad protocol
        tup(1).replace(",O,B,", ",X,B,"),  # bad direction
        tup(1, state="Q"),  # bad state
        tup(1, state="E", counters="1,-1,0,0"),  # bad counters
        tup(1, state="E", counters="1,x,0,0"),  # bad counters
    ])])]})
    write(root, "b", json.dumps({"records": [record([(ACL, RULE, [tup(1)])])]})[:60])
    write(root, "c", "")
    write(root, "d", {"records": {"not": "a list"}})
    write(root, "e", {"records": [
        record([(ACL, RULE, [tup(10, dport=22)])], version=3, minute=1),
        record([(ACL, RULE, [tup(11, dport=23)])], version="4", minute=2),
        record([(ACL, RULE, [tup(12, dport=24)])], version=4.5, minute=3),
        record([(ACL, RULE, [tup(13, dport=25)])], version=_MISSING, minute=4),
        record([(ACL, RULE, [tup(14, dport=26)])], version=None, minute=5),
        record([(ACL, RULE, [tup(15, dport=27)])], version="v 5", minute=6),
        record([(ACL, RULE, [tup(16, dport=28)])], minute=7),
    ]})
    write(root, "f", {"records": []})
    write(root, "g", {"records": [record([(ACL, RULE, [tup(20)])], version=3)]})
    # the same NIC and hour logged into two blobs, with different flow log and target ids
    write(root, "h", {"records": [record([(ACL, RULE, [tup(30, dport=80)])],
                                         flowlog="/FL/B", target="/t/b")]})
    write(root, "i", {"records": [record([(ACL, RULE, [
        tup(31, dport=80, state="E", counters="5,500,6,600")])], flowlog="/FL/A",
        target="/t/c")]})
    # one blob, records with different (or missing) ids
    write(root, "j", {"records": [
        record([(ACL, RULE, [tup(40, dport=81)])], flowlog="/FL/Z", target="/t/a", minute=1),
        record([(ACL, RULE, [tup(41, dport=81)])], flowlog="/FL/Y", target="/t/z", minute=2),
        record([(ACL, RULE, [tup(42, dport=82)])], flowlog=None, target=None, minute=3),
        record([(ACL, RULE, [tup(43, dport=83)])], minute=4),
    ]})
    write(root, "k", {"records": [record([
        (ACL, RULE, None), (ACL, "r2", [tup(50, dport=90), 7]), (ACL, "r3", [])])]})
    write(root, "l", {"records": [
        {"flowLogVersion": 4, "macAddress": MAC},
        {"flowLogVersion": 4, "macAddress": MAC, "flowRecords": {"flows": [{"aclID": ACL}]}},
        record([(ACL, RULE, [tup(60, dport=91)])]),
    ]})
    write(root, "m", {"records": [record([(ACL, RULE, ["9,9", tup(70, dport=70000)])])]})
    write(root, "n", {"records": [record([(ACL, RULE, [
        tup(80, src="2001:db8::1", dport=92), tup(81, dst="10.10.1.4.7", dport=93)])])]})
    write(root, "o", {"records": [None, record([(ACL, RULE, [tup(90, dport=94)])])]})
    write(root, "p", {"records": [record([(ACL, RULE, [])], version=3),
                                  {"flowLogVersion": 2}, {"flowLogVersion": "4"}]})


@pytest.fixture(scope="module")
def ingested(sample: Sample, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[IngestReport, list[tuple[Any, ...]]]:
    root = tmp_path_factory.mktemp("odd-blobs")
    corpus(root)
    with LocalEngine() as engine:
        report = engine.ingest_flow_logs(root, enrichment(sample), lookup_countries)
        rows = engine.con.execute(
            'SELECT "DestPort", "SrcIp", "DestIp", "FlowLogResourceId", "TargetResourceId", '
            '"AllowedOutFlows", "CompletedFlows", "PacketsSrcToDest", "BytesDestToSrc", '
            'strftime("FlowStartTime", \'%H:%M:%S.%g\'), strftime("FlowEndTime", \'%H:%M:%S.%g\')'
            ', "AclRule" FROM "NTANetAnalytics" ORDER BY ALL').fetchall()
    return report, rows


def test_blobs_and_records(ingested: tuple[IngestReport, list[tuple[Any, ...]]]) -> None:
    source = ingested[0].as_dict()
    assert source["blobs"] == {"found": 16, "read": 13, "skipped": 3, "reasons": {
        "empty blob": {"count": 1, "examples": ["c/PT1H.json"]},
        "not a flow log blob: expected {\"records\": [...]}": {"count": 1,
                                                              "examples": ["d/PT1H.json"]},
        "not valid JSON: truncated (the document does not end)": {
            "count": 1, "examples": ["b/PT1H.json"]}}}
    # a record without flowLogVersion is not counted (its tuples are not read); null is counted
    assert source["records"] == {"read": 24, "skipped": 7, "reasons": {
        "unsupported flowLogVersion 2 (expected 4)": {"count": 1, "examples": ["p/PT1H.json"]},
        "unsupported flowLogVersion 3 (expected 4)": {
            "count": 3, "examples": ["e/PT1H.json", "g/PT1H.json", "p/PT1H.json"]},
        "unsupported flowLogVersion 4.5 (expected 4)": {"count": 1,
                                                        "examples": ["e/PT1H.json"]},
        "unsupported flowLogVersion null (expected 4)": {"count": 1,
                                                         "examples": ["e/PT1H.json"]},
        "unsupported flowLogVersion v (expected 4)": {"count": 1, "examples": ["e/PT1H.json"]}}}


def test_tuples(ingested: tuple[IngestReport, list[tuple[Any, ...]]]) -> None:
    tuples = ingested[0].as_dict()["tuples"]
    assert (tuples["read"], tuples["skipped"]) == (27, 14)
    assert {reason: info["count"] for reason, info in tuples["reasons"].items()} == {
        "IPv6 address (the local enricher is IPv4 only)": 1,
        "bad address": 1,
        "bad counters": 2,
        "bad direction (expected I or O)": 1,
        "bad flow state (expected B, C, E or D)": 1,
        "bad port": 2,
        "bad protocol": 1,
        "bad timestamp": 1,
        "expected 13 comma-separated fields": 3,
        "missing address": 1,
    }
    examples = {reason: info["examples"] for reason, info in tuples["reasons"].items()}
    assert examples["IPv6 address (the local enricher is IPv4 only)"] == ["2001:db8::1"]
    assert examples["bad address"] == ["10.10.1.4.7"]
    assert examples["bad timestamp"] == [
        "a/PT1H.json: 12x,10.10.1.4,10.10.2.4,50001,445,6,O,B,NX,0,0,0,0"]
    # each reason shows the first blobs (in path order) where it occurred
    assert examples["expected 13 comma-separated fields"][0] == "a/PT1H.json: 1,2,3"
    assert all(e.split(":")[0] in {"a/PT1H.json", "k/PT1H.json", "m/PT1H.json"}
               for e in examples["expected 13 comma-separated fields"])


def test_rows(ingested: tuple[IngestReport, list[tuple[Any, ...]]]) -> None:
    assert ingested[1] == EXPECTED_ROWS


R, A, B = "AllowVnetOutBound", "10.10.1.4", "10.10.2.4"
EXPECTED_ROWS: list[tuple[Any, ...]] = [
    (23, A, B, FLOWLOG, TARGET, 1, 0, 0, 0, "09:00:11.000", "09:00:11.000", R),
    (28, A, B, FLOWLOG, TARGET, 1, 0, 0, 0, "09:00:16.000", "09:00:16.000", R),
    (80, A, B, "/FL/A", "/t/b", 1, 1, 5, 600, "09:00:30.000", "09:00:30.000", R),
    (81, A, B, "/FL/Y", "/t/a", 2, 0, 0, 0, "09:00:40.000", "09:00:41.000", R),
    (82, A, B, "", "", 1, 0, 0, 0, "09:00:42.000", "09:00:42.000", R),
    (83, A, B, FLOWLOG, TARGET, 1, 0, 0, 0, "09:00:43.000", "09:00:43.000", R),
    (91, A, B, FLOWLOG, TARGET, 1, 0, 0, 0, "09:01:00.000", "09:01:00.000", R),
    (94, A, B, FLOWLOG, TARGET, 1, 0, 0, 0, "09:01:30.000", "09:01:30.000", R),
    (445, A, B, FLOWLOG, TARGET, 2, 1, 1, 200, "09:00:01.000", "09:00:03.000", R),
]


def test_batches_and_workers_do_not_change_anything(
        sample: Sample, tmp_path: Path,
        ingested: tuple[IngestReport, list[tuple[Any, ...]]]) -> None:
    """One blob per batch, read by several cursors at once: the same counts, examples and rows
    as one batch on one cursor."""
    corpus(tmp_path)
    with LocalEngine(threads=2) as engine:
        report = engine.ingest_flow_logs(tmp_path, enrichment(sample), lookup_countries,
                                         batch_bytes=1)
        rows = engine.con.execute(
            'SELECT "DestPort", "SrcIp", "DestIp", "FlowLogResourceId", "TargetResourceId", '
            '"AllowedOutFlows", "CompletedFlows", "PacketsSrcToDest", "BytesDestToSrc", '
            'strftime("FlowStartTime", \'%H:%M:%S.%g\'), strftime("FlowEndTime", \'%H:%M:%S.%g\')'
            ', "AclRule" FROM "NTANetAnalytics" ORDER BY ALL').fetchall()
    assert report.as_dict() == ingested[0].as_dict()
    assert rows == ingested[1]
