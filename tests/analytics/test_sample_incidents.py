"""The local engine on the sample flow logs finds exactly the planted incidents, no more.

Planted (shared/sample/flowlogs.py) and what each must produce:

* risky_country_inbound -> one risky_region finding (inbound, KP, the web VM);
* malicious_ip (C2 beacons) -> one malicious_flow finding with threat type C2;
* cross_subscription -> one cross_subscription finding (benign crossings are in the sample
  config's allowed pairs);
* lateral_movement (two hops) -> inside the blast radius of the web VM that met the risky
  address, each hop host reached no later than the planted hop;
* denied_scan (twice) -> no finding: the scanners are neither on the risky list nor on the
  threat list, and the NSG denied every attempt (checked, and clean).

Blast-radius origins are exactly the hosts that met a risky or malicious peer.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from shared.sample.flowlogs import IncidentKind
from shared.services.demo import DEMO_START
from tests.analytics.conftest import Sample, SampleRun, run_sample

EXPECTED_KEYS = {"detection", "severity", "fingerprint", "summary", "evidence", "resource",
                 "observedAt"}


def _by(run: SampleRun, detection: str) -> list[dict]:
    return [f for f in run.report.as_json()["findings"] if f["detection"] == detection]


def _incidents(sample: Sample, kind: IncidentKind) -> list:
    return [i for i in sample.manifest.incidents if i.kind == kind]


def test_every_detection_ran_and_the_run_is_complete(sample_run: SampleRun) -> None:
    stats = sample_run.report.stats
    assert stats["complete"] is True
    assert {d: s["status"] for d, s in stats["detections"].items()} == {
        "risky_region": "ok", "malicious_flow": "ok", "azure_service": "ok",
        "cross_subscription": "ok", "blast_radius": "ok"}
    assert sample_run.ingest.clean
    assert stats["detections"]["risky_region"]["public_without_country"] == 0


def test_exactly_the_planted_incidents(sample: Sample, sample_run: SampleRun) -> None:
    findings = sample_run.report.as_json()["findings"]
    assert all(set(f) == EXPECTED_KEYS for f in findings)
    start, end = DEMO_START, DEMO_START + timedelta(hours=1)  # the sample flow logs' hour
    for f in findings:
        assert f["resource"].lower().startswith("/subscriptions/"), f
        assert start <= datetime.fromisoformat(f["observedAt"]) <= end, f
    counts = {d: len(_by(sample_run, d)) for d in
              ("risky_region", "malicious_flow", "azure_service", "cross_subscription",
               "blast_radius")}
    assert counts == {"risky_region": 1, "malicious_flow": 1, "azure_service": 0,
                      "cross_subscription": 1, "blast_radius": 2}

    (risky,) = _incidents(sample, IncidentKind.RISKY_COUNTRY_INBOUND)
    (finding,) = _by(sample_run, "risky_region")
    assert {k: finding["evidence"][k] for k in ("public_ip", "private_ip", "country",
                                                 "direction")} == {
        "public_ip": risky.src_ip, "private_ip": risky.dst_ip, "country": "KP",
        "direction": "inbound"}
    assert finding["evidence"]["vm"] == risky.extra["dst_vm"]
    assert finding["evidence"]["first_seen"] == risky.to_dict()["time"]

    (beacon,) = _incidents(sample, IncidentKind.MALICIOUS_IP)
    (finding,) = _by(sample_run, "malicious_flow")
    assert finding["evidence"]["public_ip"] == beacon.dst_ip
    assert finding["evidence"]["private_ip"] == beacon.src_ip
    assert finding["evidence"]["direction"] == "outbound"
    assert finding["evidence"]["threat_type"] == beacon.extra["threat"] == "C2"
    assert finding["evidence"]["allowed_flows"] == beacon.extra["beacons"]
    assert finding["severity"] == "critical"

    (cross,) = _incidents(sample, IncidentKind.CROSS_SUBSCRIPTION)
    (finding,) = _by(sample_run, "cross_subscription")
    ev = finding["evidence"]
    assert (ev["src_ip"], ev["dst_ip"], ev["src_subscription"], ev["dst_subscription"],
            ev["flows"]) == (cross.src_ip, cross.dst_ip, cross.extra["src_subscription"],
                             cross.extra["dst_subscription"], 1)
    assert ev["ports"] == [cross.dst_port]
    assert {r["rule"] for r in ev["rules"]} == {
        cross.extra["src_rule"].removeprefix("DefaultRule_"),
        cross.extra["dst_rule"].removeprefix("DefaultRule_")}


def test_blast_radius_follows_the_lateral_movement_in_time(sample: Sample,
                                                            sample_run: SampleRun) -> None:
    (risky,) = _incidents(sample, IncidentKind.RISKY_COUNTRY_INBOUND)
    (beacon,) = _incidents(sample, IncidentKind.MALICIOUS_IP)
    blasts = {f["evidence"]["origin"]: f for f in _by(sample_run, "blast_radius")}
    assert set(blasts) == {risky.dst_ip, beacon.src_ip}
    web = blasts[risky.dst_ip]["evidence"]
    assert web["since"] == risky.to_dict()["time"]
    reached = {r["ip"]: r for r in web["reached"]}
    hops = _incidents(sample, IncidentKind.LATERAL_MOVEMENT)
    assert hops[0].src_ip == risky.dst_ip
    for hop in hops:
        assert hop.dst_ip in reached
        assert reached[hop.dst_ip]["first_seen"] <= hop.to_dict()["time"]
    # time-respecting: every reached host was reached after its predecessor
    for entry in web["reached"]:
        previous = entry["via"]
        before = web["since"] if previous == web["origin"] else reached[previous]["first_seen"]
        assert entry["first_seen"] >= before
        assert entry["hops"] == (1 if previous == web["origin"] else
                                 reached[previous]["hops"] + 1)
    policy = web["reachable_by_policy"]
    assert policy["computed"] is True
    assert set(policy["not_observed"]).isdisjoint(reached)
    c2 = blasts[beacon.src_ip]["evidence"]
    assert all(r["first_seen"] >= beacon.to_dict()["time"] for r in c2["reached"])


def test_denied_scans_raise_nothing(sample: Sample, sample_run: SampleRun) -> None:
    scanners = {i.src_ip for i in _incidents(sample, IncidentKind.DENIED_SCAN)}
    assert len(scanners) == 2
    text = json.dumps(sample_run.report.as_json()["findings"])
    assert not any(ip in text for ip in scanners)


def test_output_is_deterministic(sample: Sample, detections, sample_run: SampleRun) -> None:
    again = run_sample(sample, detections)
    assert again.report.as_json() == sample_run.report.as_json()
    fingerprints = [f["fingerprint"] for f in sample_run.report.as_json()["findings"]]
    assert len(set(fingerprints)) == len(fingerprints)


def test_bad_blobs_are_counted_and_make_the_run_incomplete(sample: Sample, detections,
                                                           tmp_path: Path) -> None:
    copy = tmp_path / "flowlogs"
    shutil.copytree(sample.flow_dir, copy)
    blobs = sorted(copy.rglob("PT1H.json"))
    truncated, old_version, bad_tuples = blobs[0], blobs[1], blobs[2]
    truncated.write_text(truncated.read_text()[:500])
    old_version.write_text(old_version.read_text().replace('"flowLogVersion":4',
                                                           '"flowLogVersion":3'))
    text = bad_tuples.read_text()
    first = text.index('"flowTuples":["') + len('"flowTuples":["')
    bad_tuples.write_text(text[:first] + "garbage," + text[first:])
    run = run_sample(sample, detections, flow_dir=copy)
    source = run.ingest.as_dict()
    assert source["blobs"]["skipped"] == 1
    assert list(source["blobs"]["reasons"]) == [
        "not valid JSON: truncated (the document does not end)"]
    assert source["records"]["skipped"] > 0
    assert "unsupported flowLogVersion 3 (expected 4)" in source["records"]["reasons"]
    assert source["tuples"]["reasons"]["expected 13 comma-separated fields"]["count"] == 1
    assert not run.ingest.clean


def test_since_until_narrow_the_window(sample: Sample, detections) -> None:
    from shared.adapters.country_db import lookup_countries
    from shared.adapters.duckdb_engine import LocalEngine
    from shared.services.analytics import analyze, resolve_window
    from tests.analytics.conftest import enrichment

    (beacon,) = _incidents(sample, IncidentKind.MALICIOUS_IP)
    config = sample.loaded.config
    assert config is not None
    with LocalEngine() as engine:
        engine.ingest_flow_logs(sample.flow_dir, enrichment(sample), lookup_countries)
        window = resolve_window(engine.data_range(), None, beacon.time)
        assert window is not None
        catalog, queries = detections
        report = analyze(engine, catalog, queries, config=config, window=window,
                         inventory=sample.inventory)
    detections_found = {f.detection for f in report.findings}
    assert "malicious_flow" not in detections_found  # the beacons start at `until`
    assert "risky_region" in detections_found
    assert report.stats["window"]["end"].startswith(beacon.time.strftime("%Y-%m-%dT%H:%M"))
    assert isinstance(window.start, datetime)
