"""Sample VNet flow logs: blob layout, record and tuple format, NSG verdicts, planted incidents."""

from __future__ import annotations

import ipaddress
import json
import re
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest

from shared.sample.estate import NIC_TYPE, VNET_TYPE, classic_estate, scaled_estate
from shared.sample.flowlogs import (
    CONTAINER,
    PUBLIC_ENDPOINTS,
    SUGGESTED_RISKY_COUNTRIES,
    EndpointRole,
    FlowLogManifest,
    IncidentKind,
    PlantedIncident,
    generate_flow_logs,
)

START = datetime(2025, 3, 1, 9, tzinfo=UTC)
HOURS = 2
FLOWS_PER_HOUR = 700
BLOB = re.compile(
    rf"^{CONTAINER}/flowLogResourceID=/(?P<sub>[0-9A-F-]{{36}})_NETWORKWATCHERRG/"
    r"NETWORKWATCHER_(?P<region>[A-Z0-9]+)_(?P<flowlog>[A-Z0-9-]+-FLOWLOG)/"
    r"y=(?P<y>\d{4})/m=(?P<mo>\d{2})/d=(?P<d>\d{2})/h=(?P<h>\d{2})/m=00/"
    r"macAddress=(?P<mac>[0-9A-F]{12})/PT1H\.json$"
)
RECORD_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$")
RECORD_KEYS = [
    "time",
    "flowLogVersion",
    "flowLogGUID",
    "macAddress",
    "category",
    "flowLogResourceID",
    "targetResourceID",
    "operationName",
    "flowRecords",
]
GUID = re.compile(r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class Tuple:
    """One flow tuple with where it was found."""

    mac: str
    acl: str
    rule: str
    record_time: str
    ts: int
    src: str
    dst: str
    sport: int
    dport: int
    proto: int
    direction: str
    state: str
    encryption: str
    counters: tuple[int, int, int, int]

    @property
    def key(self) -> tuple[int, str, str, int, int, int]:
        return (self.ts, self.src, self.dst, self.sport, self.dport, self.proto)


@dataclass
class Run:
    manifest: FlowLogManifest
    tuples: list[Tuple]
    blobs: dict[str, dict[str, Any]]
    nics: dict[str, dict[str, Any]]  # by private IP (unique across the classic estate)
    estate: list[dict[str, Any]]


def parse_tuple(mac: str, acl: str, rule: str, record_time: str, text: str) -> Tuple:
    fields = text.split(",")
    assert len(fields) == 13, text
    ts, src, dst, sport, dport, proto, direction, state, enc, *counters = fields
    p1, b1, p2, b2 = (int(c) for c in counters)
    return Tuple(
        mac,
        acl,
        rule,
        record_time,
        int(ts),
        src,
        dst,
        int(sport),
        int(dport),
        int(proto),
        direction,
        state,
        enc,
        (p1, b1, p2, b2),
    )


def read_run(manifest: FlowLogManifest, estate: list[dict[str, Any]]) -> Run:
    tuples, blobs = [], {}
    for name in manifest.files:
        document = json.loads((manifest.out_dir / name).read_text(encoding="utf-8"))
        blobs[name] = document
        for record in document["records"]:
            for flow in record["flowRecords"]["flows"]:
                for group in flow["flowGroups"]:
                    tuples += [
                        parse_tuple(
                            record["macAddress"], flow["aclID"], group["rule"], record["time"], text
                        )
                        for text in group["flowTuples"]
                    ]
    nics = {}
    for nic in estate:
        if nic["type"] == NIC_TYPE:
            config = nic["properties"]["ipConfigurations"][0]["properties"]
            nics[config["privateIPAddress"]] = nic
    return Run(manifest, tuples, blobs, nics, estate)


def mac_of(nic: dict[str, Any]) -> str | None:
    mac = nic["properties"].get("macAddress")
    return mac.replace("-", "") if mac else None


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    estate = classic_estate()
    manifest = generate_flow_logs(
        estate,
        tmp_path_factory.mktemp("flowlogs"),
        start=START,
        hours=HOURS,
        seed=0,
        benign_flows_per_hour=FLOWS_PER_HOUR,
    )
    return read_run(manifest, estate)


def incidents(run: Run, kind: IncidentKind) -> list[PlantedIncident]:
    return [i for i in run.manifest.incidents if i.kind == kind]


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


# --- layout and format -----------------------------------------------------------------------


def test_blob_paths_follow_the_documented_layout(run: Run) -> None:
    root = run.manifest.out_dir
    on_disk = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert on_disk == sorted(run.manifest.files)
    assert len(set(run.manifest.files)) == len(run.manifest.files)
    regions = set()
    for name, document in run.blobs.items():
        match = BLOB.match(name)
        assert match, name
        regions.add(match["region"])
        hour = datetime(
            int(match["y"]), int(match["mo"]), int(match["d"]), int(match["h"]), tzinfo=UTC
        )
        assert START <= hour < START + timedelta(hours=HOURS)
        for record in document["records"]:
            assert record["macAddress"] == match["mac"]
            resource = record["flowLogResourceID"]
            assert resource == resource.upper()
            watcher = f"NETWORKWATCHER_{match['region']}"
            assert resource == (
                f"/SUBSCRIPTIONS/{match['sub']}/RESOURCEGROUPS/NETWORKWATCHERRG/PROVIDERS/"
                f"MICROSOFT.NETWORK/NETWORKWATCHERS/{watcher}/FLOWLOGS/{match['flowlog']}"
            )
            moment = datetime.fromisoformat(record["time"][:26] + "+00:00")
            assert hour <= moment < hour + timedelta(hours=1)
    assert regions == {"WESTEUROPE", "NORTHEUROPE"}


def test_records_have_the_documented_fields(run: Run) -> None:
    vnet_ids = {row["id"] for row in run.estate if row["type"] == VNET_TYPE}
    for document in run.blobs.values():
        assert list(document) == ["records"]
        times = [record["time"] for record in document["records"]]
        assert times == sorted(times) and len({t[:16] for t in times}) == len(times)
        for record in document["records"]:
            assert list(record) == RECORD_KEYS
            assert RECORD_TIME.match(record["time"])
            assert record["flowLogVersion"] == 4
            assert record["category"] == record["operationName"] == "FlowLogFlowEvent"
            assert GUID.match(record["flowLogGUID"])
            assert record["targetResourceID"] in vnet_ids
            for flow in record["flowRecords"]["flows"]:
                assert GUID.match(flow["aclID"])
                for group in flow["flowGroups"]:
                    assert group["rule"].startswith(("DefaultRule_", "UserRule_"))
                    assert group["flowTuples"]


def test_every_tuple_is_well_formed(run: Run) -> None:
    low, high = epoch_ms(START), epoch_ms(START + timedelta(hours=HOURS))
    for t in run.tuples:
        assert low <= t.ts < high
        minute = datetime.fromtimestamp(t.ts / 1000, UTC).strftime("%Y-%m-%dT%H:%M")
        assert t.record_time[:16] == minute, "a tuple sits in the record of its minute"
        ipaddress.IPv4Address(t.src), ipaddress.IPv4Address(t.dst)
        assert t.proto in (1, 6, 17)
        assert t.direction in ("I", "O") and t.state in ("B", "C", "E", "D")
        assert t.encryption == "NX"
        assert all(c >= 0 for c in t.counters)
        if t.state in ("B", "D"):
            assert t.counters == (0, 0, 0, 0)
        if t.proto == 1:
            assert (t.sport, t.dport) == (0, 0)
        else:
            assert 0 < t.sport < 65536 and 0 < t.dport < 65536
        own_ip = t.src if t.direction == "O" else t.dst
        assert mac_of(run.nics[own_ip]) == t.mac, "a tuple is logged at its own NIC"


def test_allowed_flows_have_a_begin_and_an_end(run: Run) -> None:
    states: dict[tuple[str, str, str, int, int, int], Counter[str]] = {}
    for t in run.tuples:
        flow = (t.mac, t.direction, t.src, t.sport, t.dport, t.proto)
        states.setdefault(flow, Counter())[t.state] += 1
    for flow, counts in states.items():
        if counts["D"]:
            assert set(counts) == {"D"}, flow
        else:
            assert counts["B"] == counts["E"] >= 1, flow


# --- NSG verdicts ----------------------------------------------------------------------------


def test_flows_between_estate_nics_are_logged_at_both_ends(run: Run) -> None:
    by_end = {(t.mac, t.direction, t.key): t for t in run.tuples}
    checked = 0
    for t in run.tuples:
        if t.src not in run.nics or t.dst not in run.nics:
            continue
        src_mac, dst_mac = mac_of(run.nics[t.src]), mac_of(run.nics[t.dst])
        if dst_mac is None:  # private endpoints are only logged at the source
            continue
        if t.direction == "O" and t.state != "D":
            peer = by_end.get((dst_mac, "I", t.key))
            if peer is None:  # a denied destination logs one D at the start of the flow
                assert any(
                    x.state == "D"
                    for x in run.tuples
                    if x.mac == dst_mac and x.key[1:] == t.key[1:]
                ), t
            else:
                assert peer.state == t.state and peer.counters == t.counters
                checked += 1
        if t.direction == "I":
            assert (src_mac, "O", t.key) in by_end or t.state == "D", t
    assert checked > 1000


def test_verdicts_follow_the_estate_nsgs(run: Run) -> None:
    rules: dict[tuple[str, int, str], Counter[str]] = {}
    for t in run.tuples:
        if t.direction == "I":
            target = run.nics[t.dst]["name"]
            rules.setdefault((target.split("-nic")[0], t.dport, t.src), Counter())[t.rule] += 1
    web_to_logic = {
        rule
        for (dst, port, src), c in rules.items()
        for rule in c
        if dst.startswith("payroll-app") and port == 8443
    }
    assert web_to_logic == {"UserRule_AllowWebToLogic"}
    dns = {
        rule
        for (dst, port, _), c in rules.items()
        for rule in c
        if dst.startswith("hub-dns") and port == 53
    }
    assert dns == {"UserRule_AllowDnsFromEstate"}
    portal = {
        rule
        for (dst, port, src), c in rules.items()
        for rule in c
        if src.startswith("198.51.100.") and port == 443
    }
    assert portal == {"UserRule_AllowHttpsInbound"}
    outbound_internet = {
        t.rule
        for t in run.tuples
        if t.direction == "O"
        and t.dst == "192.0.2.201"
        and run.nics[t.src]["tags"].get("tier") == "db"
    }
    assert outbound_internet == {"UserRule_AllowAzureMonitorOutbound"}


def test_only_the_planted_scans_are_denied(run: Run) -> None:
    scanners = {e.ip for e in PUBLIC_ENDPOINTS if e.role == EndpointRole.SCANNER}
    denied = [t for t in run.tuples if t.state == "D"]
    assert {t.src for t in denied} == scanners
    assert {t.rule for t in denied} == {"DefaultRule_DenyAllInBound"}
    attempts = sum(i.extra["attempts"] for i in incidents(run, IncidentKind.DENIED_SCAN))
    assert len(denied) == attempts


# --- manifest and planted incidents ----------------------------------------------------------


def test_manifest_counts_match_the_files(run: Run) -> None:
    m = run.manifest
    assert m.tuple_count == len(run.tuples)
    assert m.record_count == sum(len(d["records"]) for d in run.blobs.values())
    assert m.tuples_by_state == dict(sorted(Counter(t.state for t in run.tuples).items()))
    assert m.benign_flow_count == FLOWS_PER_HOUR * HOURS
    assert sum(m.benign_flows_by_pattern.values()) == m.benign_flow_count
    assert len(m.benign_flows_by_pattern) >= 12, "the classic estate exercises most patterns"
    assert json.loads(json.dumps(m.to_dict()))["incidents"][0]["kind"] == m.incidents[0].kind


def test_every_planted_incident_is_in_the_files(run: Run) -> None:
    kinds = Counter(i.kind for i in run.manifest.incidents)
    assert kinds == {
        IncidentKind.RISKY_COUNTRY_INBOUND: 1,
        IncidentKind.DENIED_SCAN: 2,
        IncidentKind.CROSS_SUBSCRIPTION: 1,
        IncidentKind.LATERAL_MOVEMENT: 2,
        IncidentKind.MALICIOUS_IP: 1,
    }
    times = [i.time for i in run.manifest.incidents]
    assert times == sorted(times)
    for incident in run.manifest.incidents:
        found = [
            t
            for t in run.tuples
            if (t.ts, t.src, t.dst, t.dport, t.proto, t.sport)
            == (
                epoch_ms(incident.time),
                incident.src_ip,
                incident.dst_ip,
                incident.dst_port,
                incident.protocol,
                incident.extra["src_port"],
            )
        ]
        expected_state = "B" if incident.extra["allowed"] else "D"
        assert found and {t.state for t in found} == {expected_state}, incident
        assert incident.extra["rule"] in {t.rule for t in found}


def test_risky_country_incident(run: Run) -> None:
    (incident,) = incidents(run, IncidentKind.RISKY_COUNTRY_INBOUND)
    endpoint = next(e for e in PUBLIC_ENDPOINTS if e.ip == incident.src_ip)
    assert endpoint.role == EndpointRole.RISKY and endpoint.country in SUGGESTED_RISKY_COUNTRIES
    assert incident.extra["country"] == endpoint.country
    target = run.nics[incident.dst_ip]
    assert target["name"] == "payroll-web-01-nic" and target["tags"]["tier"] == "web"
    assert incident.extra["public_ip"] == "192.0.2.10"
    assert (incident.dst_port, incident.extra["allowed"]) == (443, True)
    others = {e.country for e in PUBLIC_ENDPOINTS if e.role != EndpointRole.RISKY}
    assert not others & set(SUGGESTED_RISKY_COUNTRIES)


def test_malicious_beacon_incident(run: Run) -> None:
    (incident,) = incidents(run, IncidentKind.MALICIOUS_IP)
    assert incident.dst_ip == "203.0.113.66"
    assert next(e for e in PUBLIC_ENDPOINTS if e.ip == incident.dst_ip).threat == "C2"
    begins = sorted(t.ts for t in run.tuples if t.dst == incident.dst_ip and t.state == "B")
    assert len(begins) == incident.extra["beacons"] == 4
    assert {b - a for a, b in pairwise(begins)} == {incident.extra["interval_ms"]}
    assert {t.src for t in run.tuples if t.dst == incident.dst_ip} == {incident.src_ip}


def test_cross_subscription_incident(run: Run) -> None:
    (incident,) = incidents(run, IncidentKind.CROSS_SUBSCRIPTION)
    src, dst = run.nics[incident.src_ip], run.nics[incident.dst_ip]
    assert src["subscriptionId"] != dst["subscriptionId"]
    assert (src["tags"]["app"], dst["tags"]["role"]) == ("payroll", "headnode")
    assert incident.dst_port == 8080
    benign_same_port = [t for t in run.tuples if t.dport == 8080 and t.src != incident.src_ip]
    assert benign_same_port == []


def test_lateral_movement_chain_is_in_time_order(run: Run) -> None:
    hops = incidents(run, IncidentKind.LATERAL_MOVEMENT)
    assert [h.extra["hop"] for h in hops] == [1, 2]
    assert hops[0].dst_ip == hops[1].src_ip and hops[0].time < hops[1].time
    assert hops[0].extra["chain_ips"] == [hops[0].src_ip, hops[0].dst_ip, hops[1].dst_ip]
    names = [run.nics[ip]["name"] for ip in hops[0].extra["chain_ips"]]
    assert names == ["payroll-web-01-nic", "payroll-app-01-nic", "erp-sap-01-nic"]
    assert [h.dst_port for h in hops] == [445, 22]
    smb = {(t.src, t.dst) for t in run.tuples if t.dport == 445}
    assert smb == {(hops[0].src_ip, hops[0].dst_ip)}, "benign traffic never uses SMB"


def test_incidents_do_not_move_with_benign_volume(tmp_path: Path) -> None:
    estate = classic_estate()
    quiet = generate_flow_logs(estate, tmp_path / "a", start=START, benign_flows_per_hour=0)
    busy = generate_flow_logs(estate, tmp_path / "b", start=START, benign_flows_per_hour=300)
    assert quiet.incidents == busy.incidents
    assert quiet.benign_flow_count == 0 and quiet.tuple_count > 0


# --- determinism, scale and argument checks --------------------------------------------------


def blob_bytes(manifest: FlowLogManifest) -> dict[str, bytes]:
    return {name: (manifest.out_dir / name).read_bytes() for name in manifest.files}


def test_output_is_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    estate = classic_estate()
    kwargs: dict[str, Any] = {"start": START, "hours": 1, "benign_flows_per_hour": 200}
    first = generate_flow_logs(estate, tmp_path / "1", seed=3, **kwargs)
    second = generate_flow_logs(estate, tmp_path / "2", seed=3, **kwargs)
    other = generate_flow_logs(estate, tmp_path / "3", seed=4, **kwargs)
    assert blob_bytes(first) == blob_bytes(second)
    assert first.to_dict() == second.to_dict()
    assert blob_bytes(first) != blob_bytes(other)


def test_scaled_estate_produces_the_requested_volume(tmp_path: Path) -> None:
    estate = scaled_estate(2, 3, 30, seed=5)
    manifest = generate_flow_logs(estate, tmp_path, start=START, benign_flows_per_hour=4000, seed=5)
    assert manifest.benign_flow_count == 4000
    parsed = read_run(manifest, estate)
    assert len(parsed.tuples) == manifest.tuple_count >= 2 * 4000
    assert {i.kind for i in manifest.incidents} >= {
        IncidentKind.RISKY_COUNTRY_INBOUND,
        IncidentKind.LATERAL_MOVEMENT,
    }
    matches = [BLOB.match(name) for name in manifest.files]
    assert len({m["sub"] for m in matches if m}) == 2 and all(matches)


@pytest.mark.parametrize(
    ("start", "message"),
    [(datetime(2025, 3, 1, 9), "timezone"), (datetime(2025, 3, 1, 9, 30, tzinfo=UTC), "hour")],
)
def test_start_must_be_an_aware_hour(tmp_path: Path, start: datetime, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_flow_logs(classic_estate(), tmp_path, start=start)


def test_refuses_to_mix_runs(tmp_path: Path) -> None:
    generate_flow_logs(classic_estate(), tmp_path, start=START, benign_flows_per_hour=10)
    with pytest.raises(FileExistsError):
        generate_flow_logs(classic_estate(), tmp_path, start=START, benign_flows_per_hour=10)
